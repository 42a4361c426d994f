"""CI's time budget for its longest tests (the Docker Compose cluster, the shipped Python
environment): ``XRAY_TEST_DEADLINE`` (Unix time, set by ``.ci/run``) is when the run must be
over. A test marked ``budget(seconds)``, where ``seconds`` is the most it took on a busy
2-core machine, starts only if it can end by then; otherwise it is skipped, with the time it
needs and the time left, and pytest lists it among the skips: never counted as passing.
Without the variable (``make test-compose`` by hand) every test runs.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

DEADLINE = "XRAY_TEST_DEADLINE"


def seconds_left() -> float | None:
    """Seconds until the deadline, or None when there is none."""
    deadline = os.environ.get(DEADLINE)
    return None if not deadline else float(deadline) - time.time()


def require(seconds: float, what: str) -> None:
    """Skip the caller unless ``seconds`` are left before the deadline."""
    left = seconds_left()
    if left is not None and left < seconds:
        reason = (f"CI time budget: {what} needs up to {seconds:.0f} s, "
                  f"{max(left, 0):.0f} s are left before {DEADLINE}")
        print(f"\n{reason}", file=sys.stderr)
        pytest.skip(reason)
