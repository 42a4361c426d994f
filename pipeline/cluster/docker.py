"""The Docker Compose cluster (docker/compose.yaml): a NameNode, two DataNodes (replication 2),
a ResourceManager, two NodeManagers and the Spark History Server, each in its own container,
from images this repo builds (docker/Dockerfile), with the jobs' driver on the host.

How the host and the containers reach each other (why not host names or published ports):
the jobs run their Spark driver on the host (client mode, as in native mode) and their
executors in the NodeManagers' containers, and Spark ships the driver's Hadoop configuration
to the executors. So every address in that configuration (the NameNode, each DataNode as the
NameNode hands it out, the ResourceManager, the driver itself) must mean the same machine on
both sides. Compose's service names resolve only inside the network, and ``localhost`` with
published ports means another machine inside a container. Fixed addresses do both: the
compose network has a subnet settled before it starts (``XRAY_DOCKER_SUBNET``, or by default
a /24 that no Docker network or route of the host uses: ``choose_subnet``), each service a
fixed address in it that it also advertises (a DataNode via dfs.datanode.hostname, a
NodeManager via yarn.nodemanager.hostname), and the host is the network's gateway, the
address the driver binds to. A Linux host routes to its bridge networks directly, so WebHDFS
redirects (ingest), HDFS reads and writes and YARN RPC from the host need no name resolution
and no published port; containers reach the driver at the gateway. The web UIs are also
published on 127.0.0.1 on the XRAY_PORT_* ports, as native mode has them, for browsers and
health checks.
(Docker Desktop on macOS/Windows does not route to container addresses: use native mode there.)

Configuration: hadoop-conf/ and spark-conf/, rendered per container under
``<state>/docker/conf/<service>/`` with that container's values, plus ``client/`` for the
host (``python -m pipeline.cluster env``). `up` records the mode (``<state>/run/mode.json``)
so that `down`, `status` and `env` act on the cluster that is there.
"""
from __future__ import annotations

import getpass
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline import config
from pipeline.cluster import conf, hdfs_setup, health, jars
from pipeline.cluster.errors import ClusterError

log = logging.getLogger(__name__)

COMPOSE_FILE = config.REPO_ROOT / "docker" / "compose.yaml"
DOCKER_DIR = config.REPO_ROOT / "docker"
DATANODES = ("datanode1", "datanode2")
NODEMANAGERS = ("nodemanager1", "nodemanager2")
#: service -> host number in the subnet (the gateway, .1, is the host).
ADDRESSES = {"namenode": 10, "datanode1": 11, "datanode2": 12, "resourcemanager": 20,
             "nodemanager1": 21, "nodemanager2": 22, "nodemanager-gpu": 23, "history": 30}
#: Where `up` looks for a free /24 when XRAY_DOCKER_SUBNET is auto: 172.29.77.0/24 first,
#: then on through 172.16.0.0/12 (wrapping). Docker gives its own networks /16s of that range
#: but skips any that overlap an existing network, so a /24 taken here never collides later.
_BLOCKS = list(ipaddress.IPv4Network("172.16.0.0/12").subnets(new_prefix=24))
_FIRST = _BLOCKS.index(ipaddress.IPv4Network("172.29.77.0/24"))
SUBNET_CANDIDATES = _BLOCKS[_FIRST:] + _BLOCKS[:_FIRST]
PROJECT_LABEL = "com.docker.compose.project"
#: Settings of this deployment only (added to the rendered site files): a dead DataNode or
#: NodeManager is noticed in about a minute instead of ten, so its blocks are re-replicated
#: and its containers rerun elsewhere while the job still runs; one container per node
#: heartbeat spreads a job's executors over both NodeManagers.
EXTRA = {
    "hdfs-site.xml": {"dfs.namenode.heartbeat.recheck-interval": "15000"},
    "yarn-site.xml": {"yarn.nm.liveness-monitor.expiry-interval-ms": "30000"},
    "capacity-scheduler.xml": {
        "yarn.scheduler.capacity.per-node-heartbeat.maximum-container-assignments": "1"},
}
#: `compose up --wait`: creating a container copies the whole image on the vfs storage
#: driver (about 0.7 GB each, seven of them), which a busy disk makes slow.
COMPOSE_WAIT_S = max(config.CLUSTER_START_TIMEOUT_S, 900)


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


# --- addresses and configuration ------------------------------------------------------------

def _explicit_subnet() -> ipaddress.IPv4Network | None:
    """XRAY_DOCKER_SUBNET when the user set one (not ``auto``)."""
    if config.DOCKER_SUBNET == "auto":
        return None
    try:
        return ipaddress.IPv4Network(config.DOCKER_SUBNET)
    except ValueError as exc:
        raise ClusterError(f"XRAY_DOCKER_SUBNET={config.DOCKER_SUBNET}: {exc}") from None


def _subnet_file() -> Path:
    return state_dir() / "subnet"


def subnet() -> ipaddress.IPv4Network:
    """The compose network's subnet: the one set, else the one `up` chose (recorded in the
    state dir, so `down`, `status` and `env` see it), else the first candidate."""
    explicit = _explicit_subnet()
    if explicit:
        return explicit
    try:
        return ipaddress.IPv4Network(_subnet_file().read_text().strip())
    except (OSError, ValueError):
        return SUBNET_CANDIDATES[0]


def host_routes(table: Path = Path("/proc/net/route")) -> list[tuple[ipaddress.IPv4Network, str]]:
    """The host's IPv4 routes but the default one, as (network, interface): a bridge on one
    of them would cut the host off from that network."""
    routes = []
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest, mask = (ipaddress.IPv4Address(int(f, 16).to_bytes(4, "little"))
                      for f in (fields[1], fields[7]))
        if int(mask):
            routes.append((ipaddress.IPv4Network(f"{dest}/{mask}", strict=False), fields[0]))
    return routes


def networks(*filters: str) -> list[tuple[str, ipaddress.IPv4Network]]:
    """(name, subnet) of each IPv4 pool of the Docker networks that match the filters."""
    try:
        ids = subprocess.run(["docker", "network", "ls", "-q",
                              *(arg for f in filters for arg in ("--filter", f))],
                             capture_output=True, text=True, timeout=60).stdout.split()
        # a network removed since `ls` is left out of the answer, not an error
        done = subprocess.run(["docker", "network", "inspect", *ids], capture_output=True,
                              text=True, timeout=60) if ids else None
    except subprocess.TimeoutExpired:
        raise ClusterError("the Docker engine did not list its networks within 60 s") from None
    found = []
    for net in json.loads(done.stdout or "[]") if done else []:
        for pool in (net.get("IPAM") or {}).get("Config") or []:
            try:
                found.append((net["Name"],
                              ipaddress.IPv4Network(pool.get("Subnet", ""), strict=False)))
            except ValueError:
                continue  # no subnet given, or an IPv6 one
    return found


def _own_network() -> ipaddress.IPv4Network | None:
    """The subnet of this project's network when it exists (a cluster up, or half up)."""
    return next((net for _, net in networks(f"label={PROJECT_LABEL}={config.COMPOSE_PROJECT}")),
                None)


def in_use() -> tuple[dict[ipaddress.IPv4Network, str], dict[ipaddress.IPv4Network, str]]:
    """What holds address space on this host, as pick_subnet takes it: every Docker network,
    and every route but the default one."""
    return ({net: f"docker network {name}" for name, net in networks()},
            {net: f"the host's route via {dev}" for net, dev in host_routes()})


def pick_subnet(nets: dict[ipaddress.IPv4Network, str],
                routes: dict[ipaddress.IPv4Network, str],
                explicit: ipaddress.IPv4Network | None,
                last: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """XRAY_DOCKER_SUBNET unless a Docker network overlaps it (Docker would refuse it; a
    route only warns: a hand-set subnet inside a broad route may be meant); else (auto) the
    last subnet chosen or the first candidate that no network and no route overlaps. Both
    maps: subnet -> what holds it (in_use)."""
    def holders(net: ipaddress.IPv4Network, taken: dict[ipaddress.IPv4Network, str]) -> str:
        return ", ".join(f"{holder} ({held})" for held, holder in taken.items()
                         if held.overlaps(net))

    if explicit:
        if refused := holders(explicit, nets):
            raise ClusterError(f"XRAY_DOCKER_SUBNET={explicit} overlaps {refused}: choose a "
                               "free subnet, or XRAY_DOCKER_SUBNET=auto to have one chosen")
        if warned := holders(explicit, routes):
            log.warning("XRAY_DOCKER_SUBNET=%s overlaps %s: the host will reach the cluster, "
                        "not that network, at those addresses", explicit, warned)
        return explicit
    taken = {**routes, **nets}
    chosen = next((net for net in (last, *SUBNET_CANDIDATES) if not holders(net, taken)), None)
    if chosen is None:
        raise ClusterError("no free /24 left in 172.16.0.0/12 for the compose network: set "
                           "XRAY_DOCKER_SUBNET to a free subnet")
    first = SUBNET_CANDIDATES[0]
    held = holders(first, taken)
    log.info("compose network subnet %s (%s)", chosen, f"{first} overlaps {held}" if held else
             "the default" if chosen == first else "the one it had last time")
    return chosen


def choose_subnet() -> ipaddress.IPv4Network:
    """Settle and record the network's subnet before `compose up`: the existing network's
    (a cluster up or half up), else pick_subnet's. A fixed default failed whenever another
    network, a leftover of an interrupted run say, held it ("Pool overlaps")."""
    explicit, own = _explicit_subnet(), _own_network()
    if own and explicit and explicit != own:
        raise ClusterError(f"the network of compose project {config.COMPOSE_PROJECT} has "
                           f"subnet {own}, not XRAY_DOCKER_SUBNET={explicit}: "
                           "`make cluster-down` first")
    chosen = own or pick_subnet(*in_use(), explicit, subnet())
    _subnet_file().parent.mkdir(parents=True, exist_ok=True)
    _subnet_file().write_text(f"{chosen}\n")
    return chosen


def address(service: str) -> str:
    return str(subnet().network_address + ADDRESSES[service])


def gateway() -> str:
    """The host's address on the compose network: where the containers reach the driver."""
    return str(subnet().network_address + 1)


def state_dir() -> Path:
    return config.STATE_DIR / "docker"


def conf_dir(service: str) -> Path:
    return state_dir() / "conf" / service


def client_hadoop_conf_dir() -> Path:
    return conf_dir("client") / "hadoop"


def client_spark_conf_dir() -> Path:
    return conf_dir("client") / "spark"


def _values(node: str, bind: str = "0.0.0.0") -> dict[str, str]:
    values = conf.xray_properties()
    values.update({
        "xray.state.dir": "/data", "xray.bind.host": bind, "xray.node.host": node,
        "xray.namenode.host": address("namenode"),
        "xray.resourcemanager.host": address("resourcemanager"),
        "xray.dfs.replication": str(len(DATANODES)),
    })
    return values


def client_env() -> dict[str, str]:
    """What a Spark driver on the host needs for this cluster (`cluster env`)."""
    return {"HADOOP_CONF_DIR": str(client_hadoop_conf_dir()),
            "YARN_CONF_DIR": str(client_hadoop_conf_dir()),
            "SPARK_CONF_DIR": str(client_spark_conf_dir()),
            "JAVA_HOME": str(config.JAVA_HOME), "SPARK_LOCAL_IP": gateway()}


def render() -> list[Path]:
    """Write every container's configuration and the host's; returns the files that changed."""
    changed = []
    for service in ADDRESSES:
        extra = EXTRA
        if service == "nodemanager-gpu":
            extra = {**EXTRA, "yarn-site.xml": {**EXTRA["yarn-site.xml"],
                                                "yarn.nodemanager.resource-plugins": "yarn.io/gpu"}}
        changed += conf.render_hadoop_dir(conf_dir(service), _values(address(service)), extra)
    # The host: its client settings reach the executors too (Spark ships them), so the same
    # addresses; nothing of the host listens but the driver, on the gateway.
    changed += conf.render_hadoop_dir(client_hadoop_conf_dir(), _values(gateway(), gateway()),
                                      EXTRA)
    history = {"spark.history.ui.port": str(config.CLUSTER_PORTS["history_http"])}
    # The executors' Python: the driver's venv, shipped (pipeline.cluster.pyenv), runs on the
    # image's Debian Python 3.11 at /usr/bin.
    client = {**history, "spark.driver.bindAddress": gateway(), "spark.driver.host": gateway(),
              "spark.xray.pyenv.enabled": "true", "spark.xray.pyenv.pythonPrefix": "/usr"}
    spark_dir = client_spark_conf_dir()
    spark_dir.mkdir(parents=True, exist_ok=True)
    env_sh = "".join(f"export {k}={v}\n" for k, v in client_env().items()
                     if k != "SPARK_CONF_DIR")
    env_sh += 'export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$(command -v python3)}"\n'
    files = {conf_dir("history") / "spark-defaults.conf": conf.spark_defaults_text(history),
             spark_dir / "spark-defaults.conf": conf.spark_defaults_text(client),
             spark_dir / "spark-env.sh": env_sh}
    files.update({spark_dir / src.name: src.read_text()
                  for src in conf.SPARK_CONF_SRC.iterdir()
                  if src.is_file() and src.name != "spark-defaults.conf"})
    for path, text in files.items():
        if conf._write_if_changed(path, text, 0o755 if path.suffix == ".sh" else 0o644):
            changed.append(path)
    return changed


# --- images ---------------------------------------------------------------------------------

def _digest(*paths: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def image_tags() -> tuple[str, str]:
    """(hadoop image, history image): named by what goes into them, so a change rebuilds."""
    hadoop = _digest(DOCKER_DIR / "Dockerfile", DOCKER_DIR / "xray-daemon",
                     DOCKER_DIR / "xray-health", jars.LOCK)
    spark_jars = "\n".join(sorted(p.name for p in (conf.spark_home() / "jars").glob("*.jar")))
    history = _digest(DOCKER_DIR / "history.Dockerfile", extra=hadoop + spark_jars)
    return (f"xray-hadoop:{config.HADOOP_VERSION}-{hadoop}",
            f"xray-spark-history:{config.HADOOP_VERSION}-{history}")


def _image_exists(tag: str) -> bool:
    return _ok("docker", "image", "inspect", tag)


def _build(tag: str, dockerfile: Path, files: dict[str, Path], *args: str) -> None:
    """docker build with a context of hard links (copies across file systems) to files."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xray-image-", dir=config.CACHE_DIR) as tmp:
        for name, src in files.items():
            if src.is_dir():
                shutil.copytree(src, Path(tmp) / name, copy_function=_link_or_copy)
            else:
                _link_or_copy(src, Path(tmp) / name)
        cmd = ["docker", "build", "--network", "host", "-q", "-f", str(dockerfile), "-t", tag,
               *args, tmp]
        log.info("building image %s (%s)", tag, dockerfile.name)
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise ClusterError(f"could not build the cluster image {tag}: {tail}. Without Docker, "
                           "XRAY_CLUSTER=native make cluster-up runs the same cluster")
    log.info("built %s in %.0f s", tag, time.monotonic() - start)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def ensure_images() -> tuple[str, str]:
    """Build the two images unless they exist; Hadoop's jars come verified from the same lock
    as native mode's (pipeline.cluster.jars), fetched on the host."""
    hadoop, history = image_tags()
    if not _image_exists(hadoop):
        home = jars.ensure_jars()
        _build(hadoop, DOCKER_DIR / "Dockerfile",
               {"hadoop": home, "xray-daemon": DOCKER_DIR / "xray-daemon",
                "xray-health": DOCKER_DIR / "xray-health"})
    if not _image_exists(history):
        _build(history, DOCKER_DIR / "history.Dockerfile",
               {"spark-jars": conf.spark_home() / "jars"}, "--build-arg", f"BASE={hadoop}")
    return hadoop, history


# --- compose --------------------------------------------------------------------------------

def compose_env(images: tuple[str, str] | None = None) -> dict[str, str]:
    """The variables docker/compose.yaml reads."""
    env = dict(os.environ, XRAY_COMPOSE_PROJECT=config.COMPOSE_PROJECT,
               XRAY_DOCKER_SUBNET=str(subnet()), XRAY_DOCKER_CONF=str(state_dir() / "conf"),
               XRAY_HDFS_SUPERUSER=getpass.getuser())
    env.update({f"XRAY_IP_{s.upper().replace('-', '_')}": address(s) for s in ADDRESSES})
    env.update({f"XRAY_PORT_{name.upper()}": str(port)
                for name, port in config.CLUSTER_PORTS.items()})
    env.update({f"XRAY_HEAP_{name.upper()}": str(mb) for name, mb in config.DAEMON_HEAP_MB.items()})
    hadoop, history = images or image_tags()
    env.update(XRAY_HADOOP_IMAGE=hadoop, XRAY_HISTORY_IMAGE=history)
    return env


def compose(*args: str, check: bool = True, capture: bool = False,
            env: dict[str, str] | None = None, timeout: float | None = None
            ) -> subprocess.CompletedProcess:
    cmd = ["docker", "compose", "-p", config.COMPOSE_PROJECT, "-f", str(COMPOSE_FILE), *args]
    log.info("running %s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=capture or not check, text=True,
                          env=env or compose_env(), timeout=timeout)
    if check and done.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed (exit {done.returncode})")
    return done


def container(service: str) -> str:
    """The container id of a service (for `docker kill`, `docker exec`)."""
    done = compose("ps", "-q", "--all", service, capture=True)
    return done.stdout.strip()


def check_ports() -> None:
    """The published ports are free on the bind address (one line naming the port if not)."""
    bind = os.environ.get("XRAY_BIND_ADDRESS", "127.0.0.1")
    for name in ("namenode_rpc", "namenode_http", "datanode_http", "resourcemanager",
                 "resourcemanager_http", "nodemanager_http", "history_http"):
        port = config.CLUSTER_PORTS[name]
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((bind, port))
            except OSError:
                raise ClusterError(f"port {port} ({name}) on {bind} is already in use: stop "
                                   f"whatever holds it or choose another with "
                                   f"XRAY_PORT_{name.upper()}=<port>") from None


def running() -> set[str]:
    done = compose("ps", "--services", "--status", "running", check=False, capture=True)
    return set(done.stdout.split()) if done.returncode == 0 else set()


def healthy() -> bool:
    return all(c.ok for c in health.all_checks(len(DATANODES), len(NODEMANAGERS)))


def up() -> dict[str, float]:
    """Images, configuration, `compose up --wait`, the shared HDFS dirs and Spark's jar
    archive; a second call with everything healthy does nothing. Returns timings."""
    start = time.monotonic()
    if not available():
        raise ClusterError("no Docker engine with the compose plugin answers (`docker info`, "
                           "`docker compose version`): start one with docker/engine.sh (as "
                           "root), or use XRAY_CLUSTER=native make cluster-up")
    timings = {}
    if running() >= {"namenode", *DATANODES, "resourcemanager", *NODEMANAGERS, "history"} \
            and healthy():
        choose_subnet()
        render()
        log.info("Docker cluster %s already running and healthy: nothing to do",
                 config.COMPOSE_PROJECT)
        return timings
    if not running():
        check_ports()
        if _explicit_subnet():
            choose_subnet()  # a taken one stops here, before any image is built
    images = ensure_images()
    timings["images_s"] = time.monotonic() - start
    _compose_up(images)
    deadline = time.monotonic() + config.CLUSTER_START_TIMEOUT_S
    while not healthy():
        if time.monotonic() > deadline:
            bad = [f"{c.name}: {c.detail}" for c in
                   health.all_checks(len(DATANODES), len(NODEMANAGERS)) if not c.ok]
            raise ClusterError(f"containers started but not healthy after "
                               f"{config.CLUSTER_START_TIMEOUT_S:.0f} s ({'; '.join(bad)}): "
                               f"docker compose -p {config.COMPOSE_PROJECT} logs")
        time.sleep(1)
    timings["healthy_s"] = time.monotonic() - start
    client = hdfs_setup.client()
    hdfs_setup.prepare_dirs(client)
    hdfs_setup.ensure_spark_archive(client)
    timings["total_s"] = time.monotonic() - start
    log.info("Docker cluster %s healthy in %.1f s (images %.1f s): web UIs on %s",
             config.COMPOSE_PROJECT, timings["total_s"], timings["images_s"],
             health.url("namenode_http"))
    return timings


def _compose_up(images: tuple[str, str], tries: int = 3) -> None:
    """`compose up --wait` on a subnet chosen just before; chosen again when another network
    took it in between (another `up` on this engine chose the same free one)."""
    for attempt in range(1, tries + 1):
        chosen = choose_subnet()
        render()
        try:
            compose("up", "-d", "--wait", "--wait-timeout", str(int(COMPOSE_WAIT_S)),
                    env=compose_env(images))
            return
        except ClusterError:
            rivals = [] if _own_network() else [
                name for name, net in networks() if net.overlaps(chosen)]
            if not rivals or attempt == tries:
                raise
            log.warning("docker network %s took subnet %s as the cluster started: choosing "
                        "another", rivals[0], chosen)


def down(keep_data: bool = False) -> None:
    """Stop and remove the containers and the network; the volumes too unless keep_data."""
    compose("down", "--remove-orphans", "--timeout", "30", *(() if keep_data else ("--volumes",)))
    log.info("Docker cluster %s removed%s", config.COMPOSE_PROJECT,
             " (data volumes kept)" if keep_data else ", volumes included")


def leftovers(project: str = config.COMPOSE_PROJECT) -> list[str]:
    """Containers, networks and volumes of the project that still exist (none after down)."""
    label = f"label={PROJECT_LABEL}={project}"
    found = []
    for kind, cmd in (("container", ["docker", "ps", "-aq", "--filter", label]),
                      ("network", ["docker", "network", "ls", "-q", "--filter", label]),
                      ("volume", ["docker", "volume", "ls", "-q", "--filter", label])):
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.split()
        found += [f"{kind} {name}" for name in out]
    return found
