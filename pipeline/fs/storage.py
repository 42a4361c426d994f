"""Files on any Hadoop URI (file://, hdfs://, ...), through the Spark JVM's FileSystem.

One code path for local and cluster runs. Outputs are written under a temporary sibling
name and renamed into place, so an interrupted job never leaves a half-written model or
report under the final name, and the previous one stays until the new one is complete.
A failed call raises StorageError naming the URI, so a job's one-line error says which of
its URIs was unusable and why (NameNode down, safe mode, permission, unknown scheme).
"""
from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import SparkSession

from pipeline.runtime import shutdown
from pipeline.runtime.cli import one_line

log = logging.getLogger(__name__)

#: Tags of the hidden siblings ``.<name>.<tag>-<id>`` that atomic_output and prepare_output
#: write: the new output, the previous one moved aside, a writability probe.
TMP, OLD, PROBE = "tmp", "old", "probe"


class StorageError(OSError):
    """A FileSystem call failed; the message is one line naming the URI."""


@contextlib.contextmanager
def _about(uri: str) -> Iterator[None]:
    """Turn a JVM exception raised while working on ``uri`` into a StorageError naming it."""
    try:
        yield
    except (Py4JJavaError, CapturedException) as err:
        raise StorageError(f"{uri}: {one_line(err)}") from err


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    #: Modification time, ms since the epoch.
    modified: int = 0
    is_dir: bool = False


def local_path(uri: str) -> Path:
    """The local file a qualified ``file:`` path names (Hadoop prints ``file:/a b/c``)."""
    rest = uri.removeprefix("file:")
    return Path("/" + rest.lstrip("/"))


class HadoopFS:
    """The FileSystem that serves ``uri``, with the few operations the jobs need."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        self._jvm = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        with _about(uri):
            self._fs = self._path(uri).getFileSystem(conf)
        self._local = str(self._fs.getUri().getScheme()) == "file"

    def _path(self, uri: str):
        return self._jvm.org.apache.hadoop.fs.Path(uri)

    def _entry(self, status) -> FileEntry:
        return FileEntry(status.getPath().toString(), int(status.getLen()),
                         modified=int(status.getModificationTime()),
                         is_dir=bool(status.isDirectory()))

    def qualify(self, uri: str) -> str:
        """Fully qualified form (``hdfs://host:port/x``, ``file:/x``), as Spark reports paths."""
        with _about(uri):
            return self._fs.makeQualified(self._path(uri)).toString()

    def parent(self, uri: str) -> str | None:
        """The folder holding ``uri``, qualified; None for a file system's root."""
        with _about(uri):
            parent = self._fs.makeQualified(self._path(uri)).getParent()
        return None if parent is None else parent.toString()

    def exists(self, uri: str) -> bool:
        with _about(uri):
            return bool(self._fs.exists(self._path(uri)))

    def is_dir(self, uri: str) -> bool:
        with _about(uri):
            return bool(self._fs.getFileStatus(self._path(uri)).isDirectory())

    def list_dir(self, uri: str) -> list[FileEntry]:
        """The entries of one folder (not recursive)."""
        with _about(uri):
            return [self._entry(s) for s in self._fs.listStatus(self._path(uri))]

    def read_bytes(self, uri: str) -> bytes:
        with _about(uri):
            stream = self._fs.open(self._path(uri))
            try:
                return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
            finally:
                stream.close()

    def write_bytes(self, uri: str, data: bytes) -> None:
        with _about(uri):
            stream = self._fs.create(self._path(uri), True)
            try:
                stream.write(bytearray(data))
            finally:
                stream.close()

    def mkdirs(self, uri: str, mode: int = 0o750) -> None:
        perm = self._jvm.org.apache.hadoop.fs.permission.FsPermission(mode)
        with _about(uri):
            self._fs.mkdirs(self._path(uri), perm)
            self._fs.setPermission(self._path(uri), perm)

    def delete(self, uri: str) -> None:
        with _about(uri):
            self._fs.delete(self._path(uri), True)

    def rename(self, src: str, dst: str) -> None:
        with _about(src):
            renamed = self._fs.rename(self._path(src), self._path(dst))
        if not renamed:
            raise StorageError(f"could not rename {src} to {dst}")

    def copy_to_local(self, uri: str, local: Path) -> None:
        with _about(uri):
            self._fs.copyToLocalFile(False, self._path(uri), self._path(str(local.resolve())), True)

    def put_dir(self, local_dir: Path, uri: str) -> None:
        """Copy a local directory's contents to ``uri`` (which must not exist yet)."""
        with _about(uri):
            self._fs.copyFromLocalFile(False, True, self._path(str(local_dir.resolve())),
                                       self._path(uri))


def _name(uri: str) -> str:
    return uri.rstrip("/").rpartition("/")[2]


def _sibling(fs: HadoopFS, uri: str, tag: str) -> str:
    """A new hidden name beside ``uri``: Spark and Hadoop input formats skip it."""
    return f"{fs.parent(uri).rstrip('/')}/.{_name(uri)}.{tag}-{uuid.uuid4().hex[:8]}"


def _leftovers(fs: HadoopFS, final_uri: str) -> dict[str, list[FileEntry]]:
    """Hidden siblings of ``final_uri`` from earlier runs by tag, oldest first; one listing."""
    prefix = f".{_name(final_uri)}."
    found: dict[str, list[FileEntry]] = {TMP: [], OLD: [], PROBE: []}
    for entry in sorted(fs.list_dir(fs.parent(final_uri)), key=lambda e: e.modified):
        tag = _name(entry.path).removeprefix(prefix).partition("-")[0]
        if _name(entry.path).startswith(prefix) and tag in found:
            found[tag].append(entry)
    return found


def prepare_output(spark: SparkSession, final_uri: str) -> None:
    """Check that ``final_uri`` can be written before any expensive step, and tidy what an
    interrupted run left beside it.

    Creates the parent folder (mode 750) and writes and removes a probe file there, so a
    NameNode that is down or in safe mode, or a missing permission, fails the job in seconds
    with a StorageError naming the URI. A run killed between atomic_output's two renames
    leaves no ``final_uri`` but the previous output under an ``.old-`` name: that is put back.
    Every other leftover temporary sibling is removed (two jobs must not write the same
    output at once: the last rename would win anyway).
    """
    try:
        fs = HadoopFS(spark, final_uri)
        _ensure_parent(fs, final_uri)
        leftovers = _leftovers(fs, final_uri)
        backups = leftovers[OLD]
        if backups and not fs.exists(final_uri):
            newest = backups.pop()
            fs.rename(newest.path, final_uri)
            log.warning("restored %s from %s, left by an interrupted run", final_uri, newest.path)
        for entry in backups + leftovers[TMP] + leftovers[PROBE]:
            fs.delete(entry.path)
            log.info("removed %s, left by an interrupted run", entry.path)
        probe = _sibling(fs, final_uri, PROBE)
        fs.write_bytes(probe, b"")
        fs.delete(probe)
    except StorageError as err:
        raise StorageError(f"cannot write {final_uri}: {one_line(err.__cause__ or err)}") from err


def _ensure_parent(fs: HadoopFS, uri: str) -> None:
    """Create the folder that will hold ``uri`` (750) unless it exists: an existing one,
    such as a shared /tmp, keeps its mode."""
    parent = fs.parent(uri)
    if parent and not fs.exists(parent):
        fs.mkdirs(parent)


def _remove_temporary(spark: SparkSession, fs: HadoopFS, tmp: str, timeout: float = 30) -> None:
    """Remove a failed write's temporary output once its tasks are over.

    A failed or cancelled Spark job returns while its other tasks are still being killed,
    and one of them can recreate folders (its committer's abort) in what was just removed;
    the executors' count of running tasks can lag that too. So: wait until none runs
    (at most ``timeout`` s), remove, and look again a moment later.
    """
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):  # a JVM that is gone runs no tasks either
        tracker = spark.sparkContext._jsc.sc().statusTracker()
        while time.monotonic() < deadline and \
                sum(e.numRunningTasks() for e in tracker.getExecutorInfos()):
            time.sleep(0.2)
    for _ in range(3):
        if not fs.exists(tmp):
            return
        fs.delete(tmp)
        time.sleep(0.5)


@contextlib.contextmanager
def atomic_output(spark: SparkSession, final_uri: str) -> Iterator[str]:
    """Yield a temporary URI to write to; on success it replaces ``final_uri``.

    On failure the temporary output is removed and any previous ``final_uri`` is untouched.
    The old output is moved aside (not deleted) until the new one is in place.
    """
    fs = HadoopFS(spark, final_uri)
    tmp = _sibling(fs, final_uri, TMP)
    _ensure_parent(fs, final_uri)
    try:
        yield tmp
        shutdown.check()  # asked to stop while writing: the previous output stays
    except BaseException:
        _remove_temporary(spark, fs, tmp)
        raise
    backup = None
    if fs.exists(final_uri):
        backup = _sibling(fs, final_uri, OLD)
        fs.rename(final_uri, backup)
    fs.rename(tmp, final_uri)
    if backup:
        fs.delete(backup)
    log.info("wrote %s", final_uri)
