"""Files on any Hadoop URI (file://, hdfs://, ...), through the Spark JVM's FileSystem.

One code path for local and cluster runs. Outputs are written under a temporary sibling
name and renamed into place, so an interrupted job never leaves a half-written model or
report under the final name, and the previous one stays until the new one is complete.
Only one job at a time writes an output: prepare_output and atomic_output first take its
lease (pipeline.fs.lease), so a second job stops with an error naming the first, and only
the holder ever tidies temporary siblings.
A failed call raises StorageError naming the URI, so a job's one-line error says which of
its URIs was unusable and why (NameNode down, safe mode, permission, unknown scheme).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from py4j.protocol import Py4JJavaError
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import SparkSession

from pipeline.fs import lease
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


def _java_class(err: Py4JJavaError | CapturedException) -> str:
    """The JVM exception's class name (the wrapped one of a NameNode's RemoteException)."""
    java = getattr(err, "java_exception", None)
    if java is None:
        return ""
    name = str(java.getClass().getName())
    return str(java.getClassName()) if name.endswith(".RemoteException") else name


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
        self._conf = conf = spark.sparkContext._jsc.hadoopConfiguration()
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

    def modified(self, uri: str) -> int | None:
        """Modification time of ``uri`` in ms since the epoch; None when nothing is there."""
        try:
            with _about(uri):
                return int(self._fs.getFileStatus(self._path(uri)).getModificationTime())
        except StorageError as err:
            if _java_class(err.__cause__).endswith("FileNotFoundException"):
                return None
            raise

    def touch(self, uri: str, modified_ms: int) -> None:
        """Set the modification time of ``uri`` (ms since the epoch)."""
        with _about(uri):
            self._fs.setTimes(self._path(uri), modified_ms, -1)

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

    def create_new(self, uri: str, data: bytes) -> bool:
        """Create the file ``uri`` holding ``data`` unless something is there (False then),
        atomically: of two callers at once exactly one creates it.

        HDFS's create without overwrite is decided by the NameNode; Hadoop's local file
        system checks and then opens (two steps), so a local file is made with O_EXCL.
        """
        if self._local:
            try:
                fd = os.open(local_path(self.qualify(uri)), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o640)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            return True
        path, fs = self._path(uri), self._fs
        perm = self._jvm.org.apache.hadoop.fs.permission.FsPermission(0o640)
        try:
            with _about(uri):
                stream = fs.create(path, perm, False, 4096, fs.getDefaultReplication(path),
                                   fs.getDefaultBlockSize(path), None)
        except StorageError as err:
            if _java_class(err.__cause__).endswith(("FileAlreadyExistsException",
                                                    "AlreadyBeingCreatedException")):
                return False
            raise
        with _about(uri):
            try:
                stream.write(bytearray(data))
            finally:
                stream.close()
        return True

    def mkdirs(self, uri: str, mode: int = 0o750) -> None:
        perm = self._jvm.org.apache.hadoop.fs.permission.FsPermission(mode)
        with _about(uri):
            self._fs.mkdirs(self._path(uri), perm)
            self._fs.setPermission(self._path(uri), perm)

    def delete(self, uri: str) -> None:
        with _about(uri):
            self._fs.delete(self._path(uri), True)

    def delete_on_exit(self, uri: str) -> None:
        """Delete ``uri`` when the JVM exits, if nothing did before."""
        with _about(uri):
            self._fs.deleteOnExit(self._path(uri))

    def home(self) -> str:
        """The user's home folder on this file system, qualified."""
        return self._fs.getHomeDirectory().toString()

    def copy(self, uri: str, target: str) -> None:
        """Copy the file ``uri`` to ``target``, on this or any other file system, streamed
        through a small buffer (``FileUtil.copy``): never whole in memory."""
        with _about(uri):
            to = self._path(target)
            self._jvm.org.apache.hadoop.fs.FileUtil.copy(
                self._fs, self._path(uri), to.getFileSystem(self._conf), to, False, self._conf)

    def rename(self, src: str, dst: str) -> None:
        with _about(src):
            renamed = self._fs.rename(self._path(src), self._path(dst))
        if not renamed:
            raise StorageError(f"could not rename {src} to {dst}")

    def move_file(self, src: str, dst: str) -> bool:
        """Rename the file ``src`` to ``dst`` unless ``src`` is gone or ``dst`` exists (False
        then), atomically. HDFS's rename never replaces a file; a local rename(2) would, so a
        local file is linked to the new name, which fails if it exists, and then unlinked."""
        if not self._local:
            with _about(src):
                return bool(self._fs.rename(self._path(src), self._path(dst)))
        source, target = local_path(self.qualify(src)), local_path(self.qualify(dst))
        try:
            os.link(source, target)
        except (FileExistsError, FileNotFoundError):
            return False
        try:
            os.unlink(source)
        except FileNotFoundError:  # another caller moved it at the same moment: theirs
            os.unlink(target)
            return False
        return True

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
    found: dict[str, list[FileEntry]] = {TMP: [], OLD: [], PROBE: [], lease.ASIDE: []}
    for entry in sorted(fs.list_dir(fs.parent(final_uri)), key=lambda e: e.modified):
        tag = _name(entry.path).removeprefix(prefix).partition("-")[0]
        if _name(entry.path).startswith(prefix) and tag in found:
            found[tag].append(entry)
    return found


def prepare_output(spark: SparkSession, final_uri: str) -> lease.Lease:
    """Take ``final_uri``'s lease, check that it can be written before any expensive step,
    and tidy what an interrupted run left beside it.

    Another live job writing ``final_uri`` raises LeaseHeld naming it (the lease is taken
    first, so a second job never tidies away the first one's temporary output). Creates the
    parent folder (mode 750) and writes and removes a probe file there, so a NameNode that
    is down or in safe mode, or a missing permission, fails the job in seconds with a
    StorageError naming the URI. A run killed between atomic_output's two renames leaves no
    ``final_uri`` but the previous output under an ``.old-`` name: that is put back. Every
    other leftover temporary sibling is removed. The lease is held until atomic_output has
    written ``final_uri``, or the job ends (or ``release()``, or ``with prepare_output(...)``).
    """
    try:
        fs = HadoopFS(spark, final_uri)
        _ensure_parent(fs, final_uri)
        held = _lease(spark, fs, final_uri)
        try:
            leftovers = _leftovers(fs, final_uri)
            backups = leftovers[OLD]
            if backups and not fs.exists(final_uri):
                newest = backups.pop()
                fs.rename(newest.path, final_uri)
                log.warning("restored %s from %s, left by an interrupted run", final_uri,
                            newest.path)
            for entry in backups + leftovers[TMP] + leftovers[PROBE] + leftovers[lease.ASIDE]:
                fs.delete(entry.path)
                log.info("removed %s, left by an interrupted run", entry.path)
            probe = _sibling(fs, final_uri, PROBE)
            fs.write_bytes(probe, b"")
            fs.delete(probe)
        except BaseException:
            held.release()
            raise
    except StorageError as err:
        raise StorageError(f"cannot write {final_uri}: {one_line(err.__cause__ or err)}") from err
    return held


def _lease(spark: SparkSession, fs: HadoopFS, final_uri: str) -> lease.Lease:
    """This job's lease on ``final_uri`` (pipeline.fs.lease), owned by its Spark application."""
    return lease.acquire(fs, fs.qualify(final_uri), spark.sparkContext.applicationId)


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

    Holds ``final_uri``'s lease throughout (taken here unless prepare_output took it) and
    lets it go at the end, whatever the outcome. On failure, or a lease lost meanwhile, the
    temporary output is removed and any previous ``final_uri`` is untouched. The old output
    is moved aside (not deleted) until the new one is in place.
    """
    fs = HadoopFS(spark, final_uri)
    _ensure_parent(fs, final_uri)
    with _lease(spark, fs, final_uri) as held:
        tmp = _sibling(fs, final_uri, TMP)
        try:
            yield tmp
            shutdown.check()  # asked to stop while writing: the previous output stays
            held.check()  # another job took over meanwhile: its output, not ours
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
