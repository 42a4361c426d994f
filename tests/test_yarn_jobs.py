"""An executor lost mid-job on YARN: the train job recovers and fits the same model as a
fault-free run of the same command. (The README's cluster commands as written, ingest, train,
evaluate and predict on YARN, with their applications and named steps in the History Server:
tests/reliability/test_phi.py, which runs them once for both purposes.)"""
from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
from hdfs import InsecureClient

from pipeline import config
from pipeline.data.sample_data import write_tree
from tests.cli import run_cli
from tests.cluster_fixtures import completed_app, history
from tests.reliability.runner import same_numbers, start, submit

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _submit(spark_env: dict, job: str, *args: str) -> None:
    code, output = submit(job, *args, master="yarn", env=spark_env, timeout=900)
    assert code == 0, output[-3000:]


@pytest.fixture(scope="module")
def hdfs_tree(cluster, tmp_path_factory):
    local = tmp_path_factory.mktemp("yarn") / "chest_xray"
    write_tree(local, scale=1, seed=11)
    base = f"/tmp/xray-yarn-tests/{uuid.uuid4().hex[:8]}"
    done = run_cli(str(local), f"hdfs://{base}/chest_xray", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = InsecureClient(config.WEBHDFS_URL, user=config.HDFS_USER)
    yield f"hdfs://{base}", client, base
    client.delete(base, recursive=True)


@pytest.fixture(scope="module")
def trained(spark_env, hdfs_tree) -> dict:
    """train on YARN, fault-free: the model the tests below read and compare against."""
    uri, client, base = hdfs_tree
    _submit(dict(spark_env, TF_CPP_MIN_LOG_LEVEL="2"), "train", "--data",
            f"{uri}/chest_xray", "--model-out", f"{uri}/model", "--weights", "none")
    with client.read(f"{base}/model/training_summary.json") as reader:
        return json.load(reader)


def _executors_of(app_id: str) -> list[int]:
    """PIDs of this application's executor JVMs (YARN containers on this machine)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"org.apache.spark.executor.YarnCoarseGrainedExecutorBackend" in cmdline and \
                    app_id.encode() in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.fault
def test_executor_killed_mid_featurization_on_yarn(spark_env, hdfs_tree, trained,
                                                   record_property):
    """A node's executor dies (SIGKILL to its JVM, Python workers with it) while featurizing:
    YARN gives Spark a new container, the lost tasks run again, and the model is the same."""
    uri, client, base = hdfs_tree
    job = start("train", "--data", f"{uri}/chest_xray", "--model-out", f"{uri}/model-after-kill",
                "--weights", "none", master="yarn", env=dict(spark_env, TF_CPP_MIN_LOG_LEVEL="2"))
    job.wait_for("step 'featurize train' started", timeout=600)
    app_id = re.search(r"application_\d+_\d+", job.output).group(0)
    time.sleep(3)  # into the tasks
    victims = _executors_of(app_id)
    assert victims, f"no executor JVM of {app_id} found"
    os.kill(victims[0], signal.SIGKILL)
    assert job.wait(900) == 0, job.output[-3000:]
    assert "Lost executor" in job.output, job.output[-3000:]  # the driver saw it die
    record_property("lost_tasks", job.output.count("Lost task"))
    record_property("killed", f"executor JVM {victims[0]} of {app_id} "
                              f"({len(victims)} running)")
    with client.read(f"{base}/model-after-kill/training_summary.json") as reader:
        got = json.load(reader)
    assert (got["images"], got["split"]) == (trained["images"], trained["split"])
    # The same features and counts; the fits' float64 sums may differ in their last bit, as
    # the retried tasks' partial results reach the driver in another order.
    for key in ("class_weights", "threshold", "validation_metrics"):
        assert same_numbers(got[key], trained[key]), (key, got[key], trained[key])
    completed_app(app_id)
    executors = [e for e in history(f"/applications/{app_id}/allexecutors") if e["id"] != "driver"]
    reasons = [e.get("removeReason", "") for e in executors if e.get("removeReason")]
    record_property("executors", f"{len(executors)} used; removed: {reasons}")
    # spark.executor.instances is 2: a third one is the replacement YARN gave for the dead one
    assert len(executors) >= 3, executors
