"""A dependency-free progress bar on stderr, for long uploads run by a person at a terminal."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Redraws one line at most every ``interval`` seconds; call ``close`` to end the line."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, interval: float = 0.2):
        self.stream = stream
        self.width = width
        self.interval = interval
        self._last = float("-inf")
        self._started = time.monotonic()
        self._drawn = False

    def __call__(self, done: int, total: int, done_bytes: int) -> None:
        """Show ``done`` of ``total`` files; matches ingest's ProgressCallback."""
        now = time.monotonic()
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        filled = self.width * done // total if total else self.width
        elapsed = now - self._started
        rate = done_bytes / 1e6 / elapsed if elapsed > 0 else 0.0
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                          f"files, {done_bytes / 1e6:.1f} MB, {rate:.1f} MB/s")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line so later output starts on a fresh one."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
