"""One writer per output (pipeline.fs.lease): a second job on an output being written exits 2
naming the first and touches nothing of it, a killed writer's lease is taken over after its
timeout, and the file-system steps the lease rests on have exactly one winner.

Real processes and real file systems: the writers are ``python -m
tests.reliability.lease_writer`` (prepare_output, then atomic_output, as every job writes),
or ``spark-submit jobs/evaluate.py`` on the sample tree; every test that can runs on a local
folder (file://) and on the native cluster's HDFS (the ``cluster`` fixture).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from pipeline import config
from pipeline.featurizer.summary import TrainConfig
from pipeline.featurizer.training import train
from pipeline.fs.lease import Holder, LeaseHeld, lease_path
from pipeline.fs.storage import HadoopFS, prepare_output
from tests.reliability.runner import LOCAL_ENV, Running, assert_one_error_line, start
from tests.trees import valid_tree

HDFS = f"hdfs://{config.CLUSTER_HOST}:{config.CLUSTER_PORTS['namenode_rpc']}"
WRITER = [sys.executable, "-m", "tests.reliability.lease_writer"]
#: "half written by APP: TMP_URI", logged by the writer while it holds the lease.
HALF = re.compile(r"half written by (\S+): (\S+)")


@pytest.fixture(params=["file", pytest.param("hdfs", marks=pytest.mark.cluster)])
def base(request, spark, tmp_path) -> str:
    """A fresh folder URI on the local disk or on HDFS; an HDFS one is removed afterwards."""
    if request.param == "file":
        yield f"file://{tmp_path}/outputs"
        return
    request.getfixturevalue("cluster")
    uri = f"{HDFS}/tmp/xray-lease-tests/{uuid.uuid4().hex[:8]}"
    yield uri
    HadoopFS(spark, uri).delete(uri)


def names(fs: HadoopFS, folder: str) -> list[str]:
    return sorted(e.path.rpartition("/")[2] for e in fs.list_dir(folder))


def beside(fs: HadoopFS, out: str) -> list[str]:
    """What lies beside ``out`` in its folder other than itself: leftovers and leases."""
    name = out.rpartition("/")[2]
    return [n for n in names(fs, out.rpartition("/")[0]) if n != name]


def writer(out: str, *args: str, env: dict | None = None) -> Running:
    return Running([*WRITER, out, *args], env or LOCAL_ENV)


def test_a_second_writer_exits_2_naming_the_holder_and_leaves_its_output_alone(spark, base,
                                                                             tmp_path):
    """Before leases, the second job exited 0 and its tidy-up deleted the first one's
    temporary output while it was being written."""
    out, go = f"{base}/out", tmp_path / "go"
    first = writer(out, "--hold-until", str(go))
    try:
        first.wait_for("half written by ")
        app, tmp = HALF.search(first.output).groups()
        fs = HadoopFS(spark, out)
        half = names(fs, tmp)
        assert [n for n in half if n.startswith("part-")] == ["part-0", "part-1", "part-2"]

        done = subprocess.run([*WRITER, out], env=LOCAL_ENV, cwd=config.REPO_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        line = assert_one_error_line(done.returncode, done.stdout, "is being written by another "
                                     "job", app, socket.gethostname(), " since ")
        assert "/out" in line
        assert names(fs, tmp) == half  # the second job tidied nothing of the first one's
    finally:
        go.touch()
    assert first.wait(600) == 0, first.output[-3000:]
    parts = [n for n in names(fs, out) if n.startswith("part-")]
    assert parts == [f"part-{i}" for i in range(6)]
    assert {fs.read_bytes(f"{out}/{p}").decode().split()[0] for p in parts} == {app}
    assert beside(fs, out) == []  # no temporary output, no lease


def test_a_killed_writers_lease_is_taken_over_after_its_timeout(spark, base, record_property):
    """The timeout leaves room for a busy machine: a 4 s one once saw a starved holder's lease
    already stale when the contender first looked."""
    timeout = 10
    out = f"{base}/out"
    first = writer(out, "--hold-until", "/nonexistent",
                   env={**LOCAL_ENV, "XRAY_LEASE_TIMEOUT_S": str(timeout)})
    first.wait_for("half written by ")
    app, tmp = HALF.search(first.output).groups()
    killed = time.monotonic()
    os.killpg(first.process.pid, signal.SIGKILL)  # and look at once (kill() also waits)
    refusals = 0
    fs = HadoopFS(spark, out)
    last_refresh_ms = fs.modified(lease_path(fs, out))
    while True:
        try:
            held = prepare_output(spark, out)
            break
        except LeaseHeld as err:
            assert app in str(err), err
            refusals += 1
            assert time.monotonic() - killed < 60, "the dead writer's lease was never taken over"
            time.sleep(0.2)
    took, takeover = time.time(), time.monotonic() - killed
    first.wait(60)
    try:
        record_property("lease_takeover_s", round(takeover, 2))
        print(f"lease taken over {takeover:.2f} s after SIGKILL (timeout {timeout} s)")
        assert refusals >= 1  # it was live when killed: refused at first
        # unrefreshed for the timeout since its last refresh, then watched for half as long
        assert took - last_refresh_ms / 1000 >= timeout * 1.5
        assert takeover < timeout * 1.5 + 20
        record = json.loads(fs.read_bytes(lease_path(fs, out)))
        assert record["application"] == spark.sparkContext.applicationId
        assert not fs.exists(tmp)  # the dead writer's temporary output, tidied by the new holder
    finally:
        held.release()
    assert beside(fs, out) == []


def test_a_writer_stopped_by_sigterm_lets_go_of_its_lease(spark, base):
    out = f"{base}/out"
    first = writer(out, "--hold-until", "/nonexistent")
    first.wait_for("half written by ")
    fs = HadoopFS(spark, out)
    assert fs.exists(lease_path(fs, out))
    os.kill(first.process.pid, signal.SIGTERM)
    assert first.wait(120) == 143, first.output[-3000:]
    assert "released the lease on" in first.output
    assert names(fs, base) == []  # no output, no temporary output, no lease


def test_a_fresh_lease_of_a_gone_process_on_this_machine_is_taken_over_at_once(spark, base):
    """A run killed here and re-run at once: its lease is fresh, but its process is gone, so
    the re-run takes over without waiting out the timeout; a live process keeps its lease."""
    fs = HadoopFS(spark, base)
    out = f"{base}/out"
    fs.mkdirs(base)
    path = lease_path(fs, out)
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid names no process now
    dead = Holder("local-1", socket.gethostname(), gone.pid, "2026-01-01T00:00:00Z", 600.0, "d" * 32)
    assert fs.create_new(path, dead.to_json())
    started = time.monotonic()
    with prepare_output(spark, out):
        assert time.monotonic() - started < 30  # not the 600 s timeout
        assert json.loads(fs.read_bytes(path))["application"] == spark.sparkContext.applicationId
    alive = Holder("local-2", socket.gethostname(), os.getppid(), "2026-01-01T00:00:00Z", 600.0,
                   "a" * 32)
    assert fs.create_new(path, alive.to_json())
    with pytest.raises(LeaseHeld, match="local-2"):
        prepare_output(spark, out)
    fs.delete(path)


def test_a_lease_that_looks_old_but_is_refreshed_is_not_taken_over(spark, base):
    """A holder whose clock lags ours by an hour: its lease looks long dead, but it keeps
    refreshing, so it stays its own; once it stops refreshing, it is taken over."""
    fs = HadoopFS(spark, base)
    out = f"{base}/out"
    fs.mkdirs(base)
    path = lease_path(fs, out)
    other = Holder("application_1_0001", "node7", 42, "2026-01-01T00:00:00Z", 8.0, "f" * 32)
    assert fs.create_new(path, other.to_json())
    lagging = int((time.time() - 3600) * 1000)
    fs.touch(path, lagging)  # its times from the start
    stop, failed = threading.Event(), []

    def refresh() -> None:  # by its own clock, more often than timeout/4 (a busy machine)
        beat = 0
        while not stop.wait(0.5):
            beat += 1
            try:
                fs.touch(path, lagging + beat * 500)
            except Exception as err:  # noqa: BLE001 - reported below
                failed.append(repr(err))

    beats = threading.Thread(target=refresh, daemon=True)
    beats.start()
    try:
        with pytest.raises(LeaseHeld, match=r"application_1_0001 on node7 \(pid 42\) since .* "
                                            r"is refreshed, though its clock lags ours"):
            prepare_output(spark, out)
    finally:
        stop.set()
        beats.join()
    assert not failed, failed[:3]
    assert fs.modified(path) < lagging + 3600_000 / 2  # its clock's times, not ours
    with prepare_output(spark, out) as held:
        assert held.holder.application == spark.sparkContext.applicationId
        assert json.loads(fs.read_bytes(path))["token"] == held.holder.token
    assert names(fs, base) == []


def test_create_and_move_have_one_winner(spark, base):
    """What the lease rests on: of eight threads creating one file, or moving one file to
    names of their own, exactly one succeeds; a move never replaces an existing file."""
    fs = HadoopFS(spark, base)
    fs.mkdirs(base)
    target = f"{base}/.x.lease"
    results: dict[str, list] = {"create": [], "move": []}

    def race(kind: str, run) -> None:
        threads = [threading.Thread(target=lambda i=i: results[kind].append((i, run(i))))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    race("create", lambda i: fs.create_new(target, str(i).encode()))
    winners = [i for i, won in results["create"] if won]
    assert len(winners) == 1 and fs.read_bytes(target) == str(winners[0]).encode()

    race("move", lambda i: fs.move_file(target, f"{base}/.x.moved-{i}"))
    moved = [i for i, won in results["move"] if won]
    assert len(moved) == 1 and names(fs, base) == [f".x.moved-{moved[0]}"]

    assert fs.create_new(target, b"new")
    assert not fs.move_file(f"{base}/.x.moved-{moved[0]}", target)
    assert fs.read_bytes(target) == b"new"
    assert fs.read_bytes(f"{base}/.x.moved-{moved[0]}") == str(winners[0]).encode()


@pytest.fixture(scope="module")
def model(spark, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("lease")
    tree = valid_tree(base / "chest_xray", per_class=6, splits=("train", "test"))
    train(spark, TrainConfig(data=str(tree), model_out=str(base / "model"), weights="none"))
    return tree, base / "model"


@pytest.mark.slow
def test_two_evaluate_jobs_on_one_report_one_wins(model, tmp_path):
    """The finding: two ``spark-submit jobs/evaluate.py`` on one ``--out`` both exited 0."""
    tree, saved = model
    out = tmp_path / "report"
    args = ("--data", str(tree), "--model", str(saved), "--out", str(out))
    jobs = [start("evaluate", *args, master="local[1]") for _ in range(2)]
    codes = [job.wait(900) for job in jobs]
    assert sorted(codes) == [0, 2], [job.output[-3000:] for job in jobs]
    winner, loser = (jobs[0], jobs[1]) if codes[0] == 0 else (jobs[1], jobs[0])
    app = re.search(r"took the lease on \S+ for (\S+) ", winner.output)[1]
    assert_one_error_line(2, loser.output, "is being written by another job", app)
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "confusion_matrix.png", "roc.png",
                                               "report.html", "predictions.csv"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["counts"]["total"] == 12
    assert len((out / "predictions.csv").read_text().strip().splitlines()) == 13
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
