"""cluster up is idempotent, and recovers from daemons killed without warning."""
from __future__ import annotations

import getpass
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hdfs import InsecureClient

from pipeline.cluster import native
from tests.cluster_fixtures import process_gone

pytestmark = pytest.mark.cluster


def test_second_up_is_a_no_op(cluster, cli):
    start = time.monotonic()
    done = cli("up")
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stderr
    assert native.pids() == cluster  # the same processes, none restarted
    assert elapsed < 15, f"a no-op up took {elapsed:.1f} s"


def _pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (state / "run").glob("*.pid")}


@pytest.mark.fault
@pytest.mark.slow
def test_up_recovers_after_sigkill_with_stale_pid_files(cli, make_isolated_env):
    """A private cluster (own ports and state dir): two concurrent ups (one starts it, the
    other waits and finds it running), write, SIGKILL every daemon, up again."""
    env = make_isolated_env()
    state = Path(env["XRAY_STATE_DIR"])
    try:
        with ThreadPoolExecutor(2) as pool:
            ups = list(pool.map(lambda _: cli("up", env=env), range(2)))
        assert [u.returncode for u in ups] == [0, 0], [u.stderr[-3000:] for u in ups]
        assert sum("formatted HDFS" in u.stderr for u in ups) == 1
        assert sum("nothing to do" in u.stderr for u in ups) == 1
        webhdfs = InsecureClient(f"http://localhost:{env['XRAY_PORT_NAMENODE_HTTP']}",
                                 user=getpass.getuser())
        payload = os.urandom(3 << 20)
        webhdfs.write("/tmp/survivor.bin", payload)

        killed = _pids(state)
        assert sorted(killed) == ["datanode", "history", "namenode", "nodemanager",
                                  "resourcemanager"]
        for pid in killed.values():
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not all(map(process_gone, killed.values())) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(map(process_gone, killed.values()))
        assert _pids(state) == killed  # the pid files are stale now

        second = cli("up", env=env)
        assert second.returncode == 0, second.stderr[-4000:]
        assert second.stderr.count("stale") == len(killed)
        assert "formatted HDFS" not in second.stderr  # the metadata was reused, not replaced
        restarted = _pids(state)
        assert sorted(restarted) == sorted(killed)
        assert not set(restarted.values()) & set(killed.values())
        with webhdfs.read("/tmp/survivor.bin") as reader:
            assert reader.read() == payload
        assert cli("status", env=env).returncode == 0
    finally:
        cli("down", env=env)
    assert _pids(state) == {}
