"""A Docker Compose cluster for the tests marked `compose`: started once per session by the
same entry point as `XRAY_CLUSTER=docker make cluster-up`, on its own compose project, state
dir and free ports, so a native cluster on the default ports is never disturbed. Its subnet is
chosen by `cluster up` as a user's is, with another network (as one left by an interrupted
run) on the subnet it would have taken: CI once failed on a fixed subnet that another network
held.

Without a Docker engine (docker/engine.sh could not start one) every compose test is skipped,
and the reason is printed: the one skip this suite allows.
"""
from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from pipeline import config
from pipeline.cluster import docker
from tests.budget import require
from tests.cluster_fixtures import isolated_env

REPO = config.REPO_ROOT
ENGINE_LOG = REPO / "out" / "ci" / "engine.log"
UP_LOG = REPO / "out" / "ci" / "compose-up.log"
#: The most `cluster up` (images built, environment packed) and `cluster down` took on a busy
#: 2-core machine (docs/cluster.md): the cluster starts only with time for both and a test.
UP_S, DOWN_S = 420, 180


def engine_missing() -> str | None:
    """Why compose tests cannot run here, or None."""
    if docker.available():
        return None
    why = ""
    if ENGINE_LOG.exists():
        lines = [line for line in ENGINE_LOG.read_text().splitlines() if line.strip()]
        why = f"; docker/engine.sh said: {lines[-1]}" if lines else ""
    return f"no Docker engine with the compose plugin answers (docker info){why}"


class Compose:
    """The test cluster: its environment, and commands against it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        #: the subnet `cluster up` would have taken, held by another network as it started
        self.blocked: ipaddress.IPv4Network | None = None

    def cli(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        """python -m pipeline.cluster <args> for this cluster."""
        env = dict(self.env, PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), self.env.get("PYTHONPATH")])))
        return subprocess.run([sys.executable, "-m", "pipeline.cluster", *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=timeout)

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """docker compose <args> on this cluster's project."""
        return subprocess.run(["docker", "compose", "-p", self.env["XRAY_COMPOSE_PROJECT"],
                               "-f", str(docker.COMPOSE_FILE), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def spark_env(self) -> dict[str, str]:
        """Environment for spark-submit: `eval "$(python -m pipeline.cluster env)"`."""
        done = self.cli("env")
        assert done.returncode == 0, done.stderr
        env = dict(self.env, TF_CPP_MIN_LOG_LEVEL="2", PYSPARK_DRIVER_PYTHON=sys.executable,
                   PYSPARK_PYTHON=sys.executable)
        for line in done.stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key != "PYSPARK_PYTHON":
                env[key] = shlex.split(value)[0]
        return env

    def container(self, service: str) -> str:
        """The id of a service's container, by compose's labels: no compose file needed (the
        file needs every variable `cluster up` computed to parse)."""
        done = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose."
                               f"project={self.env['XRAY_COMPOSE_PROJECT']}", "--filter",
                               f"label=com.docker.compose.service={service}"],
                              capture_output=True, text=True, check=True)
        assert len(done.stdout.split()) == 1, (service, done.stdout)
        return done.stdout.strip()

    def docker(self, action: str, service: str) -> None:
        """docker kill|start a service's container."""
        subprocess.run(["docker", action, self.container(service)], check=True,
                       capture_output=True, timeout=300)

    def url(self, port_name: str, path: str = "") -> str:
        return f"http://localhost:{self.env[f'XRAY_PORT_{port_name.upper()}']}{path}"

    def network(self) -> tuple[str, ipaddress.IPv4Network]:
        """The name and subnet of the project's network, as Docker has them."""
        found = docker.networks(f"label={docker.PROJECT_LABEL}={self.env['XRAY_COMPOSE_PROJECT']}")
        assert len(found) == 1, found
        return found[0]

    def leftovers(self) -> list[str]:
        return docker.leftovers(self.env["XRAY_COMPOSE_PROJECT"])


@pytest.fixture(scope="session")
def compose_cluster(tmp_path_factory) -> Iterator[Compose]:
    reason = engine_missing()
    if reason:
        print(f"\ncompose tests skipped: {reason}", file=sys.stderr)
        pytest.skip(reason)
    require(UP_S + 60 + DOWN_S, "the compose cluster's start, a test and its stop")
    env = isolated_env(tmp_path_factory.mktemp("compose") / "state")
    env.update(XRAY_CLUSTER="docker", XRAY_COMPOSE_PROJECT=f"xray-test-{uuid.uuid4().hex[:6]}",
               XRAY_DOCKER_SUBNET="auto",
               # each NodeManager as native mode's one: two executors (3 GB) and the AM fit
               XRAY_NODEMANAGER_MEMORY_MB="8192")
    cluster = Compose(env)
    blocker = f"{env['XRAY_COMPOSE_PROJECT']}-blocker"  # labelled: a leak is easy to find
    cluster.blocked = docker.pick_subnet(*docker.in_use(), None, docker.SUBNET_CANDIDATES[0])
    made = subprocess.run(["docker", "network", "create", "--label", "xray-test-blocker=1",
                           "--subnet", str(cluster.blocked), blocker],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.fail(f"could not create {blocker} on {cluster.blocked}: {made.stderr.strip()}")
    try:  # the blocker stays while the cluster is up: the tests check the cluster beside it
        started = time.monotonic()
        up = cluster.cli("up")
        # What up did and how long each part took (images, containers, the packed environment)
        UP_LOG.parent.mkdir(parents=True, exist_ok=True)
        UP_LOG.write_text(up.stderr + f"\ncluster up: exit {up.returncode} in "
                                      f"{time.monotonic() - started:.0f} s\n")
        if up.returncode != 0:
            cluster.cli("down")
            pytest.fail(f"compose cluster up failed (exit {up.returncode}):\n{up.stderr[-5000:]}")
        yield cluster
        cluster.cli("down")
    finally:
        subprocess.run(["docker", "network", "rm", blocker], capture_output=True)
