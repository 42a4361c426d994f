"""Health of each part of the cluster, asked over the daemons' own HTTP endpoints.

The same checks serve `cluster status`, the wait in `cluster up` and the tests, in both native
and Docker modes (Docker publishes the same ports on loopback). A check never raises: a daemon
that does not answer is simply unhealthy, with the reason in ``detail``.
"""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

from pipeline import config


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    url: str


def url(port_name: str, path: str = "") -> str:
    return f"http://{config.CLUSTER_HOST}:{config.CLUSTER_PORTS[port_name]}{path}"


#: Straight to loopback, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(address: str, timeout: float = 3.0) -> dict:
    with _OPENER.open(address, timeout=timeout) as response:
        return json.load(response)


def _ask(name: str, ui: str, address: str, judge) -> Check:
    """judge(json) -> (ok, detail); connection errors become an unhealthy Check."""
    try:
        ok, detail = judge(_get_json(address))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Check(name, False, f"not answering ({reason})", ui)
    return Check(name, ok, detail, ui)


def namenode() -> Check:
    def judge(doc: dict) -> tuple[bool, str]:
        state = doc["beans"][0]["FSState"]
        return state == "Operational", ("out of safe mode" if state == "Operational"
                                        else f"state {state}")
    return _ask("namenode", url("namenode_http"),
                url("namenode_http", "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"),
                judge)


def datanodes(expected: int = 1) -> Check:
    def judge(doc: dict) -> tuple[bool, str]:
        bean = doc["beans"][0]
        live, dead = bean["NumLiveDataNodes"], bean["NumDeadDataNodes"]
        return live >= expected, f"{live} live, {dead} dead (expected {expected})"
    return _ask("datanodes", url("namenode_http", "/dfshealth.html#tab-datanode"),
                url("namenode_http", "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"),
                judge)


def resourcemanager() -> Check:
    def judge(doc: dict) -> tuple[bool, str]:
        state = doc["clusterInfo"]["state"]
        return state == "STARTED", f"state {state}"
    return _ask("resourcemanager", url("resourcemanager_http"),
                url("resourcemanager_http", "/ws/v1/cluster/info"), judge)


def nodemanagers(expected: int = 1) -> Check:
    def judge(doc: dict) -> tuple[bool, str]:
        metrics = doc["clusterMetrics"]
        active, unhealthy = metrics["activeNodes"], metrics["unhealthyNodes"]
        return active >= expected, (f"{active} registered, {unhealthy} unhealthy "
                                    f"(expected {expected}); {metrics['totalMB']} MB, "
                                    f"{metrics['totalVirtualCores']} vcores")
    return _ask("nodemanagers", url("resourcemanager_http", "/cluster/nodes"),
                url("resourcemanager_http", "/ws/v1/cluster/metrics"), judge)


def history() -> Check:
    def judge(doc: list) -> tuple[bool, str]:
        return True, f"answering, {len(doc)} application(s) listed"
    return _ask("history", url("history_http"),
                url("history_http", "/api/v1/applications"), judge)


def hdfs_ready(datanodes_expected: int = 1) -> bool:
    """Writable: out of safe mode with the DataNodes registered."""
    return namenode().ok and datanodes(datanodes_expected).ok


def all_checks(datanodes_expected: int = 1, nodemanagers_expected: int = 1) -> list[Check]:
    return [namenode(), datanodes(datanodes_expected), resourcemanager(),
            nodemanagers(nodemanagers_expected), history()]
