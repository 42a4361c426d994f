"""The README's cluster commands, as written: ingest to HDFS, train and evaluate on YARN,
read the report back from HDFS, and find both applications and their named steps in the
History Server."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from hdfs import InsecureClient

from pipeline import config
from pipeline.cluster.health import url
from pipeline.sample_data import write_tree

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _submit(spark_env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", "yarn", *args]
    done = subprocess.run(cmd, cwd=config.REPO_ROOT, env=spark_env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _history(path: str) -> list | dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url("history_http", f"/api/v1{path}"), timeout=10) as response:
        return json.load(response)


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
    done = subprocess.run([sys.executable, "jobs/ingest.py", str(local), f"hdfs://{base}/chest_xray"],
                          cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = InsecureClient(config.WEBHDFS_URL, user=config.HDFS_USER)
    yield f"hdfs://{base}", client, base
    client.delete(base, recursive=True)


def test_train_and_evaluate_on_yarn(spark_env, hdfs_tree):
    uri, client, base = hdfs_tree
    env = dict(spark_env, TF_CPP_MIN_LOG_LEVEL="2")
    _submit(env, "jobs/train.py", "--data", f"{uri}/chest_xray", "--model-out", f"{uri}/model",
            "--weights", "none")
    _submit(env, "jobs/evaluate.py", "--data", f"{uri}/chest_xray", "--model", f"{uri}/model",
            "--out", f"{uri}/report")

    with client.read(f"{base}/report/metrics.json") as reader:
        doc = json.load(reader)
    with client.read(f"{base}/model/training_summary.json") as reader:
        summary = json.load(reader)
    assert doc["spark"]["master"] == summary["spark"]["master"] == "yarn"
    assert doc["data"].startswith("hdfs://") and doc["split"] == "test"
    assert doc["metrics"]["counts"]["total"] == len(client.list(f"{base}/chest_xray/test/NORMAL")) \
        + len(client.list(f"{base}/chest_xray/test/PNEUMONIA"))
    assert doc["metrics"]["threshold"] == pytest.approx(summary["threshold"])
    assert set(client.list(f"{base}/report")) >= {"metrics.json", "report.html", "roc.png",
                                                 "confusion_matrix.png", "predictions.csv"}

    # (the scan steps list files on the driver and run no Spark job)
    steps = {"train": {"featurize train", "fit classifier", "choose threshold", "save model"},
             "evaluate": {"featurize test", "evaluate test"}}
    for job, app_id in (("train", summary["spark"]["app_id"]), ("evaluate", doc["spark"]["app_id"])):
        app = _completed_app(app_id)
        assert app["name"] == f"xray-{job}"
        described = {j.get("description") for j in _history(f"/applications/{app_id}/jobs")}
        assert steps[job] <= described, (job, described)
