"""Daemons that die or refuse writes, on a private cluster (its own state dir and ports: the
shared one is never touched). The tests run in the order written on one cluster: ingest with a
DataNode killed, jobs against a NameNode in safe mode, then with the NameNode gone.

`make cluster-up` after daemons were SIGKILLed is tests/cluster/test_lifecycle.py's.
"""
from __future__ import annotations

import getpass
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hdfs import InsecureClient

import tests.ingest.test_ingest_cluster as ingest_tests
from jobs import train as train_job
from pipeline import config
from pipeline.cluster import jars
from pipeline.config import MANIFEST_NAME
from tests.cli import COMMAND, ENV
from tests.cluster_fixtures import isolated_env, process_gone, run_cli
from tests.reliability.runner import assert_one_error_line, run_in_process, submit

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.fault]

FILES = 150


@dataclass
class Private:
    """A private native cluster, described by the environment its `up` ran with."""

    env: dict[str, str]

    @property
    def state(self) -> Path:
        return Path(self.env["XRAY_STATE_DIR"])

    def uri(self, path: str) -> str:
        return f"hdfs://localhost:{self.env['XRAY_PORT_NAMENODE_RPC']}{path}"

    @property
    def webhdfs_url(self) -> str:
        return f"http://localhost:{self.env['XRAY_PORT_NAMENODE_HTTP']}"

    def client(self) -> InsecureClient:
        return InsecureClient(self.webhdfs_url, user=getpass.getuser())

    def kill(self, daemon: str) -> None:
        """SIGKILL one daemon, as a dying node would go."""
        pid = int((self.state / "run" / f"{daemon}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not process_gone(pid):
            assert time.monotonic() < deadline, f"{daemon} (pid {pid}) survived SIGKILL for 30 s"
            time.sleep(0.1)

    def up(self) -> None:
        """`cluster up`: restarts what is not running, waits until healthy."""
        done = run_cli("up", env=self.env)
        assert done.returncode == 0, done.stderr[-3000:]

    def dfsadmin(self, *args: str) -> str:
        """Hadoop's own DFSAdmin tool against this cluster, as its superuser."""
        done = subprocess.run(
            [str(config.JAVA_HOME / "bin" / "java"), "-cp",
             jars.classpath(self.state / "conf" / "hadoop"),
             "org.apache.hadoop.hdfs.tools.DFSAdmin", "-fs", self.uri("/"), *args],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def ingest(self, tree: Path, path: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([*COMMAND, str(tree), self.uri(path), "--webhdfs-url",
                                 self.webhdfs_url, *extra], env=ENV, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    env = isolated_env(tmp_path_factory.mktemp("private") / "state")
    done = run_cli("up", env=env)
    if done.returncode != 0:
        pytest.fail(f"private cluster up failed:\n{done.stderr[-3000:]}")
    try:
        yield Private(env)
    finally:
        run_cli("down", env=env)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return ingest_tests.big_tree(tmp_path_factory.mktemp("faults") / "chest_xray", FILES)


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_datanode_killed_mid_ingest_then_a_rerun_matches_a_fault_free_run(private, tree,
                                                                          record_property):
    code, _, err = _finish(private.ingest(tree, "/clean"))
    assert code == 0, err[-3000:]

    faulty = private.ingest(tree, "/faulty", "--threads", "2")
    client = private.client()
    deadline = time.monotonic() + 120
    while True:
        listing = client.list("/faulty/train/NORMAL") \
            if client.status("/faulty/train/NORMAL", strict=False) else []
        if len([n for n in listing if not n.startswith(".")]) >= 15:
            break
        assert faulty.poll() is None and time.monotonic() < deadline, "ingest ended too soon"
        time.sleep(0.05)
    private.kill("datanode")
    code, _, err = _finish(faulty)
    record_property("faulty_ingest", f"exit {code}: {err.strip().splitlines()[-1:]}")
    # Fails cleanly (one line, nothing uploaded is half-there under its name) or completes.
    assert code in (0, 2), err[-3000:]
    assert "Traceback" not in err
    if code == 2:
        assert err.strip().splitlines()[-1].startswith("error: "), err[-3000:]
        assert "re-run" in err.strip().splitlines()[-1]

    private.up()
    code, out, err = _finish(private.ingest(tree, "/faulty"))
    assert code == 0, err[-3000:]
    assert out.startswith("ingest: uploaded "), out
    with client.read(f"/faulty/{MANIFEST_NAME}") as faulty_manifest, \
            client.read(f"/clean/{MANIFEST_NAME}") as clean_manifest:
        assert faulty_manifest.read() == clean_manifest.read()
    names = [name for _, _, files in client.walk("/faulty") for name in files]
    assert len(names) == FILES + 2 and not [n for n in names if n.startswith(".")]


def test_namenode_in_safe_mode_fails_fast_naming_the_output(spark, private, record_property):
    """HDFS in safe mode reads but refuses writes: the job must say so before featurizing."""
    model = private.uri("/models/m")
    private.dfsadmin("-safemode", "enter")
    try:
        started = time.monotonic()
        code, err, logs = run_in_process(train_job, ["--data", private.uri("/clean"),
                                                     "--model-out", model, "--weights", "none"])
        elapsed = time.monotonic() - started
    finally:
        private.dfsadmin("-safemode", "leave")
    line = assert_one_error_line(code, err, f"cannot write {model}", "SafeModeException",
                                 "safe mode")
    record_property("outcome", f"{elapsed:.1f} s: {line[:160]}")
    assert "featurize" not in logs and elapsed < 30, elapsed


def test_namenode_down_fails_fast_naming_the_uri(spark, private, tmp_path, record_property):
    data = private.uri("/clean")
    private.kill("namenode")
    started = time.monotonic()
    code, err, _ = run_in_process(train_job, ["--data", data, "--model-out",
                                              str(tmp_path / "model"), "--weights", "none"])
    line = assert_one_error_line(code, err, data)
    # This process was connected when the NameNode died (EOF); a new one is refused.
    assert "Connection refused" in line or "EOFException" in line, line
    elapsed = time.monotonic() - started
    record_property("in_process", f"{elapsed:.1f} s: {line[:160]}")
    assert elapsed < 30
    started = time.monotonic()  # the same through spark-submit, JVM start included
    line = assert_one_error_line(*submit("train", "--data", data, "--model-out",
                                         str(tmp_path / "model"), "--weights", "none"),
                                 data, "Connection refused")
    elapsed = time.monotonic() - started
    record_property("spark_submit", f"{elapsed:.1f} s: {line[:160]}")
    assert elapsed < 60
