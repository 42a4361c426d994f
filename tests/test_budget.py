"""CI's time budget (tests/budget.py): a long test starts only if it can end before the deadline."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.config import REPO_ROOT
from tests.budget import DEADLINE, require, seconds_left


def test_without_a_deadline_every_test_runs(monkeypatch):
    monkeypatch.delenv(DEADLINE, raising=False)
    assert seconds_left() is None
    require(10 ** 9, "anything")  # no skip


def test_a_test_that_cannot_end_by_the_deadline_is_skipped_with_both_times(monkeypatch):
    monkeypatch.setenv(DEADLINE, str(time.time() + 300))
    require(200, "a short test")
    with pytest.raises(pytest.skip.Exception, match=r"a long test needs up to 600 s, (29\d|300) s"):
        require(600, "a long test")


def test_the_budget_mark_is_checked_before_the_fixtures(tmp_path):
    """The suite's own hook (tests/conftest.py), in a pytest run of its own."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_setup  # noqa: F401\n")
    (tmp_path / "test_long.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.fixture
        def costly():
            raise AssertionError("started")

        @pytest.mark.budget(600)
        def test_long(costly):
            pass

        @pytest.mark.budget(1)
        def test_short():
            pass
    """))
    env = {**os.environ, DEADLINE: str(int(time.time()) + 120), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                           "-o", "markers=budget(seconds): test", "test_long.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "1 passed, 1 skipped" in done.stdout, done.stdout[-3000:]
    assert "CI time budget: test_long.py::test_long needs up to 600 s" in done.stdout
