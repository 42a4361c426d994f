"""Running the jobs as a user runs them, for the reliability tests.

Jobs go through their real entry points: ``spark-submit jobs/<job>.py`` in a fresh process
(``submit``/``start``), or ``run_job`` in this process where the shared local session is
faithful (``run_in_process``). Nothing is mocked.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline import config
from pipeline.runtime.cli import run_job
from tests.cluster_fixtures import YARN_JVM_CONF

SPARK_SUBMIT = str(Path(sys.executable).parent / "spark-submit")
#: Local mode as the Makefile runs it; workers import the checkout's ``pipeline``.
LOCAL_ENV = {**os.environ, "PYTHONPATH": str(config.REPO_ROOT), "PYSPARK_PYTHON": sys.executable,
             "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
             "TF_CPP_MIN_LOG_LEVEL": "2"}
for _var in ("SPARK_CONF_DIR", "HADOOP_CONF_DIR", "YARN_CONF_DIR"):
    LOCAL_ENV.pop(_var, None)


def job_command(job: str, *args: str, master: str = "local[2]",
                spark: tuple[str, ...] = ()) -> list[str]:
    """``spark-submit --master master [spark options] jobs/<job>.py args``."""
    return [SPARK_SUBMIT, "--master", master, *(YARN_JVM_CONF if master == "yarn" else ()),
            *spark, str(config.REPO_ROOT / "jobs" / f"{job}.py"), *args]


def submit(job: str, *args: str, master: str = "local[2]", env: dict | None = None,
           timeout: float = 600) -> tuple[int, str]:
    """``spark-submit jobs/<job>.py args`` to completion: exit status and console output.

    One stream, as a user's terminal shows it: spark-submit passes the Python driver's
    stderr (the job's log and its ``error:`` line) to its stdout, and the JVM's log to stderr.
    """
    done = subprocess.run(job_command(job, *args, master=master), cwd=config.REPO_ROOT,
                          env=env or LOCAL_ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return done.returncode, done.stdout


class Running:
    """A spark-submit in its own process group, its console collected line by line (so a
    test can act when the job logs that a step started) and killed as a whole when asked."""

    def __init__(self, command: list[str], env: dict) -> None:
        self.process = subprocess.Popen(command, cwd=config.REPO_ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        """Until a line holding ``text`` was logged; fails if the job ends or time runs out."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never logged {text!r} (exit {self.process.poll()}):\n"
                                     f"{self.output[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: JVM, Python driver and Python workers, as when
        a node dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.wait(60)

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code


def start(job: str, *args: str, master: str = "local[2]", env: dict | None = None) -> Running:
    return Running(job_command(job, *args, master=master), env or LOCAL_ENV)


def run_in_process(job_module, argv: list[str]) -> tuple[int, str, str]:
    """``run_job`` of ``jobs/<job>.py`` on this process's local session (the ``spark``
    fixture's: getOrCreate hands it over). Returns the exit status, stderr, and the
    pipeline's log records at INFO and above as text."""
    logger = logging.getLogger("pipeline")
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            try:
                run_job(job_module.main, job_module.parser(), argv)
                code = 0
            except SystemExit as exit_:
                code = int(exit_.code or 0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return code, err.getvalue(), records.getvalue()


def assert_one_error_line(code: int, output: str, *fragments: str) -> str:
    """Exit 2, one ``error:`` line holding every fragment, and no Python or JVM stack trace
    (other log lines, such as Spark's own warnings, may be there). Returns the line."""
    assert code == 2, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert "Traceback" not in output, output[-3000:]
    assert not [line for line in output.splitlines() if line.startswith(("\tat ", "Caused by"))], \
        output[-3000:]
    return errors[0]


def scan_modes(root: Path) -> dict[str, tuple[str, int]]:
    """relative path -> ("dir" | "file", permission bits) of everything below ``root``."""
    return {str(p.relative_to(root)): ("dir" if p.is_dir() else "file", p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*"))}


def same_numbers(a, b) -> bool:
    """Equal structures whose floats agree to 1e-9 (relative); everything else exactly. Two
    fits on the same features may differ in the last bit of a float64 sum: Spark combines the
    tasks' partial results in the order they finish, and a retried task finishes late."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_numbers(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return a == b
