"""The Docker Compose variant (docker/compose.yaml), for machines with a Docker engine.

Chosen by `cluster up` when `docker info` answers and the compose plugin exists (or forced with
XRAY_CLUSTER_MODE=docker). Health is checked on the same loopback ports as in native mode.
"""
from __future__ import annotations

import logging
import subprocess
import time
from urllib.parse import urlparse

from pipeline import config
from pipeline.cluster import conf, hdfs_setup, health
from pipeline.cluster.errors import ClusterError

log = logging.getLogger(__name__)

COMPOSE_FILE = config.REPO_ROOT / "docker" / "compose.yaml"
#: Two DataNodes and one NodeManager (two with the "gpu" profile).
DATANODES = 2


def _ok(*cmd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose_available() -> bool:
    """A docker client with the compose plugin (enough to validate the file)."""
    return _ok("docker", "compose", "version")


def available() -> bool:
    """A Docker engine that answers, and compose to drive it."""
    return _ok("docker", "info") and compose_available()


def _compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["docker", "compose", "-f", str(COMPOSE_FILE), *args]
    log.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=not check, text=True)
    if check and done.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed (see its output above)")
    return done


def ensure_spark_archive() -> bool:
    """spark.yarn.archive, as in native mode, but put from inside the NameNode's container:
    the DataNodes' names resolve only on the compose network."""
    hdfs_path = urlparse(conf.read_spark_defaults()["spark.yarn.archive"]).path
    local = hdfs_setup.local_spark_archive()
    size = local.stat().st_size
    present = _compose("exec", "-T", "namenode", "hdfs", "dfs", "-stat", "%b", hdfs_path,
                       check=False)
    if present.returncode == 0 and present.stdout.strip() == str(size):
        log.info("spark.yarn.archive %s already on HDFS", hdfs_path)
        return False
    staged, tmp = "/tmp/spark-jars.zip", f"{hdfs_path}.uploading"
    _compose("cp", str(local), f"namenode:{staged}")
    _compose("exec", "-T", "namenode", "bash", "-c",
             f"hdfs dfs -put -f {staged} {tmp} && hdfs dfs -chmod 644 {tmp} && "
             f"hdfs dfs -rm -f -skipTrash {hdfs_path} && hdfs dfs -mv {tmp} {hdfs_path} && "
             f"rm -f {staged}")
    log.info("uploaded spark.yarn.archive to %s (%.0f MB)", hdfs_path, size / 1e6)
    return True


def up() -> None:
    start = time.monotonic()
    _compose("up", "-d")
    deadline = start + config.CLUSTER_START_TIMEOUT_S
    while not all(c.ok for c in health.all_checks(datanodes_expected=DATANODES)):
        if time.monotonic() > deadline:
            raise ClusterError("containers started but the cluster is not healthy after "
                               f"{config.CLUSTER_START_TIMEOUT_S:.0f} s: "
                               f"docker compose -f {COMPOSE_FILE} logs")
        time.sleep(1)
    ensure_spark_archive()
    log.info("Docker cluster healthy in %.1f s", time.monotonic() - start)


def down() -> None:
    _compose("down")
