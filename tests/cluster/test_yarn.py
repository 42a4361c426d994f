"""A PySpark application on YARN, in client mode as the pipeline's jobs run, appears in the
ResourceManager as SUCCEEDED and in the History Server's REST API."""
from __future__ import annotations

import getpass
import re
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
from hdfs import InsecureClient

from pipeline.cluster import conf, health

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

APP = Path(__file__).with_name("yarn_app.py")


@pytest.fixture(scope="module")
def yarn_app(spark_env):
    """Runs yarn_app.py once with spark-submit --master yarn; yields its application id."""
    out = f"hdfs:///tmp/xray-yarn-test-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [str(conf.spark_home() / "bin" / "spark-submit"), "--master", "yarn", str(APP), out],
        env=spark_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    found = re.search(r"yarn-app-ok (application_\d+_\d+) rows=1000", done.stdout)
    assert found, done.stdout[-2000:]
    yield found[1]
    InsecureClient(health.url("namenode_http"), user=getpass.getuser()).delete(
        urlparse(out).path, recursive=True)


def test_spark_submit_on_yarn_succeeds(yarn_app):
    app = health.get_json(
        health.url("resourcemanager_http", f"/ws/v1/cluster/apps/{yarn_app}"))["app"]
    assert (app["state"], app["finalStatus"]) == ("FINISHED", "SUCCEEDED")
    assert app["applicationType"] == "SPARK"


def test_history_server_lists_the_application(yarn_app):
    """Listed, and as completed: the History Server sees a running app's event log too, and
    notices its end at its next scan of hdfs:///spark-logs (every 5 s)."""
    deadline = time.monotonic() + 60
    while True:
        apps = health.get_json(health.url("history_http", "/api/v1/applications"))
        listed = {app["id"]: app for app in apps}
        done = yarn_app in listed and listed[yarn_app]["attempts"][0]["completed"]
        if done or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert yarn_app in listed, sorted(listed)
    assert listed[yarn_app]["attempts"][0]["completed"] is True
    assert listed[yarn_app]["name"] == "xray-cluster-yarn-check"
