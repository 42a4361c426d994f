"""Every daemon of the native cluster answers and reports healthy."""
from __future__ import annotations

import urllib.request

import pytest

from pipeline.cluster import health, native

pytestmark = pytest.mark.cluster


def test_every_daemon_runs_under_a_pid_file(cluster):
    assert all(cluster[d.name] for d in native.DAEMONS), cluster


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
