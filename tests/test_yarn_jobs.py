"""The README's cluster commands, as written: ingest to HDFS, train and evaluate on YARN,
read the report back from HDFS, and find both applications and their named steps in the
History Server."""
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
from pipeline.cluster.health import get_json, url
from pipeline.data.sample_data import write_tree
from tests.cli import run_cli
from tests.reliability.runner import same_numbers, start, submit

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _submit(spark_env: dict, job: str, *args: str) -> None:
    code, output = submit(job, *args, master="yarn", env=spark_env, timeout=900)
    assert code == 0, output[-3000:]


def _history(path: str) -> list | dict:
    return get_json(url("history_http", f"/api/v1{path}"), timeout=10)


def _completed_app(app_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        apps = {a["id"]: a for a in _history("/applications?status=completed")}
        if app_id in apps:
            return apps[app_id]
        time.sleep(3)
    raise AssertionError(f"History Server did not list {app_id} as completed in {timeout_s}s")


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


def test_train_and_evaluate_on_yarn(spark_env, hdfs_tree, trained):
    uri, client, base = hdfs_tree
    env = dict(spark_env, TF_CPP_MIN_LOG_LEVEL="2")
    _submit(env, "evaluate", "--data", f"{uri}/chest_xray", "--model", f"{uri}/model",
            "--out", f"{uri}/report")

    with client.read(f"{base}/report/metrics.json") as reader:
        doc = json.load(reader)
    summary = trained
    assert doc["spark"]["master"] == summary["spark"]["master"] == "yarn"
    assert doc["data"].startswith("hdfs://") and doc["split"] == "test"
    assert doc["metrics"]["counts"]["total"] == len(client.list(f"{base}/chest_xray/test/NORMAL")) \
        + len(client.list(f"{base}/chest_xray/test/PNEUMONIA"))
    assert doc["metrics"]["threshold"] == pytest.approx(summary["threshold"])
    assert set(client.list(f"{base}/report")) >= {"metrics.json", "report.html", "roc.png",
                                                 "confusion_matrix.png", "predictions.csv"}

    # (the scan steps list files on the driver and run no Spark job)
    # ("choose threshold" works on the validation scores "fit classifier" collected: no job)
    steps = {"train": {"featurize train", "fit classifier", "save model"},
             "evaluate": {"featurize test", "evaluate test"}}
    for job, app_id in (("train", summary["spark"]["app_id"]), ("evaluate", doc["spark"]["app_id"])):
        app = _completed_app(app_id)
        assert app["name"] == f"xray-{job}"
        described = {j.get("description") for j in _history(f"/applications/{app_id}/jobs")}
        assert steps[job] <= described, (job, described)


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
    _completed_app(app_id)
    executors = [e for e in _history(f"/applications/{app_id}/allexecutors") if e["id"] != "driver"]
    reasons = [e.get("removeReason", "") for e in executors if e.get("removeReason")]
    record_property("executors", f"{len(executors)} used; removed: {reasons}")
    # spark.executor.instances is 2: a third one is the replacement YARN gave for the dead one
    assert len(executors) >= 3, executors
