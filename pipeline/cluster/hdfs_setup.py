"""What HDFS must hold before Spark runs on the cluster: shared directories and the archive
of pyspark's jars that spark.yarn.archive names.

Why the archive: without it every `spark-submit --master yarn` zips and uploads all of
pyspark's jars (about 460 MB). It is built once into the cache dir, uploaded to a temporary
name and renamed, and skipped when HDFS already has a file of the same size.
"""
from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import logging
import os
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from hdfs import Client

from pipeline import config
from pipeline.cluster import conf, health, kdc
from pipeline.fs.webhdfs import make_client, rename_replacing

log = logging.getLogger(__name__)

def shared_dirs() -> dict[str, str]:
    """HDFS path -> permission. /tmp and the event log dir are shared by every user (sticky,
    like /tmp); the archive's dir is readable by all so that YARN localizes the archive once
    for every user (PUBLIC visibility) instead of once per user."""
    defaults = conf.read_spark_defaults()
    archive_dir = os.path.dirname(urlparse(defaults["spark.yarn.archive"]).path)
    return {"/tmp": "1777", urlparse(defaults["spark.eventLog.dir"]).path: "1777",
            archive_dir: "755", f"/user/{getpass.getuser()}": "750"}


def client() -> Client:
    """WebHDFS as the OS user, who started the NameNode and so is the HDFS superuser; on a
    secure cluster with that user's ticket (kdc.use_cluster_ticket())."""
    return make_client(health.url("namenode_http"), user=getpass.getuser(),
                       kerberos=kdc.is_secure())


def prepare_dirs(hdfs: Client) -> list[str]:
    created = []
    for path, permission in shared_dirs().items():
        if hdfs.status(path, strict=False) is None:
            hdfs.makedirs(path)
            created.append(path)
        hdfs.set_permission(path, permission)
    if created:
        log.info("created on HDFS: %s", ", ".join(created))
    return created


def local_spark_archive() -> Path:
    """A zip of pyspark's jars in the cache dir, built once per set of jars.

    Stored, not deflated (jars are compressed already), in name order with fixed timestamps,
    so the same jars always give the same bytes and size.
    """
    jars = sorted((conf.spark_home() / "jars").glob("*.jar"))
    listing = "\n".join(f"{p.name} {p.stat().st_size}" for p in jars).encode()
    key = hashlib.sha256(listing).hexdigest()[:12]
    version = importlib.metadata.version("pyspark")
    target = config.CACHE_DIR / f"spark-jars-{version}-{key}.zip"
    if target.exists():
        return target
    config.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for jar in jars:
            info = zipfile.ZipInfo(jar.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with jar.open("rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
    os.replace(tmp, target)
    log.info("built %s: %d jars, %.0f MB, in %.1f s", target, len(jars),
             target.stat().st_size / 1e6, time.monotonic() - start)
    return target


def ensure_spark_archive(hdfs: Client) -> bool:
    """Upload the archive unless HDFS has one of the same size; True when it uploaded."""
    hdfs_path = urlparse(conf.read_spark_defaults()["spark.yarn.archive"]).path
    local = local_spark_archive()
    size = local.stat().st_size
    present = hdfs.status(hdfs_path, strict=False)
    if present is not None and present["length"] == size:
        log.info("spark.yarn.archive %s already on HDFS (%.0f MB)", hdfs_path, size / 1e6)
        return False
    start = time.monotonic()
    tmp = f"{hdfs_path}.{os.getpid()}.uploading"
    hdfs.upload(tmp, str(local), overwrite=True, permission="644")
    rename_replacing(hdfs, tmp, hdfs_path)  # never a moment without an archive to localize
    seconds = time.monotonic() - start
    log.info("uploaded spark.yarn.archive to %s: %.0f MB in %.1f s (%.0f MB/s)", hdfs_path,
             size / 1e6, seconds, size / 1e6 / max(seconds, 1e-3))
    return True
