"""The Docker Compose cluster for real: two DataNodes, two NodeManagers, the History Server,
and the jobs run from the host with the same commands as in native mode.

In order (one cluster for the module, as a user would have it): its network is on a subnet
nothing else on the host holds, and a taken one set by hand is refused; the images hold no Python
libraries and the executors import TensorFlow from the archive the job ships; `make demo`
end to end with its applications in the History Server; a DataNode killed while featurizing
(the model summary equals the fault-free one, and HDFS re-replicates to a healthy fsck once
it is back); a NodeManager killed mid-job (its executor's work reruns on the other node); and
`cluster down` leaves no container, network or volume.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hdfs import InsecureClient

from pipeline import config
from pipeline.cluster import docker
from pipeline.cluster.health import get_json
from tests.budget import require
from tests.cli import ending_error
from tests.cluster_fixtures import isolated_env
from tests.compose.conftest import DOWN_S, Compose
from tests.reliability.runner import same_numbers, start

pytestmark = [pytest.mark.compose, pytest.mark.slow]

REPO = config.REPO_ROOT
BASE = f"/xray-compose-{uuid.uuid4().hex[:6]}"
PROBE = Path(__file__).with_name("python_probe.py")
#: The most each step took on a busy 2-core machine (docs/cluster.md, about twice a quiet
#: one's); each test's budget keeps time for `cluster down` after it.
DEMO_S, KILL_S = 840, 540


def budget(seconds: float) -> pytest.MarkDecorator:
    return pytest.mark.budget(seconds + DOWN_S)


def _spark_submit(cluster, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "spark-submit"), "--master", "yarn",
                           *args], cwd=REPO, env=cluster.spark_env(), capture_output=True,
                          text=True, timeout=timeout)


def _history(cluster, path: str):
    return get_json(cluster.url("history_http", f"/api/v1{path}"), timeout=10)


def _completed(cluster, app_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        apps = {a["id"]: a for a in _history(cluster, "/applications?status=completed")}
        if app_id in apps:
            return apps[app_id]
        time.sleep(3)
    raise AssertionError(f"History Server did not list {app_id} as completed in {timeout_s} s")


def _webhdfs(cluster) -> InsecureClient:
    return InsecureClient(cluster.url("namenode_http"), user=config.HDFS_USER)


def _summary(cluster, model: str) -> dict:
    with _webhdfs(cluster).read(f"{model}/training_summary.json") as reader:
        return json.load(reader)


def _same_model(got: dict, expected: dict) -> None:
    """The same films, split and features; the fits' float64 sums may differ in their last
    bit when retried tasks' partial results reach the driver in another order."""
    assert (got["images"], got["split"]) == (expected["images"], expected["split"])
    for key in ("class_weights", "threshold", "validation_metrics"):
        assert same_numbers(got[key], expected[key]), (key, got[key], expected[key])


def _fsck(cluster) -> str:
    done = cluster.compose("exec", "-T", "namenode", "xray-daemon", "run",
                           "org.apache.hadoop.hdfs.tools.DFSck", "/")
    return done.stdout + done.stderr


@budget(30)
def test_network_on_a_subnet_nothing_else_holds(compose_cluster):
    """`cluster up` chose the subnet around what the host already had (the one it would have
    taken held by another network), and the addresses the cluster advertises are in it."""
    name, net = compose_cluster.network()
    assert compose_cluster.blocked and not net.overlaps(compose_cluster.blocked), net
    others = [(other, held) for other, held in docker.networks() if other != name]
    assert others and not [o for o in others if o[1].overlaps(net)], (net, others)
    assert f"SPARK_LOCAL_IP={net.network_address + 1}" in compose_cluster.cli("env").stdout
    inspect = subprocess.run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                              compose_cluster.container("namenode")], capture_output=True,
                             text=True, check=True).stdout
    assert json.loads(inspect)[name]["IPAddress"] == str(net.network_address + 10)


@budget(60)
def test_a_taken_subnet_set_by_hand_is_one_clear_line(compose_cluster, tmp_path):
    name, net = compose_cluster.network()
    other = Compose(dict(isolated_env(tmp_path / "state"), XRAY_CLUSTER="docker",
                         XRAY_COMPOSE_PROJECT=f"xray-test-{uuid.uuid4().hex[:6]}",
                         XRAY_DOCKER_SUBNET=str(net)))
    line = ending_error(other.cli("up", timeout=600))
    assert f"XRAY_DOCKER_SUBNET={net} overlaps docker network {name} ({net})" in line, line
    assert other.leftovers() == []


@budget(30)
def test_images_carry_no_python_libraries(compose_cluster):
    """The NodeManagers' image has Debian's Python 3.11 and none of the jobs' libraries."""
    for module in ("tensorflow", "keras", "pyspark", "numpy"):
        done = compose_cluster.compose("exec", "-T", "nodemanager1", "python3", "-c",
                                       f"import {module}")
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, (module, done)
    done = compose_cluster.compose("exec", "-T", "nodemanager1", "python3", "--version")
    assert done.stdout.startswith("Python 3.11"), done


@budget(420)
def test_executors_import_tensorflow_from_the_shipped_archive(compose_cluster):
    done = _spark_submit(compose_cluster, str(PROBE))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
             if line.startswith("probe ")]
    assert found, done.stdout[-2000:]
    hosts = {probe["host"] for probe in found}
    assert hosts <= {"nodemanager1", "nodemanager2"}, hosts  # ran in the containers
    for probe in found:
        # YARN's localized copy of spark.archives, unpacked as ./environment
        assert "/environment/" in probe["tensorflow"], probe
        assert "/filecache/" in probe["tensorflow_real"], probe
        assert probe["executable"].endswith("/environment/bin/python"), probe
        assert probe["base"] == "/usr", probe  # the image's interpreter, the archive's libraries
        assert "pipeline.zip" in probe["pipeline"], probe  # the driver's, session.ship_package
    print("\n".join(line for line in done.stderr.splitlines() if "pipeline.cluster.pyenv" in line
                    or "Python environment" in line))
    assert re.search(r"uploaded the executors' Python environment|Python environment already "
                     r"on HDFS", done.stdout + done.stderr), done.stderr[-3000:]


@pytest.fixture(scope="module")
def demo(compose_cluster, tmp_path_factory) -> dict:
    """`make demo` on the compose cluster (the venv this test runs in, never reinstalled),
    with time left for one test that uses it."""
    require(DEMO_S + KILL_S + DOWN_S, "make demo on the compose cluster")
    venv = Path(sys.executable).parent.parent
    out = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    done = subprocess.run(["make", "demo", f"VENV={venv}", "-o", f"{venv}/.installed",
                           f"HDFS_DIR=hdfs://{BASE}", f"OUT={out}"], cwd=REPO,
                          env=compose_cluster.env, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {"output": done.stdout + done.stderr, "seconds": time.monotonic() - started,
            "summary": _summary(compose_cluster, f"{BASE}/model"), "out": out}


@budget(DEMO_S)
def test_demo_end_to_end_with_its_jobs_in_the_history_server(compose_cluster, demo,
                                                             record_property):
    record_property("make_demo_s", round(demo["seconds"]))
    assert demo["summary"]["spark"]["master"] == "yarn"
    with _webhdfs(compose_cluster).read(f"{BASE}/report/metrics.json") as reader:
        metrics = json.load(reader)
    assert metrics["metrics"]["counts"]["total"] > 0
    assert "<html" in (demo["out"] / "report.html").read_text()[:500].lower()  # the local copy
    for app_id, name in ((demo["summary"]["spark"]["app_id"], "xray-train"),
                         (metrics["spark"]["app_id"], "xray-evaluate")):
        app = _completed(compose_cluster, app_id)
        assert app["name"] == name
        executors = [e for e in _history(compose_cluster, f"/applications/{app_id}/allexecutors")
                     if e["id"] != "driver"]
        hosts = {e["hostPort"].rsplit(":", 1)[0] for e in executors}
        assert hosts and hosts <= set(_node_names(compose_cluster)), hosts


def _node_names(cluster) -> dict[str, str]:
    """NodeManager service by the names YARN may give its node: its fixed address, or the
    host name that address resolves to inside the network (YARN canonicalizes node ids)."""
    net = cluster.network()[1]
    names = {service: service for service in docker.NODEMANAGERS}
    names.update({str(net.network_address + docker.ADDRESSES[s]): s for s in docker.NODEMANAGERS})
    return names


def _train(cluster, model: str):
    return start("train", "--data", f"hdfs://{BASE}/chest_xray", "--model-out",
                 f"hdfs://{model}", "--weights", "none", master="yarn", env=cluster.spark_env())


@pytest.mark.fault
@budget(KILL_S)
def test_datanode_killed_mid_featurize(compose_cluster, demo, record_property):
    job = _train(compose_cluster, f"{BASE}/model-dn-killed")
    job.wait_for("step 'featurize train' started", timeout=900)
    time.sleep(3)  # into the tasks
    compose_cluster.docker("kill", "datanode2")
    assert job.wait(1500) == 0, job.output[-4000:]
    _same_model(_summary(compose_cluster, f"{BASE}/model-dn-killed"), demo["summary"])

    restarted = time.monotonic()
    compose_cluster.docker("start", "datanode2")
    deadline = restarted + 600
    while True:
        report = _fsck(compose_cluster)
        under = re.search(r"Under-replicated blocks:\s+(\d+)", report)
        if "is HEALTHY" in report and under and under[1] == "0":
            break
        assert time.monotonic() < deadline, report[-2000:]
        time.sleep(5)
    record_property("re_replicated_s", round(time.monotonic() - restarted, 1))


def _app_containers(cluster, app_id: str) -> tuple[str, list[str]]:
    """(the AM's node host, every live container's node host) from the ResourceManager."""
    rm = cluster.url("resourcemanager_http", f"/ws/v1/cluster/apps/{app_id}/appattempts")
    attempt = get_json(rm)["appAttempts"]["appAttempt"][-1]
    containers = get_json(f"{rm}/{attempt['appAttemptId']}/containers").get("container", [])
    def host(address: str) -> str:
        return address.removeprefix("http://").rsplit(":", 1)[0]
    return (host(attempt["nodeHttpAddress"]),
            [host(c["nodeHttpAddress"]) for c in containers
             if c["containerId"] != attempt["containerId"]])


@pytest.mark.fault
@budget(KILL_S)
def test_nodemanager_killed_mid_job(compose_cluster, demo, record_property):
    job = _train(compose_cluster, f"{BASE}/model-nm-killed")
    job.wait_for("step 'featurize train' started", timeout=900)
    app_id = re.search(r"application_\d+_\d+", job.output).group(0)
    am_host, executor_hosts = _app_containers(compose_cluster, app_id)
    by_address = _node_names(compose_cluster)
    victims = sorted({by_address[h] for h in executor_hosts} - {by_address[am_host]})
    assert victims, f"every executor of {app_id} runs beside its AM on {am_host}: nothing to kill"
    compose_cluster.docker("kill", victims[0])
    assert job.wait(1500) == 0, job.output[-4000:]
    assert "Lost executor" in job.output or "lost" in job.output.lower(), job.output[-3000:]
    _same_model(_summary(compose_cluster, f"{BASE}/model-nm-killed"), demo["summary"])
    executors = [e for e in _history(compose_cluster, f"/applications/{app_id}/allexecutors")
                 if e["id"] != "driver"]
    record_property("executors", [(e["id"], e["hostPort"], e.get("removeReason", ""))
                                  for e in executors])
    compose_cluster.docker("start", victims[0])


@pytest.mark.budget(DOWN_S)
def test_down_leaves_nothing(compose_cluster):
    assert compose_cluster.leftovers()  # the cluster is there to remove
    done = compose_cluster.cli("down")
    assert done.returncode == 0, done.stderr[-3000:]
    assert compose_cluster.leftovers() == []
