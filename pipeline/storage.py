"""Files on any Hadoop URI (file://, hdfs://, ...), through the Spark JVM's FileSystem.

One code path for local and cluster runs. Outputs are written under a temporary sibling
name and renamed into place, so an interrupted job never leaves a half-written model or
report under the final name, and the previous one stays until the new one is complete.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int


class HadoopFS:
    """The FileSystem that serves ``uri``, with the few operations the jobs need."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        self._jvm = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._fs = self._path(uri).getFileSystem(conf)

    def _path(self, uri: str):
        return self._jvm.org.apache.hadoop.fs.Path(uri)

    def qualify(self, uri: str) -> str:
        """Fully qualified form (``hdfs://host:port/x``, ``file:/x``), as Spark reports paths."""
        return self._fs.makeQualified(self._path(uri)).toString()

    def exists(self, uri: str) -> bool:
        return bool(self._fs.exists(self._path(uri)))

    def is_dir(self, uri: str) -> bool:
        return bool(self._fs.getFileStatus(self._path(uri)).isDirectory())

    def list_files(self, root: str) -> list[FileEntry]:
        """Every file below ``root`` (recursive, hidden ones included: callers decide)."""
        it = self._fs.listFiles(self._path(root), True)
        out = []
        while it.hasNext():
            status = it.next()
            out.append(FileEntry(status.getPath().toString(), int(status.getLen())))
        return out

    def read_bytes(self, uri: str) -> bytes:
        stream = self._fs.open(self._path(uri))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write_bytes(self, uri: str, data: bytes) -> None:
        stream = self._fs.create(self._path(uri), True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def mkdirs(self, uri: str, mode: int = 0o750) -> None:
        perm = self._jvm.org.apache.hadoop.fs.permission.FsPermission(mode)
        self._fs.mkdirs(self._path(uri), perm)
        self._fs.setPermission(self._path(uri), perm)

    def delete(self, uri: str) -> None:
        self._fs.delete(self._path(uri), True)

    def rename(self, src: str, dst: str) -> None:
        if not self._fs.rename(self._path(src), self._path(dst)):
            raise OSError(f"could not rename {src} to {dst}")

    def put_dir(self, local_dir: Path, uri: str) -> None:
        """Copy a local directory's contents to ``uri`` (which must not exist yet)."""
        self._fs.copyFromLocalFile(False, True, self._path(str(local_dir.resolve())), self._path(uri))


def _sibling(uri: str, tag: str) -> str:
    parent, _, name = uri.rstrip("/").rpartition("/")
    return f"{parent}/.{name}.{tag}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_output(spark: SparkSession, final_uri: str) -> Iterator[str]:
    """Yield a temporary URI to write to; on success it replaces ``final_uri``.

    On failure the temporary output is removed and any previous ``final_uri`` is untouched.
    The old output is moved aside (not deleted) until the new one is in place.
    """
    fs = HadoopFS(spark, final_uri)
    tmp = _sibling(final_uri, "tmp")
    parent = final_uri.rstrip("/").rpartition("/")[0]
    if parent and not fs.exists(parent):
        fs.mkdirs(parent)
    try:
        yield tmp
    except BaseException:
        if fs.exists(tmp):
            fs.delete(tmp)
        raise
    backup = None
    if fs.exists(final_uri):
        backup = _sibling(final_uri, "old")
        fs.rename(final_uri, backup)
    fs.rename(tmp, final_uri)
    if backup:
        fs.delete(backup)
    log.info("wrote %s", final_uri)
