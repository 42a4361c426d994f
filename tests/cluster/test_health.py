"""Every daemon of the native cluster answers and reports healthy."""
from __future__ import annotations

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
