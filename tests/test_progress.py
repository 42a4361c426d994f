"""The transfer progress shown on stderr: counts and volume as they advance, nothing when off."""
from __future__ import annotations

import io

from pipeline.runtime.progress import file_progress


def test_progress_shows_the_final_counts_and_volume() -> None:
    out = io.StringIO()
    with file_progress(True, out) as update:
        for done in range(1, 5):
            update(done, 4, done * 1_000_000)
    text = out.getvalue()
    assert "4/4" in text and "4.0 MB" in text


def test_disabled_progress_writes_nothing() -> None:
    out = io.StringIO()
    with file_progress(False, out) as update:
        assert update is None
    assert out.getvalue() == ""
