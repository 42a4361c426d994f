"""Writing a file from a Python task, which has no JVM and so no Hadoop FileSystem, to a URI.

``file:`` URIs are written directly (right in local mode or on a shared file system);
``hdfs://`` ones through WebHDFS, as ingest reaches HDFS (``pipeline.fs.webhdfs``: same endpoint
rules, same user). The driver resolves the target and checks that it answers before any work
starts; the task only copies. This keeps a large model (InceptionV3 is 89 MB) out of Spark's
task results, which a driver with a 1 GB heap cannot take.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from pipeline import config
from pipeline.fs.storage import HadoopFS
from pipeline.fs.webhdfs import Destination, connect, parse_destination

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileTarget:
    """A folder a task can write into: its qualified URI and, for HDFS, its WebHDFS side."""

    uri: str
    hdfs: Destination | None = None
    user: str = config.HDFS_USER


def task_target(spark: SparkSession, uri: str) -> FileTarget:
    """Resolve ``uri`` (a folder) on the driver; only ``file:`` and ``hdfs:`` are possible."""
    qualified = HadoopFS(spark, uri).qualify(uri)
    scheme = urlparse(qualified).scheme
    if scheme == "file":
        if not spark.sparkContext.master.startswith("local"):
            log.warning("%s is a local path: each executor writes to its own disk; use hdfs:// "
                        "unless it is a shared file system", qualified)
        return FileTarget(qualified)
    if scheme == "hdfs":
        target = FileTarget(qualified, parse_destination(qualified))
        connect(target.hdfs, target.user)  # unreachable WebHDFS fails now, not after training
        return target
    raise ValueError(f"the training task writes its model to file: or hdfs:// URIs (hdfs through "
                     f"WebHDFS); {uri} is {scheme}://")


def upload(target: FileTarget, local_path: str, name: str) -> str:
    """Copy ``local_path`` to ``target/name``; returns the URI written."""
    dest = f"{target.uri.rstrip('/')}/{name}"
    if target.hdfs is None:
        path = urlparse(dest).path
        os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
        shutil.copyfile(local_path, path)
        os.chmod(path, int(config.HDFS_FILE_PERMISSION, 8))
    else:
        connect(target.hdfs, target.user).upload(target.hdfs.child(name), local_path, overwrite=True,
                                                 permission=config.HDFS_FILE_PERMISSION)
    log.info("wrote %s (%.1f MB)", dest, os.path.getsize(local_path) / 1e6)
    return dest
