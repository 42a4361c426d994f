"""Every daemon of the native cluster answers and reports healthy."""
from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from pipeline.cluster import health, native
from tests.cluster_fixtures import process_gone

pytestmark = pytest.mark.cluster


def test_every_daemon_runs_under_a_pid_file(cluster):
    """Now, not as the fixture saw them at the session's start: each daemon's pid file names a
    live process (not a zombie) whose command line runs that daemon's main class."""
    found = {}
    for daemon in native.DAEMONS:
        pid_file = native._pid_file(daemon)
        assert pid_file.exists(), f"{daemon.name}: no pid file {pid_file}"
        pid = found[daemon.name] = int(pid_file.read_text().split()[0])
        assert not process_gone(pid), f"{daemon.name}: pid {pid} ({pid_file}) is not running"
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        assert daemon.main_class in argv, f"{daemon.name}: pid {pid} runs {argv[:2]}..."
    assert native.pids() == found  # and the module's own view agrees


def test_every_check_is_healthy(cluster):
    checks = health.all_checks()
    assert [c.name for c in checks if not c.ok] == [], checks


def test_one_live_datanode_and_one_nodemanager(cluster):
    hdfs = health.get_json(health.url(
        "namenode_http", "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"))
    assert hdfs["beans"][0]["NumLiveDataNodes"] == 1
    assert hdfs["beans"][0]["FSState"] == "Operational"  # out of safe mode
    yarn = health.get_json(health.url("resourcemanager_http", "/ws/v1/cluster/metrics"))
    assert yarn["clusterMetrics"]["activeNodes"] == 1
    assert yarn["clusterMetrics"]["unhealthyNodes"] == 0


def test_status_command_lists_health_and_web_uis(cluster, cli):
    done = cli("status")
    assert done.returncode == 0, done.stdout + done.stderr
    for port in ("namenode_http", "resourcemanager_http", "history_http"):
        assert health.url(port) in done.stdout
    assert done.stdout.strip().endswith("healthy")


@pytest.mark.parametrize("port, path, text", [
    ("namenode_http", "/dfshealth.html", "Namenode information"),
    ("namenode_http", "/explorer.html", "Browse Directory"),
    ("datanode_http", "/datanode.html", "DataNode Information"),
    ("resourcemanager_http", "/cluster/nodes", "Nodes of the cluster"),
    ("nodemanager_http", "/node", "NodeManager information"),
    ("history_http", "/", "History Server"),
])
def test_web_uis_serve_their_pages(cluster, port, path, text):
    """The UI files are on the classpath (HDFS's come from hadoop-hdfs-tests.jar)."""
    with urllib.request.urlopen(health.url(port, path), timeout=10) as response:
        assert response.status == 200
        assert text in response.read().decode(errors="replace")
