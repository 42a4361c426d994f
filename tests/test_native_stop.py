"""native.stop on a daemon that ignores SIGTERM: a real child process (its own session, as
native._start makes one) with a pid file under a private state dir; no cluster."""
from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

from pipeline import config
from pipeline.cluster import native
from tests.cluster_fixtures import process_gone

STUBBORN = native.Daemon("stubborn", "xray.test.IgnoresSigterm", ())
IGNORE_TERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "print('ready', flush=True); time.sleep(120)")
OBEY_TERM = "import time; print('ready', flush=True); time.sleep(120)"


@pytest.fixture
def stubborn(tmp_path, monkeypatch):
    """A running process that ignores SIGTERM, registered as STUBBORN's pid file says."""
    monkeypatch.setattr(config, "STATE_DIR", tmp_path)
    native.run_dir().mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-c", IGNORE_TERM, STUBBORN.main_class],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout.readline() == "ready\n"  # SIGTERM is ignored from here on
    native._pid_file(STUBBORN).write_text(f"{process.pid}\n")
    assert native.running_pid(STUBBORN) == process.pid
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _slow_to_die(monkeypatch, delay: float) -> list[bool]:
    """Make the daemon look alive until `delay` s after it really died, as a JVM with a large
    heap can take after SIGKILL; returns what each _gone call answered."""
    real_gone, answers, died = native._gone, [], []

    def gone(pid, daemon):
        if real_gone(pid, daemon) and not died:
            died.append(time.monotonic())
        answers.append(bool(died) and time.monotonic() - died[0] >= delay)
        return answers[-1]
    monkeypatch.setattr(native, "_gone", gone)
    return answers


def test_sigkill_gets_its_own_wait(stubborn, monkeypatch, caplog):
    answers = _slow_to_die(monkeypatch, delay=1.0)
    caplog.set_level(logging.INFO, logger=native.__name__)
    start = time.monotonic()
    assert native.stop(STUBBORN, timeout=1.0, kill_timeout=5.0)
    elapsed = time.monotonic() - start
    assert answers[-1], "stop returned before it saw the daemon gone after SIGKILL"
    assert 2.0 <= elapsed < 5.0
    assert process_gone(stubborn.pid)
    assert not native._pid_file(STUBBORN).exists()
    text = caplog.text
    assert "ignored SIGTERM for 1 s: SIGKILL" in text
    assert f"killed stubborn (pid {stubborn.pid}) with SIGKILL: gone 1." in text


def test_sigkill_on_a_real_process_that_ignores_sigterm(stubborn, caplog):
    caplog.set_level(logging.INFO, logger=native.__name__)
    start = time.monotonic()
    assert native.stop(STUBBORN, timeout=0.5)
    assert time.monotonic() - start < 5
    assert process_gone(stubborn.pid)  # stop reaped it (our child): Popen cannot see how
    assert not native._pid_file(STUBBORN).exists()
    assert "with SIGKILL" in caplog.text


def test_a_daemon_that_outlives_sigkill_keeps_its_pid_file(stubborn, monkeypatch, caplog):
    answers = _slow_to_die(monkeypatch, delay=3600)
    caplog.set_level(logging.INFO, logger=native.__name__)
    start = time.monotonic()
    native.stop(STUBBORN, timeout=0.5, kill_timeout=1.0)
    assert 1.5 <= time.monotonic() - start < 4
    assert not any(answers)
    assert native._pid_file(STUBBORN).exists()
    assert "still running 1 s after SIGKILL" in caplog.text


def test_sigterm_is_enough_for_a_process_that_obeys_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(config, "STATE_DIR", tmp_path)
    native.run_dir().mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-c", OBEY_TERM, STUBBORN.main_class],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # Popen can return before the kernel has set the new command line that the pid check
        # reads (seen in CI under load): the process says it runs first, as the fixture's does.
        assert process.stdout.readline() == "ready\n"
        native._pid_file(STUBBORN).write_text(f"{process.pid}\n")
        caplog.set_level(logging.INFO, logger=native.__name__)
        assert native.stop(STUBBORN, timeout=5.0)
        assert process_gone(process.pid)
        assert "SIGKILL" not in caplog.text and "stopped stubborn" in caplog.text
        assert not native._pid_file(STUBBORN).exists()
        assert native.stop(STUBBORN) is False  # not running any more
    finally:
        if process.poll() is None:
            process.kill()
