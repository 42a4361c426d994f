"""python -m pipeline.cluster up|down|status|env|lock (the Makefile's cluster-* targets).

up      start the cluster (Docker Compose when an engine answers, else native) and wait until
        healthy; a second `up` is a no-op; `up --secure`: native, with a KDC and Kerberos
down    stop what `up` started (native: by pid file; Docker: compose down)
status  each daemon's health and web UI; exit 1 when something is unhealthy
env     `export` lines for spark-submit --master yarn: eval "$(python -m pipeline.cluster env)"
lock    re-pin the sha256 of Hadoop's jars after changing the pom or HADOOP_VERSION

The command-line contract is every entry point's (``pipeline.runtime.cli``): problems a user
can fix (a port in use, no Java 17) end as one ``error:`` line on stderr and exit 2; `status`
exits 1 when something is unhealthy.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from pipeline import config
from pipeline.cluster import conf, docker, health, jars, kdc, native
from pipeline.cluster.errors import ClusterError
from pipeline.runtime.cli import EXIT_UNHEALTHY, base_parser, run_job


def mode() -> str:
    if config.CLUSTER_MODE in ("native", "docker"):
        return config.CLUSTER_MODE
    if config.CLUSTER_MODE != "auto":
        raise ClusterError(f"XRAY_CLUSTER_MODE={config.CLUSTER_MODE}: use auto, native or docker")
    return "docker" if docker.available() else "native"


def status(current: str) -> int:
    expected = docker.DATANODES if current == "docker" else 1
    pids = native.pids() if current == "native" else {}
    checks = health.all_checks(datanodes_expected=expected)
    logs = (f"state dir {config.STATE_DIR}, logs {native.log_dir()}" if current == "native"
            else f"logs: docker compose -f {docker.COMPOSE_FILE} logs")
    print(f"cluster ({current} mode, {logs})")
    for check in checks:
        pid = pids.get({"datanodes": "datanode", "nodemanagers": "nodemanager"}
                       .get(check.name, check.name))
        where = f"pid {pid}" if pid else ""
        print(f"  {'ok  ' if check.ok else 'FAIL'} {check.name:<16}{where:<11}"
              f"{check.detail:<55} {check.url}")
    print(f"  HDFS: hdfs://{config.CLUSTER_HOST}:{config.CLUSTER_PORTS['namenode_rpc']}  "
          f"(WebHDFS {health.url('namenode_http', '/webhdfs/v1/')})")
    healthy = all(check.ok for check in checks)
    print("healthy" if healthy else "UNHEALTHY: see the logs above, or `make cluster-up`")
    return 0 if healthy else EXIT_UNHEALTHY


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], spark=False, prog="python -m pipeline.cluster")
    p.add_argument("command", choices=("up", "down", "status", "env", "lock"))
    p.add_argument("--secure", action="store_true",
                   help="up: a Kerberized native cluster (docs/security.md); down, status and "
                        "env follow the mode recorded at up")
    return p


def main(args: argparse.Namespace) -> int:
    if args.command == "env":
        if kdc.is_secure():
            kdc.use_cluster_ticket()  # a fresh ticket in the cache KRB5CCNAME names
        for key, value in conf.spark_env().items():
            print(f"export {key}={shlex.quote(value)}")
        # Executors and driver run the Python that printed this, unless one is chosen.
        print(f'export PYSPARK_PYTHON="${{PYSPARK_PYTHON:-{sys.executable}}}"')
        return 0
    if args.command == "lock":
        jars.write_lock()
        return 0
    current = "native" if args.secure or kdc.is_secure() else mode()
    if args.command == "status" and kdc.is_secure():
        try:  # the checks ask SPNEGO-protected endpoints; a dead KDC shows as unhealthy
            kdc.use_cluster_ticket()
        except ClusterError as err:
            print(f"no Kerberos ticket for the checks: {err}", file=sys.stderr)
    if args.command == "status":
        return status(current)
    if current == "docker":
        docker.up() if args.command == "up" else docker.down()
    elif args.command == "up":
        native.up(secure=args.secure)
    else:
        native.down()
    return 0


if __name__ == "__main__":
    run_job(main, parser())
