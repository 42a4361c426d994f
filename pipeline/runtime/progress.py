"""Progress of a long file transfer on stderr, drawn by ``rich`` (which Keras already installs)."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: ``on_progress(files_done, files_total, bytes_done)``
ProgressCallback = Callable[[int, int, int], None]


@contextlib.contextmanager
def file_progress(enabled: bool, stream: TextIO | None = None) -> Iterator[ProgressCallback | None]:
    """A callback that shows files and bytes done (None when not ``enabled``); the bar ends
    its line when the block ends."""
    if not enabled:
        yield None
        return
    console = Console(file=stream or sys.stderr)
    columns = (BarColumn(), MofNCompleteColumn(), TextColumn("files, {task.fields[mb]:.1f} MB"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("files", total=None, mb=0.0)

        def update(done: int, total: int, done_bytes: int) -> None:
            progress.update(task, completed=done, total=total, mb=done_bytes / 1e6)
        yield update
