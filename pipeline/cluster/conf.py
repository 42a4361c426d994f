"""The native cluster's effective configuration, written from the repo's shared files.

hadoop-conf/ and spark-conf/ are shared with the Docker variant; what differs per machine
(state dir, ports, sizes) lives in pipeline/config.py. This module writes a copy of both
directories under ``<state>/conf`` with those values filled in, and that copy is what every
native daemon and every ``spark-submit`` reads. Files are replaced one by one atomically and
only when their content changes, so rendering twice is a no-op.

A secure cluster (kdc.is_secure(): `up --secure` recorded it) gets more: each
hadoop-conf/secure/<name>.xml is merged into <name>.xml (its properties replace or join the
plain ones) and spark-conf/secure/spark-defaults.conf is appended, with the realm, keytab and
user filled in. A plain cluster's files are exactly what they were without that directory.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline import config
from pipeline.cluster import kdc
from pipeline.cluster.errors import ClusterError

HADOOP_CONF_SRC = config.REPO_ROOT / "hadoop-conf"
SPARK_CONF_SRC = config.REPO_ROOT / "spark-conf"
#: Overlays for a secure (Kerberos) cluster, by the same file names.
SECURE_DIR = "secure"
#: Ports of daemons that are not Hadoop's: no xray.port.* property names them.
_NOT_HADOOP_PORTS = ("history_http", "kdc")


def hadoop_conf_dir() -> Path:
    return config.STATE_DIR / "conf" / "hadoop"


def spark_conf_dir() -> Path:
    return config.STATE_DIR / "conf" / "spark"


def spark_home() -> Path:
    """pyspark's install dir, which is a Spark home (bin/, jars/), found without importing it."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ClusterError("pyspark is not installed in this Python: run `make venv`")
    return Path(spec.origin).parent


def xray_properties(secure: bool = False) -> dict[str, str]:
    """Values for the xray.* properties of hadoop-conf/core-site.xml on this machine (and of
    hadoop-conf/secure/core-site.xml when secure)."""
    props = {
        "xray.state.dir": str(config.STATE_DIR),
        "xray.namenode.host": config.CLUSTER_HOST,
        "xray.resourcemanager.host": config.CLUSTER_HOST,
        "xray.node.host": config.CLUSTER_HOST,
        "xray.bind.host": config.CLUSTER_BIND_HOST,
        "xray.dfs.replication": "1",
        "xray.nodemanager.memory.mb": str(config.NODEMANAGER_MEMORY_MB),
        "xray.nodemanager.vcores": str(config.NODEMANAGER_VCORES),
    }
    props.update({f"xray.port.{name}": str(port) for name, port in config.CLUSTER_PORTS.items()
                  if name not in _NOT_HADOOP_PORTS})
    if secure:
        props.update({"xray.krb5.realm": config.KERBEROS_REALM,
                      "xray.keytab.service": str(kdc.service_keytab()),
                      # Service principals map to the OS user who runs the daemons, so that
                      # user stays HDFS's superuser as in a plain cluster.
                      "xray.os.user": kdc.user()})
    return props


def _parse(src: Path) -> ET.Element:
    return ET.parse(src, ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))).getroot()


def _name(prop: ET.Element) -> str:
    return prop.findtext("name", "").strip()


def _merge(root: ET.Element, overlay: Path) -> None:
    """The overlay's properties into root: a property of the same name is replaced (removed
    where it was, the overlay's appended with its comments), new ones are appended."""
    replaced = {_name(prop) for prop in _parse(overlay).iter("property")}
    for prop in [p for p in root.findall("property") if _name(p) in replaced]:
        root.remove(prop)
    root.append(ET.Comment(f" Secure mode: from hadoop-conf/{SECURE_DIR}/{overlay.name} "))
    root.extend(_parse(overlay))


def _render_site_xml(src: Path, values: dict[str, str],
                     secure: bool = False) -> tuple[str, set[str]]:
    """src (merged with its secure overlay when secure) with each xray.* property's value
    replaced, and the xray.* names it defines."""
    root = _parse(src)
    overlay = src.parent / SECURE_DIR / src.name
    if secure and overlay.exists():
        _merge(root, overlay)
    seen = set()
    for prop in root.iter("property"):
        name = _name(prop)
        if name.startswith("xray."):
            if name not in values:
                raise ClusterError(f"{src} defines {name}, which xray_properties() lacks")
            prop.find("value").text = values[name]
            seen.add(name)
    return ET.tostring(root, encoding="unicode"), seen


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)
    return True


def spark_env() -> dict[str, str]:
    """Environment a Spark driver (spark-submit, pyspark) needs for this cluster; for a secure
    one also the realm (KRB5_CONFIG) and the ticket cache that `up` fills (KRB5CCNAME)."""
    env = {
        "HADOOP_CONF_DIR": str(hadoop_conf_dir()),
        "YARN_CONF_DIR": str(hadoop_conf_dir()),
        "SPARK_CONF_DIR": str(spark_conf_dir()),
        "JAVA_HOME": str(config.JAVA_HOME),
        "SPARK_LOCAL_IP": config.CLUSTER_BIND_HOST,
    }
    if kdc.is_secure():
        env.update(kdc.client_env())
    return env


def _spark_defaults(secure: bool = False) -> str:
    host = {"spark.history.ui.port": str(config.CLUSTER_PORTS["history_http"]),
            "spark.driver.bindAddress": config.CLUSTER_BIND_HOST,
            "spark.driver.host": config.CLUSTER_HOST,
            "spark.yarn.appMasterEnv.SPARK_LOCAL_IP": config.CLUSTER_BIND_HOST,
            "spark.executorEnv.SPARK_LOCAL_IP": config.CLUSTER_BIND_HOST,
            # The executors run on this machine, with this venv: nothing to ship
            # (pipeline.cluster.pyenv says what it would cost)
            "spark.xray.pyenv.enabled": "false"}
    if not secure:
        return spark_defaults_text(host)
    krb5 = " ".join(kdc.java_opts())
    host.update({"spark.history.kerberos.principal": kdc.principal("spark"),
                 "spark.history.kerberos.keytab": str(kdc.service_keytab()),
                 "spark.yarn.am.extraJavaOptions": krb5,
                 "spark.executor.extraJavaOptions": krb5})
    return spark_defaults_text(host, extra=(SPARK_CONF_SRC / SECURE_DIR /
                                            "spark-defaults.conf").read_text())


def spark_defaults_text(host: dict[str, str], extra: str = "") -> str:
    """spark-conf/spark-defaults.conf (plus `extra` settings) with one deployment's settings
    appended."""
    base = (SPARK_CONF_SRC / "spark-defaults.conf").read_text()
    if extra:
        base += "\n" + extra
    width = max(map(len, host)) + 1
    lines = [f"{key:<{width}}{value}" for key, value in host.items()]
    return (base.rstrip("\n") + "\n\n# --- this machine: written by pipeline.cluster from "
            "pipeline/config.py ---\n" + "\n".join(lines) + "\n")


def _spark_env_sh() -> str:
    """spark-env.sh: Spark's launcher sources it, so SPARK_CONF_DIR alone is enough. On a
    secure cluster a caller's own KRB5CCNAME (their kinit) wins over the cluster's cache."""
    lines = ["# Written by pipeline.cluster from pipeline/config.py; sourced by Spark's launcher."]
    krb5 = kdc.client_env()
    lines += [f"export {key}={shlex.quote(value)}" if key not in krb5 else
              f'export {key}="${{{key}:-{value}}}"'
              for key, value in spark_env().items() if key != "SPARK_CONF_DIR"]
    if kdc.is_secure():  # the JVM finds the realm only through this property
        lines.append(f'export SPARK_SUBMIT_OPTS="${{SPARK_SUBMIT_OPTS:-}} '
                     f'{" ".join(kdc.java_opts())}"')
    # Executors run the driver's Python by path; the caller's python3 (a venv's, when one is
    # active) unless PYSPARK_PYTHON names one. Not the Python that rendered this file: that
    # may be another checkout's venv, whose `pipeline` package is another version.
    lines.append('export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$(command -v python3)}"')
    return "\n".join(lines) + "\n"


def read_spark_defaults(path: Path | None = None) -> dict[str, str]:
    """key -> value of a spark-defaults.conf (the HDFS paths pipeline.cluster creates)."""
    values = {}
    for line in (path or SPARK_CONF_SRC / "spark-defaults.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            values[key] = value.strip()
    return values


def render() -> list[Path]:
    """Write <state>/conf/{hadoop,spark}; returns the files that changed."""
    secure = kdc.is_secure()
    values = xray_properties(secure)
    hadoop_dir, spark_dir = hadoop_conf_dir(), spark_conf_dir()
    hadoop_dir.mkdir(parents=True, exist_ok=True)
    spark_dir.mkdir(parents=True, exist_ok=True)
    changed, seen = [], set()
    for src in sorted(p for p in HADOOP_CONF_SRC.iterdir() if p.is_file()):
        if src.suffix == ".xml":
            text, names = _render_site_xml(src, values, secure)
            text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- Written by pipeline.cluster '
                    f'from hadoop-conf/{src.name} and pipeline/config.py. -->\n{text}\n')
            seen |= names
        else:
            text = src.read_text()
        if _write_if_changed(hadoop_dir / src.name, text):
            changed.append(hadoop_dir / src.name)
    if seen != set(values):
        raise ClusterError(f"hadoop-conf/ lacks the properties {sorted(set(values) - seen)}")
    copied = [(src.name, src.read_text(), src.stat().st_mode & 0o777)
              for src in sorted(SPARK_CONF_SRC.iterdir())
              if src.is_file() and src.name != "spark-defaults.conf"]
    for name, text, mode in (("spark-defaults.conf", _spark_defaults(secure), 0o644),
                             ("spark-env.sh", _spark_env_sh(), 0o755), *copied):
        if _write_if_changed(spark_dir / name, text, mode):
            changed.append(spark_dir / name)
    return changed


def render_hadoop_dir(dest: Path, values: dict[str, str],
                      extra: dict[str, dict[str, str]] | None = None) -> list[Path]:
    """hadoop-conf/ written to dest with these xray.* values, and ``extra`` (file name ->
    {property: value}) added to its site files: the Docker cluster renders one such directory
    per container. Returns the files that changed."""
    dest.mkdir(parents=True, exist_ok=True)
    changed = []
    for src in sorted(p for p in HADOOP_CONF_SRC.iterdir() if p.is_file()):
        if src.suffix == ".xml":
            text, _ = _render_site_xml(src, values)
            added = "".join(f"<property><name>{name}</name><value>{value}</value></property>\n"
                            for name, value in (extra or {}).get(src.name, {}).items())
            text = ('<?xml version="1.0" encoding="UTF-8"?>\n<!-- Written by pipeline.cluster '
                    f'from hadoop-conf/{src.name}. -->\n'
                    + text.replace("</configuration>", added + "</configuration>"))
        else:
            text = src.read_text()
        if _write_if_changed(dest / src.name, text):
            changed.append(dest / src.name)
    return changed
