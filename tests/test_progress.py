"""The stderr progress bar: redraws in place, always shows the end, ends its line."""
from __future__ import annotations

import io

from pipeline.progress import ProgressBar


def test_bar_draws_first_and_last_state_and_ends_line() -> None:
    out = io.StringIO()
    bar = ProgressBar(stream=out, width=10, interval=3600)
    for done in range(1, 5):
        bar(done, 4, done * 1_000_000)
    bar.close()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("[##........] 1/4 files, 1.0 MB")
    assert frames[-1].startswith("[##########] 4/4 files, 4.0 MB")
    assert len(frames) == 2  # the interval suppresses the middle ones
    assert out.getvalue().endswith("\n")


def test_unused_bar_writes_nothing() -> None:
    out = io.StringIO()
    ProgressBar(stream=out).close()
    assert out.getvalue() == ""
