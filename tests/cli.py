"""Running jobs/ingest.py as a user would (a fresh interpreter), and the command-line
contract's checks, for the CLI tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

from pipeline.config import REPO_ROOT

COMMAND = [sys.executable, str(REPO_ROOT / "jobs" / "ingest.py")]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the ingest job to completion, capturing its output as text."""
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, stderr's last line naming the problem, no traceback (the contract of
    every entry point, pipeline.runtime.cli)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def ending_error(done: subprocess.CompletedProcess) -> str:
    """The same contract for a command that logs as it goes (`cluster up`): exit status 2,
    stderr ending in its one `error:` line, no traceback. Returns that line."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and done.stderr.strip().endswith(errors[0]), done.stderr
    return errors[0]


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
