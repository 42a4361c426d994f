"""Fixtures for tests on the real native cluster (imported by tests/conftest.py), no stand-ins.

`cluster` brings it up with the same entry point as `make cluster-up` (in native mode), reusing
one already running, and at the end stops only the daemons it started itself (set
XRAY_KEEP_CLUSTER=1 to leave them running). `make_isolated_env` describes a second, private
cluster (own state dir, free ports) for tests that kill daemons or take ports, so they never
disturb the shared one that other people and tests use.
"""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import config
from pipeline.cluster import conf, native
from pipeline.cluster.health import get_json, url

REPO = config.REPO_ROOT
#: The JVM options of every Spark JVM the suite starts (tests/conftest.py says why).
JVM_OPTS = " ".join(config.DAEMON_JVM_OPTS)
#: spark-submit options that give YARN executors JVM_OPTS (prepended to any
#: extraJavaOptions, such as a secure cluster's Kerberos ones).
YARN_JVM_CONF = ("--conf", f"spark.executor.defaultJavaOptions={JVM_OPTS}")


def run_cli(command: str, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """python -m pipeline.cluster <command>, as the Makefile runs it, in native mode."""
    full_env = dict(os.environ if env is None else env, XRAY_CLUSTER_MODE="native")
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                           full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pipeline.cluster", command], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


def free_ports(count: int) -> list[int]:
    """count distinct ports free on loopback now, from below Linux's ephemeral range
    (32768-60999): a port picked from inside it can be taken by some outgoing connection
    before a daemon that restarts (as in the SIGKILL test) binds it again."""
    ports: list[int] = []
    for candidate in random.Random().sample(range(20000, 32000), 400):
        with socket.socket() as probe:
            try:
                probe.bind((config.CLUSTER_BIND_HOST, candidate))
            except OSError:
                continue
        ports.append(candidate)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"found only {len(ports)} free ports in 20000-32000")


def isolated_env(state_dir: Path, **overrides: int) -> dict[str, str]:
    """Environment for a private cluster: its own state dir and free ports (the jar and Spark
    archive caches are shared, so it starts without downloading)."""
    env = dict(os.environ, XRAY_STATE_DIR=str(state_dir), XRAY_CACHE_DIR=str(config.CACHE_DIR),
               XRAY_NODEMANAGER_MEMORY_MB="2048")
    for name, port in zip(config.CLUSTER_PORTS, free_ports(len(config.CLUSTER_PORTS))):
        env[f"XRAY_PORT_{name.upper()}"] = str(overrides.get(name, port))
    return env


@pytest.fixture(scope="session")
def cli():
    """run_cli, for tests: cli("status") or cli("up", env=...)."""
    return run_cli


@pytest.fixture
def make_isolated_env(tmp_path):
    """isolated_env on a fresh state dir under tmp_path."""
    return lambda **ports: isolated_env(tmp_path / "state", **ports)


@pytest.fixture(scope="session")
def cluster() -> Iterator[dict[str, int | None]]:
    """The shared native cluster, healthy; yields the daemons' pids."""
    before = native.pids()
    done = run_cli("up")
    if done.returncode != 0:
        pytest.fail(f"cluster up failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    pids = native.pids()
    started = [name for name, pid in pids.items() if before[name] != pid]
    yield pids
    if started and os.environ.get("XRAY_KEEP_CLUSTER") != "1":
        native.down(started)


@pytest.fixture(scope="session")
def spark_env(cluster) -> dict[str, str]:
    """Environment for spark-submit --master yarn against the shared cluster."""
    return dict(os.environ, **conf.spark_env(), PYSPARK_PYTHON=sys.executable,
                PYSPARK_DRIVER_PYTHON=sys.executable)


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie left (a killed daemon nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def history(path: str) -> list | dict:
    """The shared cluster's History Server REST API: ``history("/applications")``."""
    return get_json(url("history_http", f"/api/v1{path}"), timeout=10)


def completed_app(app_id: str, timeout_s: float = 120) -> dict:
    """The History Server's entry for ``app_id`` once it lists it as completed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        apps = {a["id"]: a for a in history("/applications?status=completed")}
        if app_id in apps:
            return apps[app_id]
        time.sleep(3)
    raise AssertionError(f"History Server did not list {app_id} as completed in {timeout_s}s")
