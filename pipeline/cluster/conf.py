"""The native cluster's effective configuration, written from the repo's shared files.

hadoop-conf/ and spark-conf/ are shared with the Docker variant; what differs per machine
(state dir, ports, sizes) lives in pipeline/config.py. This module writes a copy of both
directories under ``<state>/conf`` with those values filled in, and that copy is what every
native daemon and every ``spark-submit`` reads. Files are replaced one by one atomically and
only when their content changes, so rendering twice is a no-op.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline import config
from pipeline.cluster.errors import ClusterError

HADOOP_CONF_SRC = config.REPO_ROOT / "hadoop-conf"
SPARK_CONF_SRC = config.REPO_ROOT / "spark-conf"


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


def xray_properties() -> dict[str, str]:
    """Values for the xray.* properties of hadoop-conf/core-site.xml on this machine."""
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
                  if not name.startswith("history")})
    return props


def _render_site_xml(src: Path, values: dict[str, str]) -> tuple[str, set[str]]:
    """src with each xray.* property's value replaced, and the xray.* names it defines."""
    tree = ET.parse(src, ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    seen = set()
    for prop in tree.getroot().iter("property"):
        name = prop.findtext("name", "").strip()
        if name.startswith("xray."):
            if name not in values:
                raise ClusterError(f"{src} defines {name}, which xray_properties() lacks")
            prop.find("value").text = values[name]
            seen.add(name)
    return ET.tostring(tree.getroot(), encoding="unicode"), seen


def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)
    return True


def spark_env() -> dict[str, str]:
    """Environment a Spark driver (spark-submit, pyspark) needs for this cluster."""
    return {
        "HADOOP_CONF_DIR": str(hadoop_conf_dir()),
        "YARN_CONF_DIR": str(hadoop_conf_dir()),
        "SPARK_CONF_DIR": str(spark_conf_dir()),
        "JAVA_HOME": str(config.JAVA_HOME),
        "SPARK_LOCAL_IP": config.CLUSTER_BIND_HOST,
    }


def _spark_defaults() -> str:
    return spark_defaults_text(
        {"spark.history.ui.port": str(config.CLUSTER_PORTS["history_http"]),
         "spark.driver.bindAddress": config.CLUSTER_BIND_HOST,
         "spark.driver.host": config.CLUSTER_HOST,
         "spark.yarn.appMasterEnv.SPARK_LOCAL_IP": config.CLUSTER_BIND_HOST,
         "spark.executorEnv.SPARK_LOCAL_IP": config.CLUSTER_BIND_HOST})


def spark_defaults_text(host: dict[str, str]) -> str:
    """spark-conf/spark-defaults.conf with one deployment's settings appended."""
    base = (SPARK_CONF_SRC / "spark-defaults.conf").read_text()
    width = max(map(len, host)) + 1
    lines = [f"{key:<{width}}{value}" for key, value in host.items()]
    return (base.rstrip("\n") + "\n\n# --- this machine: written by pipeline.cluster from "
            "pipeline/config.py ---\n" + "\n".join(lines) + "\n")


def _spark_env_sh() -> str:
    """spark-env.sh: Spark's launcher sources it, so SPARK_CONF_DIR alone is enough."""
    lines = ["# Written by pipeline.cluster from pipeline/config.py; sourced by Spark's launcher."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in spark_env().items()
              if key != "SPARK_CONF_DIR"]
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
    values = xray_properties()
    hadoop_dir, spark_dir = hadoop_conf_dir(), spark_conf_dir()
    hadoop_dir.mkdir(parents=True, exist_ok=True)
    spark_dir.mkdir(parents=True, exist_ok=True)
    changed, seen = [], set()
    for src in sorted(HADOOP_CONF_SRC.iterdir()):
        if src.suffix == ".xml":
            text, names = _render_site_xml(src, values)
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
              for src in sorted(SPARK_CONF_SRC.iterdir()) if src.name != "spark-defaults.conf"]
    for name, text, mode in (("spark-defaults.conf", _spark_defaults(), 0o644),
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
    for src in sorted(HADOOP_CONF_SRC.iterdir()):
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
