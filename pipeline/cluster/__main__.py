"""python -m pipeline.cluster up|down|status|env|lock (the Makefile's cluster-* targets).

up      start the cluster and wait until healthy; a second `up` is a no-op. Native unless
        XRAY_CLUSTER=docker (Docker Compose) or auto (docker when an engine answers);
        `up --secure`: native, with a KDC and Kerberos
down    stop what `up` started (native: by pid file; Docker: compose down, volumes included
        unless --keep-data)
status  each daemon's health and web UI; exit 1 when something is unhealthy
env     `export` lines for spark-submit --master yarn: eval "$(python -m pipeline.cluster env)"
lock    re-pin the sha256 of Hadoop's jars after changing the pom or HADOOP_VERSION

`up` records the mode it started (<state dir>/run/mode.json): `down`, `status` and `env`
act on that cluster whatever XRAY_CLUSTER says now.

The command-line contract is every entry point's (``pipeline.runtime.cli``): problems a user
can fix (a port in use, no Java 17) end as one ``error:`` line on stderr and exit 2; `status`
exits 1 when something is unhealthy.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from pipeline import config
from pipeline.cluster import conf, docker, health, jars, kdc, native, pyenv
from pipeline.cluster.errors import ClusterError
from pipeline.runtime.cli import EXIT_UNHEALTHY, base_parser, run_job

log = logging.getLogger("pipeline.cluster")


def mode_file() -> Path:
    return native.run_dir() / "mode.json"


def requested_mode() -> str:
    """The mode `up` starts: XRAY_CLUSTER (native, docker or auto)."""
    if config.CLUSTER_MODE in ("native", "docker"):
        return config.CLUSTER_MODE
    if config.CLUSTER_MODE != "auto":
        raise ClusterError(f"XRAY_CLUSTER={config.CLUSTER_MODE}: use native, docker or auto")
    return "docker" if docker.available() else "native"


def recorded_mode() -> str:
    """The mode of the last `up` on this state dir; native when none was recorded (native
    `down` stops only what its pid files name, so it is safe on a machine with nothing)."""
    try:
        return json.loads(mode_file().read_text())["mode"]
    except (OSError, ValueError, KeyError):
        return "native"


def _record(current: str) -> None:
    mode_file().parent.mkdir(parents=True, exist_ok=True)
    mode_file().write_text(json.dumps({"mode": current, "since": time.time(),
                                       "compose_project": config.COMPOSE_PROJECT}) + "\n")


def _is_up(current: str) -> bool:
    if current == "native":
        return any(native.pids().values())
    return docker.available() and bool(docker.running())


def up(secure: bool = False) -> None:
    """secure: a Kerberized cluster, which only native mode has (docs/security.md)."""
    current, previous = requested_mode(), recorded_mode()
    if secure and current != "native":
        if config.CLUSTER_MODE == "docker":
            raise ClusterError("--secure (Kerberos) is native mode only: unset XRAY_CLUSTER=docker")
        current = "native"
    if previous != current and _is_up(previous):
        raise ClusterError(f"a {previous}-mode cluster is up on this state dir "
                           f"({config.STATE_DIR}): `make cluster-down` first")
    _record(current)
    docker.up() if current == "docker" else native.up(secure=secure)
    # The executors' Python for the jobs to come (uploaded by the first job): packed now, so
    # that no job waits minutes for it. The Docker nodes' Python is Debian's, at /usr.
    try:
        pyenv.build("/usr" if current == "docker" else sys.base_prefix)
    except ClusterError as exc:
        log.warning("%s", exc)


def down(keep_data: bool) -> None:
    if recorded_mode() == "docker":
        docker.down(keep_data)
    else:
        native.down()
    mode_file().unlink(missing_ok=True)


def env_lines() -> list[str]:
    """`export` lines for a Spark driver on this machine, for the recorded cluster."""
    if recorded_mode() == "docker":
        env = docker.client_env()
    else:
        if kdc.is_secure():
            kdc.use_cluster_ticket()  # a fresh ticket in the cache KRB5CCNAME names
        env = conf.spark_env()
    lines = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    # The driver runs the Python that printed this, unless one is chosen; the executors run
    # the packed environment the job ships (pipeline.cluster.pyenv).
    lines.append(f'export PYSPARK_PYTHON="${{PYSPARK_PYTHON:-{sys.executable}}}"')
    return lines


def status(current: str) -> int:
    nodes = 1 if current == "native" else len(docker.DATANODES)
    pids = native.pids() if current == "native" else {}
    if current == "native" and kdc.is_secure():
        try:  # the checks ask SPNEGO-protected endpoints; a dead KDC shows as unhealthy
            kdc.use_cluster_ticket()
        except ClusterError as err:
            print(f"no Kerberos ticket for the checks: {err}", file=sys.stderr)
    checks = health.all_checks(datanodes_expected=nodes, nodemanagers_expected=nodes)
    logs = (f"state dir {config.STATE_DIR}, logs {native.log_dir()}" if current == "native"
            else f"project {config.COMPOSE_PROJECT}, logs: docker compose -p "
                 f"{config.COMPOSE_PROJECT} logs SERVICE")
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
    p.add_argument("--keep-data", action="store_true",
                   help="down, Docker mode: keep the HDFS and YARN volumes")
    p.add_argument("--secure", action="store_true",
                   help="up: a Kerberized native cluster (docs/security.md); down, status and "
                        "env follow the mode recorded at up")
    return p


def main(args: argparse.Namespace) -> int:
    if args.command == "env":
        print("\n".join(env_lines()))
    elif args.command == "lock":
        jars.write_lock()
    elif args.command == "status":
        return status(recorded_mode())
    elif args.command == "up":
        up(args.secure)
    else:
        down(args.keep_data)
    return 0


if __name__ == "__main__":
    run_job(main, parser())
