"""Bytes that rot on a DataNode's disk, on a private cluster (its own state dir and ports; the
shared one is never touched) with a second DataNode this test starts beside it.

Four bytes are flipped in a block replica file under a DataNode's data dir, as a failing disk
would do it. With one replica the film has no good copy: train, evaluate (with either reader:
raw bytes or Spark's image source) and fine-tune must name it (``rules.HDFS_CHECKSUM``) and go
on with the rest, and ``ingest --verify`` must name it. With
two replicas HDFS reads the good one: nothing is lost and nothing is named.
"""
from __future__ import annotations

import csv
import getpass
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from jobs import evaluate as evaluate_job
from jobs import finetune as finetune_job
from jobs import train as train_job
from pipeline import config
from pipeline.cluster import jars
from pipeline.ingest.verify import MISSING, OTHER_BYTES
from tests import reasons as R
from tests.cli import COMMAND, ENV
from tests.cluster_fixtures import free_ports, isolated_env, run_cli
from tests.reliability.runner import run_in_process
from tests.reliability.test_cluster_faults import Private
from tests.trees import valid_tree

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.fault]

PER_CLASS = 4
#: The films whose only replica is corrupted, one per split the jobs read.
CORRUPT = ("train/NORMAL/IM-0001-0001.jpeg", "test/PNEUMONIA/person10_bacteria_0.jpeg")


class TwoNodes(Private):
    """The private cluster and a second DataNode, with its own data dir and ports."""

    def data_dirs(self) -> list[Path]:
        return [self.state / "hdfs" / "data", self.state / "dn2" / "data"]

    def start_second_datanode(self) -> subprocess.Popen:
        """A DataNode process of the same Hadoop, configuration and NameNode; only its data
        dir and ports differ (Hadoop's generic ``-D`` options)."""
        home = self.state / "dn2"
        (home / "logs").mkdir(parents=True, exist_ok=True)
        ports = free_ports(3)
        command = [
            str(config.JAVA_HOME / "bin" / "java"), "-Xmx256m", *config.DAEMON_JVM_OPTS,
            "-Djava.net.preferIPv4Stack=true", f"-Djava.io.tmpdir={home}",
            f"-Dhadoop.log.dir={home / 'logs'}", "-Dhadoop.log.file=datanode.log",
            "-Dhadoop.root.logger=INFO,RFA", f"-Dhadoop.home.dir={jars.hadoop_home()}",
            "-cp", jars.classpath(self.state / "conf" / "hadoop"),
            "org.apache.hadoop.hdfs.server.datanode.DataNode",
            "-D", f"dfs.datanode.data.dir=file://{home / 'data'}",
            "-D", f"dfs.datanode.address={config.CLUSTER_BIND_HOST}:{ports[0]}",
            "-D", f"dfs.datanode.http.address={config.CLUSTER_BIND_HOST}:{ports[1]}",
            "-D", f"dfs.datanode.ipc.address={config.CLUSTER_BIND_HOST}:{ports[2]}"]
        with (home / "out").open("ab") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        deadline = time.monotonic() + 120
        while self.live_datanodes() < 2:
            assert process.poll() is None, (home / "out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the second DataNode did not register in 120 s"
            time.sleep(1)
        return process

    def live_datanodes(self) -> int:
        beans = requests.get(f"{self.webhdfs_url}/jmx", timeout=10, params={
            "qry": "Hadoop:service=NameNode,name=FSNamesystemState"}).json()["beans"]
        return int(beans[0]["NumLiveDataNodes"])

    def replicas(self, path: str) -> list[Path]:
        """The block replica files, on either DataNode, of the HDFS file ``path`` (a film
        smaller than a block: one block), found by the block id the NameNode gives."""
        located = requests.get(f"{self.webhdfs_url}/webhdfs/v1{path}", timeout=10, params={
            "op": "GET_BLOCK_LOCATIONS", "user.name": getpass.getuser()}).json()
        (block,) = located["LocatedBlocks"]["locatedBlocks"]
        name = f"blk_{block['block']['blockId']}"
        return [p for folder in self.data_dirs() for p in folder.rglob(name)]

    def bad_block_reports(self) -> str:
        """What the NameNode logged of clients reporting corrupt replicas."""
        log = self.state / "logs" / "namenode.log"
        return "\n".join(line for line in log.read_text(errors="replace").splitlines()
                         if "reportBadBlocks for block" in line)


def flip_bytes(replica: Path) -> None:
    """Four bytes in the middle of a block replica inverted, its CRC file left alone."""
    data = bytearray(replica.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + 4):
        data[i] ^= 0xFF
    replica.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    env = isolated_env(tmp_path_factory.mktemp("corrupt") / "state")
    done = run_cli("up", env=env)
    if done.returncode != 0:
        pytest.fail(f"private cluster up failed:\n{done.stderr[-3000:]}")
    cluster = TwoNodes(env)
    second = None
    try:
        second = cluster.start_second_datanode()
        yield cluster
    finally:
        if second is not None:
            os.kill(second.pid, signal.SIGTERM)
            second.wait(60)
        run_cli("down", env=env)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return valid_tree(tmp_path_factory.mktemp("films") / "chest_xray", per_class=PER_CLASS,
                      splits=("train", "test"))


def _ingest(nodes: TwoNodes, tree: Path, path: str) -> None:
    done = subprocess.run([*COMMAND, str(tree), nodes.uri(path), "--webhdfs-url",
                           nodes.webhdfs_url], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _verify(nodes: TwoNodes, path: str) -> tuple[int, str, str]:
    done = subprocess.run([*COMMAND, "--verify", nodes.uri(path), "--webhdfs-url",
                           nodes.webhdfs_url], env=ENV, capture_output=True, text=True,
                          timeout=300)
    return done.returncode, done.stdout, done.stderr


def _corrupt(nodes: TwoNodes, path: str, expect: int = 1) -> Path:
    """Flip bytes in the replica of the HDFS file ``path`` on the first DataNode (the one
    ``cluster up`` started) if it holds one."""
    replicas = nodes.replicas(path)
    assert len(replicas) == expect, (path, replicas)
    first = [p for p in replicas if p.is_relative_to(nodes.data_dirs()[0])]
    target = (first or replicas)[0]
    flip_bytes(target)
    return target


@pytest.fixture(scope="module")
def runs(spark, nodes, tree, tmp_path_factory):
    """Ingest to /data (one replica each), rot one train and one test film, then train and
    evaluate on the test split, as the job entry points run them."""
    _ingest(nodes, tree, "/data")
    for rel in CORRUPT:
        _corrupt(nodes, f"/data/{rel}")
    out = tmp_path_factory.mktemp("out")
    train = run_in_process(train_job, ["--data", nodes.uri("/data"), "--model-out",
                                       str(out / "model"), "--weights", "none"])
    evaluate = run_in_process(evaluate_job, ["--data", nodes.uri("/data"), "--model",
                                             str(out / "model"), "--out", str(out / "report")])
    return out, train, evaluate


def test_train_names_the_rotten_film_and_trains_on_the_rest(nodes, runs, record_property):
    out, (code, stderr, logs), _ = runs
    assert code == 0, stderr[-3000:]
    summary = json.loads((out / "model" / "training_summary.json").read_text())
    film = nodes.uri(f"/data/{CORRUPT[0]}")
    assert summary["images"]["skipped"] == [{"path": film, "reason": R.HDFS_CHECKSUM}]
    assert summary["images"]["listed"] == 2 * PER_CLASS
    assert summary["images"]["featurized"] == 2 * PER_CLASS - 1
    assert f"{film}: {R.HDFS_CHECKSUM}" in logs
    record_property("train", [line for line in logs.splitlines() if "featurize train:" in line])


def test_evaluate_names_the_rotten_film_and_scores_the_rest(nodes, runs, record_property):
    out, _, (code, stderr, logs) = runs
    assert code == 0, stderr[-3000:]
    doc = json.loads((out / "report" / "metrics.json").read_text())
    film = nodes.uri(f"/data/{CORRUPT[1]}")
    assert doc["skipped"] == [{"path": film, "reason": R.HDFS_CHECKSUM}]
    assert doc["metrics"]["counts"] == {"NORMAL": PER_CLASS, "PNEUMONIA": PER_CLASS - 1,
                                        "total": 2 * PER_CLASS - 1}
    with (out / "report" / "predictions.csv").open(encoding="utf-8") as f:
        scored = {row["path"] for row in csv.DictReader(f)}
    assert len(scored) == 2 * PER_CLASS - 1 and film not in scored
    record_property("evaluate", [line for line in logs.splitlines() if "featurize test:" in line])


def test_evaluate_with_the_image_source_names_the_rotten_film(nodes, runs):
    """Spark's ``image`` reader is another file source: the rotten film is named the same way."""
    out, _, _ = runs
    code, stderr, _ = run_in_process(evaluate_job, [
        "--data", nodes.uri("/data"), "--model", str(out / "model"), "--reader", "image",
        "--out", str(out / "image-report")])
    assert code == 0, stderr[-3000:]
    doc = json.loads((out / "image-report" / "metrics.json").read_text())
    assert doc["skipped"] == [{"path": nodes.uri(f"/data/{CORRUPT[1]}"), "reason": R.HDFS_CHECKSUM}]
    assert doc["metrics"]["counts"]["total"] == 2 * PER_CLASS - 1


def test_finetune_names_the_rotten_films_and_trains_on_the_rest(nodes, runs):
    """Fine-tuning's pixel cache reads the films of train and test: both rotten films are
    named, the rest are decoded, trained on and scored."""
    out, _, _ = runs
    code, stderr, logs = run_in_process(finetune_job, [
        "--data", nodes.uri("/data"), "--out", str(out / "finetune"), "--arch", "cnn",
        "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--split", "test"])
    assert code == 0, stderr[-3000:]
    doc = json.loads((out / "finetune" / "metrics.json").read_text())
    rotten = sorted(nodes.uri(f"/data/{rel}") for rel in CORRUPT)
    assert doc["skipped"] == [{"path": film, "reason": R.HDFS_CHECKSUM} for film in rotten]
    assert doc["metrics"]["counts"] == {"NORMAL": PER_CLASS, "PNEUMONIA": PER_CLASS - 1,
                                        "total": 2 * PER_CLASS - 1}
    split = doc["training"]["split"]
    assert split["fit"]["films"] + split["validation"]["films"] == 2 * PER_CLASS
    for film in rotten:
        assert f"{film}: {R.HDFS_CHECKSUM}" in logs


def test_verify_names_rotten_changed_and_missing_films(nodes, tree):
    """The re-ingest cannot see rot (HDFS's checksum of a file is made of the CRCs stored at
    write time); ``--verify`` reads the data and names it, and other damage too."""
    client = nodes.client()
    _ingest(nodes, tree, "/audit")
    _corrupt(nodes, f"/audit/{CORRUPT[1]}")
    changed, gone = "train/PNEUMONIA/person2_bacteria_0.jpeg", "test/NORMAL/IM-0011-0001.jpeg"
    other = bytearray((tree / changed).read_bytes())
    other[-3] ^= 0xFF  # same size, other bytes: written as a new file, HDFS's CRCs fit it
    client.write(f"/audit/{changed}", bytes(other), overwrite=True)
    client.delete(f"/audit/{gone}")

    code, out, err = _verify(nodes, "/audit")
    assert code == 1, err[-3000:]
    assert out.splitlines()[:-1] == sorted([f"bad {CORRUPT[1]}: {R.HDFS_CHECKSUM}",
                                            f"bad {gone}: {MISSING}",
                                            f"bad {changed}: {OTHER_BYTES}"])
    assert out.splitlines()[-1].startswith(f"verify: {4 * PER_CLASS} films checked")
    assert "Traceback" not in err

    code, out, err = _verify(nodes, "/clean-copy-missing")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: no manifest"), err


def test_a_good_replica_is_read_around(nodes, runs, tree, record_property):
    """Replication 2, one replica of each test film rotten: evaluate reads every film (HDFS
    falls back to the good replica and reports the bad one) and ``--verify`` finds nothing."""
    out, _, _ = runs
    _ingest(nodes, tree, "/twice")
    client = nodes.client()
    tests = sorted(str(p.relative_to(tree)) for p in (tree / "test").rglob("*.jpeg"))
    for rel in tests:
        client.set_replication(f"/twice/{rel}", 2)
    deadline = time.monotonic() + 120
    while any(len(nodes.replicas(f"/twice/{rel}")) < 2 for rel in tests):
        assert time.monotonic() < deadline, "not replicated to both DataNodes in 120 s"
        time.sleep(1)
    blocks = {_corrupt(nodes, f"/twice/{rel}", expect=2).name for rel in tests}

    code, stderr, _ = run_in_process(evaluate_job, [
        "--data", nodes.uri("/twice"), "--model", str(out / "model"),
        "--out", str(out / "twice-report")])
    assert code == 0, stderr[-3000:]
    doc = json.loads((out / "twice-report" / "metrics.json").read_text())
    assert doc["skipped"] == []
    assert doc["metrics"]["counts"]["total"] == len(tests)
    # The rotten replicas were met and read around, not dodged: with 8 films, each read from
    # either replica at random, all 8 missing the rotten one has odds of 1 in 256.
    reported = {b for b in blocks if f"{b}_" in nodes.bad_block_reports()}
    record_property("bad_replicas_met", f"{len(reported)} of {len(blocks)}")
    assert reported, nodes.bad_block_reports()

    code, out_text, err = _verify(nodes, "/twice")
    assert code == 0, out_text + err[-3000:]
