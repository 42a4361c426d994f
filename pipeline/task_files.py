"""Writing a file from a Python task, which has no JVM and so no Hadoop FileSystem, to a URI.

``file:`` URIs are written directly (right in local mode or on a shared file system);
``hdfs://`` ones through WebHDFS with the ``hdfs`` package, at the NameNode's HTTP address
from the driver's Hadoop configuration. The driver resolves the target once and checks its
scheme before any work starts; the task only copies. This keeps a large model (InceptionV3
is 89 MB) out of Spark's task results, which a driver with a 1 GB heap cannot take.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from pipeline import config
from pipeline.storage import HadoopFS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileTarget:
    """A folder a task can write into: its qualified URI and, for HDFS, how to reach it."""

    uri: str
    webhdfs_url: str | None = None
    user: str | None = None


def task_target(spark: SparkSession, uri: str) -> FileTarget:
    """Resolve ``uri`` (a folder) on the driver; only ``file:`` and ``hdfs:`` are possible."""
    qualified = HadoopFS(spark, uri).qualify(uri)
    parsed = urlparse(qualified)
    sc = spark.sparkContext
    if parsed.scheme == "file":
        if not sc.master.startswith("local"):
            log.warning("%s is a local path: each executor writes to its own disk; use hdfs:// "
                        "unless it is a shared file system", qualified)
        return FileTarget(qualified)
    if parsed.scheme == "hdfs":
        url = config.WEBHDFS_URL
        if not url:
            address = sc._jsc.hadoopConfiguration().get("dfs.namenode.http-address", "0.0.0.0:9870")
            host, _, port = address.rpartition(":")
            url = f"http://{parsed.hostname if host in ('0.0.0.0', '') else host}:{port}"
        return FileTarget(qualified, url, sc.sparkUser())
    raise ValueError(f"the training task writes its model to file: or hdfs:// URIs (hdfs through "
                     f"WebHDFS); {uri} is {parsed.scheme}://")


def upload(target: FileTarget, local_path: str, name: str) -> str:
    """Copy ``local_path`` to ``target/name``; returns the URI written."""
    dest = f"{target.uri.rstrip('/')}/{name}"
    path = urlparse(dest).path
    if target.webhdfs_url is None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(local_path, path)
    else:
        from hdfs import InsecureClient

        InsecureClient(target.webhdfs_url, user=target.user).upload(path, local_path, overwrite=True)
    log.info("wrote %s (%.1f MB)", dest, os.path.getsize(local_path) / 1e6)
    return dest
