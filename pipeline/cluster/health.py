"""Health of each part of the cluster, asked over the daemons' own HTTP endpoints.

The same checks serve `cluster status`, the wait in `cluster up` and the tests, in both native
and Docker modes (Docker publishes the same ports on loopback). A check never raises: a daemon
that does not answer is simply unhealthy, with the reason in ``detail``.

On a secure cluster every Hadoop endpoint asks for SPNEGO: the checks then authenticate with
the Kerberos ticket of the process (kdc.use_cluster_ticket() points it at the cluster's).
"""
from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass

import requests

from pipeline import config
from pipeline.cluster import kdc


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    url: str


def url(port_name: str, path: str = "") -> str:
    return f"http://{config.CLUSTER_HOST}:{config.CLUSTER_PORTS[port_name]}{path}"


#: What a daemon that is down, starting or confused answers with (requests' errors are
#: OSErrors; an HTTP error status is raised as one by raise_for_status).
_FAILURES = (OSError, ValueError, KeyError, IndexError)


def spnego_auth() -> requests.auth.AuthBase:
    """SPNEGO with the process's Kerberos ticket (requests-kerberos, imported only here: a
    plain cluster's users need not install it)."""
    try:
        from requests_kerberos import OPTIONAL, HTTPKerberosAuth
    except ImportError as err:
        raise OSError(f"requests-kerberos is missing ({err}): {kdc.INSTALL_HINT}") from err
    return HTTPKerberosAuth(mutual_authentication=OPTIONAL)


def get_json(address: str, timeout: float = 3.0) -> dict | list:
    """GET a JSON document; with SPNEGO when the cluster is secure."""
    with requests.Session() as session:
        session.trust_env = False  # straight to loopback, whatever http_proxy says
        response = session.get(address, timeout=timeout,
                               auth=spnego_auth() if kdc.is_secure() else None)
        response.raise_for_status()
        return json.loads(response.content)


def _not_answering(exc: Exception) -> str:
    return f"not answering ({str(exc)[:200]})"


def _ask(name: str, ui: str, address: str,
         judge: Callable[[dict | list], tuple[bool, str]]) -> Check:
    """judge(answer) -> (ok, detail); an error becomes an unhealthy Check."""
    try:
        ok, detail = judge(get_json(address))
    except _FAILURES as exc:
        return Check(name, False, _not_answering(exc), ui)
    return Check(name, ok, detail, ui)


def hdfs(datanodes_expected: int = 1) -> list[Check]:
    """The NameNode (out of safe mode?) and its live DataNodes, from one JMX query."""
    ui, datanode_ui = url("namenode_http"), url("namenode_http", "/dfshealth.html#tab-datanode")
    try:
        bean = get_json(url("namenode_http",
                            "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState"))["beans"][0]
        state, live, dead = bean["FSState"], bean["NumLiveDataNodes"], bean["NumDeadDataNodes"]
    except _FAILURES as exc:
        return [Check("namenode", False, _not_answering(exc), ui),
                Check("datanodes", False, "unknown: the NameNode is not answering", datanode_ui)]
    return [Check("namenode", state == "Operational",
                  "out of safe mode" if state == "Operational" else f"state {state}", ui),
            Check("datanodes", live >= datanodes_expected,
                  f"{live} live, {dead} dead (expected {datanodes_expected})", datanode_ui)]


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
    return _ask("history", url("history_http"), url("history_http", "/api/v1/applications"),
                lambda apps: (True, f"answering, {len(apps)} application(s) listed"))


def datanode_registered() -> bool:
    """The DataNode at the datanode_http port answers and is registered with the NameNode.

    The NameNode alone cannot tell: after a DataNode alone was killed and restarted it still
    counts the dead one as live (for 10 minutes), while writes it sends there are refused.
    """
    try:
        bean = get_json(url("datanode_http",
                            "/jmx?qry=Hadoop:service=DataNode,name=DataNodeInfo"))["beans"][0]
        actors = json.loads(bean["BPServiceActorInfo"])
    except _FAILURES:
        return False
    return bool(actors) and all(actor.get("ActorState") == "RUNNING" for actor in actors)


def hdfs_ready(datanodes_expected: int = 1) -> bool:
    """Writable: out of safe mode with the DataNodes registered."""
    return all(check.ok for check in hdfs(datanodes_expected)) and datanode_registered()


def kdc_check() -> Check:
    """The KDC of a secure cluster accepts connections (the health of its realm shows in every
    other check, which needs tickets from it)."""
    address = (config.CLUSTER_BIND_HOST, config.CLUSTER_PORTS["kdc"])
    where = f"tcp://{address[0]}:{address[1]}"
    try:
        socket.create_connection(address, timeout=3).close()
    except OSError as exc:
        return Check("kdc", False, _not_answering(exc), where)
    return Check("kdc", True, f"realm {config.KERBEROS_REALM}", where)


def all_checks(datanodes_expected: int = 1, nodemanagers_expected: int = 1) -> list[Check]:
    return [*([kdc_check()] if kdc.is_secure() else []), *hdfs(datanodes_expected),
            resourcemanager(), nodemanagers(nodemanagers_expected), history()]
