"""Start and stop the native cluster: Hadoop's daemons and pyspark's History Server as local
Java processes on loopback, each with a pid file and a log under the state dir.

Why by hand and not Hadoop's shell scripts: the Maven jars come without bin/ and sbin/. What the
scripts would add is small (classpath, log properties, a pid file) and is done here.

Layout under config.STATE_DIR:
    conf/hadoop, conf/spark   the effective configuration (pipeline.cluster.conf)
    hdfs/name, hdfs/data      HDFS metadata and blocks
    yarn/local, yarn/logs     NodeManager work dirs and container logs
    logs/<daemon>.log|.out    daemon logs (log4j) and stdout/stderr (JVM errors)
    tmp/                      the daemons' temporary files (Jetty's unpacked web UIs)
    run/<daemon>.pid          pids of the daemons this tool started (run/cluster.lock: one
                              up or down at a time; run/security: plain or Kerberos)
    krb5/                     a secure cluster's krb5.conf, keytabs and ticket (kdc.py)

A secure cluster (`up(secure=True)`, `make cluster-up SECURE=1`) runs the KDC first and every
other daemon with Kerberos; the mode is recorded at `up`, and `down`, `status` and the rendered
configuration follow it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import config
from pipeline.cluster import conf, health, hdfs_setup, jars, kdc
from pipeline.cluster.errors import ClusterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Daemon:
    name: str
    main_class: str
    #: Keys of config.CLUSTER_PORTS it listens on.
    ports: tuple[str, ...]


NAMENODE = Daemon("namenode", "org.apache.hadoop.hdfs.server.namenode.NameNode",
                  ("namenode_rpc", "namenode_http"))
DATANODE = Daemon("datanode", "org.apache.hadoop.hdfs.server.datanode.DataNode",
                  ("datanode", "datanode_http", "datanode_ipc"))
RESOURCEMANAGER = Daemon(
    "resourcemanager", "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager",
    ("resourcemanager", "resourcemanager_scheduler", "resourcemanager_tracker",
     "resourcemanager_admin", "resourcemanager_http"))
NODEMANAGER = Daemon("nodemanager", "org.apache.hadoop.yarn.server.nodemanager.NodeManager",
                     ("nodemanager", "nodemanager_localizer", "nodemanager_http"))
HISTORY = Daemon("history", "org.apache.spark.deploy.history.HistoryServer", ("history_http",))
KDC = Daemon("kdc", kdc.MAIN_CLASS, ("kdc",))
HADOOP_DAEMONS = (NAMENODE, DATANODE, RESOURCEMANAGER, NODEMANAGER)
#: Start order; stop goes the other way.
DAEMONS = HADOOP_DAEMONS + (HISTORY,)


def daemons(secure: bool | None = None) -> tuple[Daemon, ...]:
    """The daemons of a plain or secure cluster (default: the mode recorded at `up`)."""
    return (KDC, *DAEMONS) if (kdc.is_secure() if secure is None else secure) else DAEMONS


def run_dir() -> Path:
    return config.STATE_DIR / "run"


def log_dir() -> Path:
    return config.STATE_DIR / "logs"


def tmp_dir() -> Path:
    """The daemons' java.io.tmpdir and hadoop.tmp.dir, instead of /tmp."""
    return config.STATE_DIR / "tmp"


def name_dir() -> Path:
    return config.STATE_DIR / "hdfs" / "name"


def data_dir() -> Path:
    return config.STATE_DIR / "hdfs" / "data"


def _pid_file(daemon: Daemon) -> Path:
    return run_dir() / f"{daemon.name}.pid"


# --- processes ------------------------------------------------------------------------------

def _is_daemon(pid: int, daemon: Daemon) -> bool:
    """pid is alive (not a zombie) and runs this daemon's main class (pids get reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and daemon.main_class in cmdline


def running_pid(daemon: Daemon) -> int | None:
    """The daemon's pid from its pid file, or None; a stale pid file is removed."""
    pid_file = _pid_file(daemon)
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if _is_daemon(pid, daemon):
        return pid
    log.warning("%s: pid file %s names pid %d, which is not running it: removing the stale "
                "file", daemon.name, pid_file, pid)
    pid_file.unlink(missing_ok=True)
    return None


def _java() -> Path:
    return config.JAVA_HOME / "bin" / "java"


def _java_origin() -> str:
    """Where config.JAVA_HOME came from, as the fix needs it: "JAVA_HOME=/x" or "/x (how)"."""
    if config.JAVA_HOME_FROM in ("XRAY_JAVA_HOME", "JAVA_HOME"):
        return f"{config.JAVA_HOME_FROM}={config.JAVA_HOME}"
    how = {"the default": "the default: neither XRAY_JAVA_HOME nor JAVA_HOME is set and no "
                          "Java 17 was found"}.get(config.JAVA_HOME_FROM, config.JAVA_HOME_FROM)
    return f"{config.JAVA_HOME} ({how})"


def check_java() -> str:
    """The Java version at config.JAVA_HOME; a ClusterError unless it is Java 17. The message
    names where that home came from (XRAY_JAVA_HOME, JAVA_HOME, found, default)."""
    java = _java()
    origin = _java_origin()
    over = " (it wins over JAVA_HOME)" if config.JAVA_HOME_FROM == "JAVA_HOME" else ""
    hint = (f"set XRAY_JAVA_HOME to a Java {config.JAVA_MAJOR} home{over} (Debian: apt-get "
            f"install openjdk-{config.JAVA_MAJOR}-jdk-headless)")
    if not os.access(java, os.X_OK):
        raise ClusterError(f"no Java at {java} ({origin}): Hadoop {config.HADOOP_VERSION} "
                           f"needs Java {config.JAVA_MAJOR}; {hint}")
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = found and (int(found[2]) if found[1] == "1" else int(found[1]))
    if major != config.JAVA_MAJOR:
        raise ClusterError(f"{origin} is Java {major}; Hadoop {config.HADOOP_VERSION}'s daemons "
                           f"need Java {config.JAVA_MAJOR}: {hint}")
    return out.splitlines()[0]


def check_ports(daemons: Iterable[Daemon]) -> None:
    """Each port the daemons will listen on is free on the bind address."""
    for daemon in daemons:
        for port_name in daemon.ports:
            port = config.CLUSTER_PORTS[port_name]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Java does
                try:
                    probe.bind((config.CLUSTER_BIND_HOST, port))
                except OSError:
                    raise ClusterError(
                        f"port {port} ({port_name}, needed by the {daemon.name}) on "
                        f"{config.CLUSTER_BIND_HOST} is already in use: stop whatever holds "
                        f"it (ss -ltnp 'sport = :{port}') or choose another port with "
                        f"XRAY_PORT_{port_name.upper()}=<port>") from None


def _command(daemon: Daemon) -> list[str]:
    if daemon is HISTORY:  # pyspark's launcher builds Spark's classpath and JVM options
        return [str(conf.spark_home() / "bin" / "spark-class"), daemon.main_class]
    logs, home = log_dir(), jars.hadoop_home()
    if daemon is KDC:
        return [str(_java()), "-Xmx256m", *config.DAEMON_JVM_OPTS, f"-Dproc_{daemon.name}",
                "-Djava.net.preferIPv4Stack=true", f"-Djava.io.tmpdir={tmp_dir()}",
                "-cp", jars.classpath(conf.hadoop_conf_dir()), daemon.main_class,
                *kdc.arguments()]
    krb5 = kdc.java_opts() if kdc.is_secure() else []
    return [str(_java()), f"-Xmx{config.DAEMON_HEAP_MB[daemon.name]}m", *config.DAEMON_JVM_OPTS,
            *krb5,
            f"-Dproc_{daemon.name}", "-Djava.net.preferIPv4Stack=true",
            f"-Djava.io.tmpdir={tmp_dir()}",  # Jetty unpacks the web UIs there
            f"-Dhadoop.log.dir={logs}", f"-Dhadoop.log.file={daemon.name}.log",
            f"-Dyarn.log.dir={logs}", f"-Dyarn.log.file={daemon.name}.log",
            f"-Dhadoop.home.dir={home}", f"-Dyarn.home.dir={home}",
            f"-Dhadoop.id.str={os.environ.get('USER', 'hadoop')}",
            "-Dhadoop.root.logger=INFO,RFA",
            "-cp", jars.classpath(conf.hadoop_conf_dir()), daemon.main_class]


def _environment(daemon: Daemon) -> dict[str, str]:
    env = dict(os.environ)
    env.update(conf.spark_env())
    # Containers inherit JAVA_HOME from the NodeManager (yarn.nodemanager.env-whitelist).
    env["JAVA_HOME"] = str(config.JAVA_HOME)
    if daemon is HISTORY:
        env["SPARK_DAEMON_MEMORY"] = f"{config.DAEMON_HEAP_MB['history']}m"
        env["SPARK_DAEMON_JAVA_OPTS"] = " ".join(
            [*config.DAEMON_JVM_OPTS, f"-Djava.io.tmpdir={tmp_dir()}",
             *(kdc.java_opts() if kdc.is_secure() else [])])
    return env


#: Written into <daemon>.out before each start: what came after it is this start's console.
_START_MARKER = "starting %s"


def _start(daemon: Daemon) -> int:
    out = log_dir() / f"{daemon.name}.out"
    with out.open("ab") as sink:
        sink.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {_START_MARKER % daemon.name}\n"
                   .encode())
        sink.flush()
        process = subprocess.Popen(_command(daemon), stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT, env=_environment(daemon),
                                   cwd=config.STATE_DIR, start_new_session=True)
    tmp = _pid_file(daemon).with_suffix(".tmp")
    tmp.write_text(f"{process.pid}\n")
    os.replace(tmp, _pid_file(daemon))
    log.info("started %s: pid %d, log %s", daemon.name, process.pid,
             log_dir() / f"{daemon.name}.log" if daemon is not HISTORY else out)
    return process.pid


def _log_tail(daemon: Daemon, lines: int = 5) -> str:
    for path in (log_dir() / f"{daemon.name}.log", log_dir() / f"{daemon.name}.out"):
        if path.exists():
            text = [line for line in path.read_text(errors="replace").splitlines()
                    if " ERROR " in line or "Exception" in line or " FATAL " in line]
            if text:
                return " | ".join(text[-lines:])
    return "no error in its log"


def _wait(what: str, ready: Callable[[], bool], watch: Iterable[Daemon], timeout: float) -> float:
    """Poll ready() until true; fail early when a watched daemon exits. Returns seconds."""
    start = time.monotonic()
    watch = list(watch)
    while not ready():
        for daemon in watch:
            if running_pid(daemon) is None:
                raise ClusterError(f"the {daemon.name} exited while starting: "
                                   f"{_log_tail(daemon)} (logs: {log_dir()})")
        if time.monotonic() - start > timeout:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what} "
                               f"(logs: {log_dir()}; `python -m pipeline.cluster status`)")
        time.sleep(0.5)
    return time.monotonic() - start


# --- HDFS metadata --------------------------------------------------------------------------

def format_namenode_if_needed() -> bool:
    """Format HDFS once. Into a staging dir renamed at the end: an interrupted format leaves
    no half-formatted metadata under the final name."""
    if (name_dir() / "current" / "VERSION").exists():
        return False
    if name_dir().exists():
        raise ClusterError(f"{name_dir()} exists but holds no HDFS metadata (current/VERSION): "
                           "restore it from a backup, or remove it to start an empty HDFS")
    if (data_dir() / "current").exists():
        raise ClusterError(f"HDFS metadata is missing but {data_dir()} holds blocks from an "
                           "earlier format, which a new NameNode would refuse: restore "
                           f"{name_dir()}, or remove {data_dir()} to start an empty HDFS")
    staging = name_dir().with_name("name.formatting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    done = subprocess.run(
        _command(NAMENODE) + [f"-Ddfs.namenode.name.dir=file://{staging}", "-format",
                              "-nonInteractive"],
        capture_output=True, text=True, env=_environment(NAMENODE), cwd=config.STATE_DIR)
    if done.returncode != 0 or not (staging / "current" / "VERSION").exists():
        raise ClusterError(f"formatting HDFS failed (exit {done.returncode}): "
                           f"{_log_tail(NAMENODE)}")
    staging.rename(name_dir())
    log.info("formatted HDFS at %s in %.1f s", name_dir(), time.monotonic() - start)
    return True


# --- up / down ------------------------------------------------------------------------------

@dataclass
class UpResult:
    started: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    jars_downloaded: bool = False
    formatted: bool = False
    archive_uploaded: bool = False


def _healthy() -> bool:
    return all(check.ok for check in health.all_checks())


def _check_mode(secure: bool) -> None:
    """Record the mode `up` asks for; refuse to switch a cluster that runs in the other."""
    if kdc.is_secure() == secure:
        kdc.record(secure)
        return
    running = [d.name for d in (KDC, *DAEMONS) if running_pid(d) is not None]
    if running:
        raise ClusterError(
            f"the cluster at {config.STATE_DIR} runs {kdc.mode_name(not secure)} "
            f"({', '.join(running)}): `make cluster-down` first to bring it up "
            f"{kdc.mode_name(secure)}, or `make cluster-up{'' if secure else ' SECURE=1'}`")
    log.info("cluster at %s switches to %s", config.STATE_DIR, kdc.mode_name(secure))
    kdc.record(secure)


def _start_kdc(to_start: list[Daemon]) -> list[Daemon]:
    """Start the KDC when it is not running; its keys are new, so every daemon still running
    with the old keytab is stopped and started again. Returns what is left to start."""
    if KDC not in to_start:
        return to_start
    kdc.prepare_start()
    _start(KDC)
    seconds = _wait("the KDC", lambda: kdc.ready(log_dir() / "kdc.out", _START_MARKER % KDC.name),
                    (KDC,), config.CLUSTER_START_TIMEOUT_S)
    kdc.finish_start()
    kdc.use_cluster_ticket()
    log.info("KDC ready in %.1f s", seconds)
    stale = [d for d in DAEMONS if d not in to_start and running_pid(d) is not None]
    for daemon in reversed(stale):
        log.warning("%s runs with keys of the previous KDC: restarting it", daemon.name)
        stop(daemon)
    return [d for d in DAEMONS if d in to_start or d in stale]


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One up or down at a time per state dir: two test sessions (or a test and a person)
    calling up together would otherwise both start daemons and collide on the ports."""
    run_dir().mkdir(parents=True, exist_ok=True)
    with (run_dir() / "cluster.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(secure: bool = False) -> UpResult:
    """Bring every daemon up and healthy; start only what is not running (idempotent).
    secure: with a KDC and Kerberos (recorded; a running cluster of the other mode is an
    error)."""
    with _exclusive():
        _check_mode(secure)
        return _up(secure)


def _up(secure: bool) -> UpResult:
    start = time.monotonic()
    result = UpResult()
    to_start = [d for d in daemons(secure) if running_pid(d) is None]
    if secure and KDC not in to_start:
        kdc.use_cluster_ticket()  # the health checks ask SPNEGO-protected endpoints
    if not to_start and _healthy():
        # Clients (spark-submit) read the rendered files on every run: keep them current.
        changed = conf.render()
        log.info("cluster already running and healthy (state dir %s): nothing to do%s",
                 config.STATE_DIR, f" but refresh {len(changed)} config file(s)" if changed else "")
        return result
    java = check_java()
    if secure:
        kdc.check_tools()
    check_ports(to_start)
    for sub in (run_dir(), log_dir(), tmp_dir()):
        sub.mkdir(parents=True, exist_ok=True)
    log.info("starting %s with %s (state dir %s)", ", ".join(d.name for d in to_start) or
             "nothing (waiting for health)", java, config.STATE_DIR)

    result.jars_downloaded = not jars.is_current()
    jars_start = time.monotonic()
    jars.ensure_jars()
    result.timings["jars_s"] = time.monotonic() - jars_start
    if secure:
        result.started += [KDC.name] if KDC in to_start else []
        to_start = _start_kdc(to_start)
    changed = conf.render()
    running = [d.name for d in DAEMONS if d not in to_start]
    if changed and running:
        log.warning("configuration changed (%s) while %s run with the old one: "
                    "`make cluster-down cluster-up` to apply it",
                    ", ".join(p.name for p in changed), ", ".join(running))
    result.formatted = format_namenode_if_needed()

    for daemon in HADOOP_DAEMONS:
        if daemon in to_start:
            _start(daemon)
            result.started.append(daemon.name)
    daemons_start = time.monotonic()
    hdfs_s = _wait("HDFS (NameNode out of safe mode, a live DataNode)", health.hdfs_ready,
                   (NAMENODE, DATANODE), config.CLUSTER_START_TIMEOUT_S)
    log.info("HDFS ready in %.1f s at hdfs://%s:%d", hdfs_s, config.CLUSTER_HOST,
             config.CLUSTER_PORTS["namenode_rpc"])
    client = hdfs_setup.client()
    hdfs_setup.prepare_dirs(client)
    if HISTORY in to_start:  # it needs the event log directory to exist
        _start(HISTORY)
        result.started.append(HISTORY.name)
    archive_start = time.monotonic()
    result.archive_uploaded = hdfs_setup.ensure_spark_archive(client)
    result.timings["spark_archive_s"] = time.monotonic() - archive_start
    _wait("YARN and the History Server", _healthy, daemons(secure),
          config.CLUSTER_START_TIMEOUT_S)
    result.timings["daemons_s"] = time.monotonic() - daemons_start
    result.timings["total_s"] = time.monotonic() - start
    result.timings["total_without_jar_fetch_s"] = (
        result.timings["total_s"] - result.timings["jars_s"])
    (run_dir() / "last-up.json").write_text(json.dumps(result.__dict__, indent=1) + "\n")
    log.info("cluster up in %.1f s (jar fetch %.1f s%s, daemons healthy %.1f s, Spark archive "
             "%.1f s%s); started: %s", result.timings["total_s"], result.timings["jars_s"],
             ", downloaded" if result.jars_downloaded else ", cached",
             result.timings["daemons_s"], result.timings["spark_archive_s"],
             ", uploaded" if result.archive_uploaded else ", already on HDFS",
             ", ".join(result.started) or "nothing")
    return result


def _gone(pid: int, daemon: Daemon) -> bool:
    try:  # reap it if it is our child (a test that started it in-process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    if _is_daemon(pid, daemon):
        return False
    # An exiting process drops its memory, and so its cmdline, before it closes its sockets
    # (the ports) and becomes a zombie: gone means no process, a zombie, or another program.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X") or bool(cmdline)


def _signal_and_wait(pid: int, daemon: Daemon, sig: signal.Signals, timeout: float) -> bool:
    """Send sig to the daemon's process group; True once the daemon is gone, within timeout."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass  # the group is gone already
    deadline = time.monotonic() + timeout
    while not _gone(pid, daemon):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop(daemon: Daemon, timeout: float = 30.0, kill_timeout: float = 10.0) -> bool:
    """SIGTERM the daemon's process group; SIGKILL it when it is still there after timeout,
    and wait up to kill_timeout for that. False if it was not running. A daemon that outlives
    SIGKILL too (stuck in the kernel: D state) keeps its pid file and is logged as an error."""
    pid = running_pid(daemon)
    if pid is None:
        return False
    start = time.monotonic()
    if _signal_and_wait(pid, daemon, signal.SIGTERM, timeout):
        log.info("stopped %s (pid %d) in %.1f s", daemon.name, pid, time.monotonic() - start)
    else:
        log.warning("%s (pid %d) ignored SIGTERM for %.0f s: SIGKILL", daemon.name, pid, timeout)
        killed = time.monotonic()
        if not _signal_and_wait(pid, daemon, signal.SIGKILL, kill_timeout):
            log.error("%s (pid %d) is still running %.0f s after SIGKILL (stuck in the kernel? "
                      "see `ps -o pid,stat,wchan -p %d`); keeping its pid file %s", daemon.name,
                      pid, kill_timeout, pid, _pid_file(daemon))
            return True
        log.warning("killed %s (pid %d) with SIGKILL: gone %.1f s after it, %.1f s after "
                    "SIGTERM", daemon.name, pid, time.monotonic() - killed,
                    time.monotonic() - start)
    _pid_file(daemon).unlink(missing_ok=True)
    return True


def down(names: Iterable[str] | None = None) -> list[str]:
    """Stop the daemons this tool started (all, or those named), newest first."""
    wanted = set(names) if names is not None else {d.name for d in (KDC, *DAEMONS)}
    with _exclusive():
        stopped = [d.name for d in reversed(daemons()) if d.name in wanted and stop(d)]
    if not stopped:
        log.info("no daemon of this cluster is running (pid files in %s)", run_dir())
    return stopped


def pids() -> dict[str, int | None]:
    return {d.name: running_pid(d) for d in daemons()}
