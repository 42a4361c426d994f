"""Upload a validated local X-ray tree to HDFS, resumably, and record it in a manifest.

Each file is read once: the same bytes are hashed, decoded (validation) and uploaded. An
upload goes to a hidden temporary name and is renamed onto the final name, so a crash never
leaves a partial file where readers look.

A file is skipped when its HDFS copy (one listing per folder) has the local size and holds the
local bytes: either it is still the very HDFS file (inode id, modification time) the last run
recorded holding bytes with the local sha256 (``_ingest_state.csv``: no request at all), or
HDFS's checksum of it equals the one computed from the local bytes (pipeline.fs.hdfs_checksum:
like with like). The checksum path needs no record, so a re-run after a crash uploads only
what is missing, and a local file whose bytes changed is uploaded again. The last manifest
saves decoding: an image whose sha256 it lists keeps its size and mode.
Byte-identical duplicates are uploaded and flagged in the manifest's ``duplicate_of`` column.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import posixpath
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from hdfs import HdfsError, InsecureClient

from pipeline.config import (
    CLASSES,
    HDFS_BLOCK_SIZE,
    HDFS_DIR_PERMISSION,
    HDFS_FILE_PERMISSION,
    HDFS_USER,
    INGEST_THREADS,
    MANIFEST_NAME,
    STATE_NAME,
    WEBHDFS_URL,
)
from pipeline.data import manifest
from pipeline.data.images import ImageInfo, inspect_image
from pipeline.data.manifest import ManifestRow, Row, UploadRecord
from pipeline.data.patients import patient_id
from pipeline.data.rules import Duplicate, ImageError, Skipped
from pipeline.data.tree import Candidate, TreeListing
from pipeline.fs.hdfs_checksum import ChecksumKind, file_checksum, reported_checksum
from pipeline.fs.webhdfs import (
    CONNECTION_ERRORS,
    Destination,
    HdfsUnreachable,
    connect,
    list_dir,
    parse_destination,
    rename_replacing,
)
from pipeline.ingest.tree_scan import scan_tree
from pipeline.runtime.progress import ProgressCallback

log = logging.getLogger(__name__)

#: Suffix of in-flight uploads; with the leading dot, Hadoop and Spark inputs ignore them.
TEMP_SUFFIX = ".ingest-tmp"


@dataclass
class Report:
    """What a run did; ``summary()`` is the line the CLI prints."""

    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    rejects: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    #: Files that could not be uploaded, with the error; a re-run retries them.
    failures: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts, volume, time and throughput of what was uploaded."""
        mb = self.bytes_uploaded / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        return (
            f"uploaded {self.uploaded}, skipped {self.skipped}, rejected {len(self.rejects)}, "
            f"failed {len(self.failures)}, duplicates flagged {len(self.duplicates)} | "
            f"{mb:.1f} MB of {self.bytes_total / 1e6:.1f} MB in {self.seconds:.1f} s, "
            f"{rate:.2f} MB/s"
        )


def log_report(report: Report) -> None:
    """Log what was not ingested and why, the flagged duplicates and the failures."""
    for reject in sorted(report.rejects, key=lambda r: r.path):
        log.warning("rejected %s: %s", reject.path, reject.reason)
    for warning in report.warnings:
        log.warning("%s", warning)
    for dup in report.duplicates:
        log.info("duplicate %s is byte-identical to %s (uploaded, flagged in the manifest)",
                 dup.path, dup.duplicate_of)
    for failure in report.failures:
        log.error("failed %s: %s", failure.path, failure.reason)


def temp_path(final: str) -> str:
    """The hidden name an upload is written under before it is renamed to ``final``."""
    folder, name = posixpath.split(final)
    return posixpath.join(folder, f".{name}{TEMP_SUFFIX}")


def ingest(
    tree: Path,
    dest_uri: str,
    *,
    splits: Sequence[str] | None = None,
    threads: int = INGEST_THREADS,
    user: str = HDFS_USER,
    webhdfs_url: str = WEBHDFS_URL,
    on_progress: ProgressCallback | None = None,
) -> Report:
    """Validate ``tree`` and bring ``dest_uri`` up to date with it; see the module doc.

    Raises TreeError, DestinationError or HdfsUnreachable (one-line messages) when nothing
    sensible can be done; per-file problems end up in the report instead.
    """
    started = time.monotonic()
    dest = parse_destination(dest_uri, webhdfs_url)
    scan = scan_tree(tree, splits)
    client = connect(dest, user, threads)
    report = Report(rejects=list(scan.skipped), warnings=list(scan.warnings))
    report.bytes_total = sum(f.size for f in scan.files)
    try:
        run = _Run(client, dest, scan, report)
        run.prepare_folders()
        run.transfer(threads, on_progress)
        run.write_records()
    except HdfsError as err:  # the NameNode answered no: permission, safe mode, quota
        raise RuntimeError(f"HDFS refused: {err}") from err
    except CONNECTION_ERRORS as err:
        raise HdfsUnreachable(
            f"HDFS stopped answering at {dest.webhdfs_url} after {report.uploaded} uploads "
            f"({type(err).__name__}); re-run to resume") from err
    report.seconds = time.monotonic() - started
    return report


class _Run:
    """The state of one ingest: HDFS listings, what the last run left, this run's rows."""

    def __init__(self, client: InsecureClient, dest: Destination, scan: TreeListing,
                 report: Report) -> None:
        self.client = client
        self.dest = dest
        self.files = scan.files
        self.splits = scan.splits
        self.report = report
        self.listings: dict[str, dict[str, dict]] = {}
        self.manifest_bytes, rows = self._read(MANIFEST_NAME, ManifestRow)
        self.previous = {row.sha256: row for row in rows.values()}
        #: The last manifest's rows of the splits this run leaves alone (``--splits``): kept.
        self.other_splits = [row for row in rows.values() if row.split not in self.splits]
        self.records_bytes, self.records = self._read(STATE_NAME, UploadRecord)
        self.rows: list[ManifestRow] = []
        self.changed_folders: set[str] = set()
        self._kind: ChecksumKind | None = None
        self._kind_lock = threading.Lock()

    def _read(self, name: str, row_type: type[Row]) -> tuple[bytes, dict[str, Row]]:
        """A CSV file the last run left in the destination (b"", {} if none or unreadable)."""
        path = self.dest.child(name)
        if self.client.status(path, strict=False) is None:
            return b"", {}
        with self.client.read(path) as reader:
            data = reader.read()
        try:
            return data, manifest.from_csv(data, row_type)
        except (ValueError, TypeError, UnicodeDecodeError) as err:
            self.report.warnings.append(f"{name}: unreadable ({err}); ignored")
            return b"", {}

    def prepare_folders(self) -> None:
        """List each class folder once (creating missing ones) and clear crash leftovers."""
        self.client.makedirs(self.dest.path, permission=HDFS_DIR_PERMISSION)
        local = {f.rel_path for f in self.files}
        for folder in sorted({posixpath.dirname(f.rel_path) for f in self.files}):
            hdfs_folder = self.dest.child(folder)
            listing = list_dir(self.client, hdfs_folder)
            if listing is None:
                self.client.makedirs(hdfs_folder, permission=HDFS_DIR_PERMISSION)
                listing = {}
            for name in sorted(listing):
                if name.endswith(TEMP_SUFFIX):
                    self.client.delete(posixpath.join(hdfs_folder, name))
                elif posixpath.join(folder, name) not in local:
                    self.report.warnings.append(
                        f"{folder}/{name}: on HDFS but not among the local images; left in "
                        "place, not in the manifest")
            self.listings[folder] = listing

    def transfer(self, threads: int, on_progress: ProgressCallback | None) -> None:
        """Check or upload every file in a thread pool. A file's own failure is reported and
        the others go on; anything else (HDFS gone, Ctrl-C) cancels what has not started."""
        done = done_bytes = 0
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            futures = {pool.submit(self._one, f): f for f in self.files}
            try:
                for future in as_completed(futures):
                    local = futures[future]
                    try:
                        self._record(*future.result())
                    except CONNECTION_ERRORS:
                        raise
                    except (HdfsError, OSError) as err:
                        self.report.failures.append(Skipped(local.rel_path, str(err)))
                    done += 1
                    done_bytes += local.size
                    if on_progress:
                        on_progress(done, len(self.files), done_bytes)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def write_records(self) -> None:
        """Write the manifest, then the upload record for the next run (each only if changed:
        a re-run with nothing new writes nothing)."""
        rows = manifest.mark_duplicates(self.other_splits + self.rows)
        self.report.duplicates = [Duplicate(r.path, r.duplicate_of) for r in rows
                                  if r.duplicate_of and r.split in self.splits]
        self._put_if_changed(MANIFEST_NAME, manifest.to_csv(rows), self.manifest_bytes)
        for folder in self.changed_folders:
            self.listings[folder] = list_dir(self.client, self.dest.child(folder)) or {}
        kept = [self.records[r.path] for r in self.other_splits if r.path in self.records]
        records = kept + [UploadRecord(r.path, r.sha256, status["fileId"], status["modificationTime"])
                          for r in rows if r.split in self.splits
                          for status in [self._status(r.path)] if status]
        self._put_if_changed(STATE_NAME, manifest.to_csv(records, UploadRecord),
                             self.records_bytes)

    def _record(self, outcome: ManifestRow | Skipped, uploaded: bool) -> None:
        """Fold one file's outcome into the report and the manifest's rows."""
        if isinstance(outcome, Skipped):
            self.report.rejects.append(outcome)
            folder, name = posixpath.split(outcome.path)
            if name in self.listings[folder]:
                self.report.warnings.append(
                    f"{outcome.path}: HDFS copy from an earlier run left in place, not in "
                    "the manifest")
            return
        self.rows.append(outcome)
        if uploaded:
            self.changed_folders.add(posixpath.dirname(outcome.path))
            self.report.uploaded += 1
            self.report.bytes_uploaded += outcome.bytes
        else:
            self.report.skipped += 1

    def _one(self, local: Candidate) -> tuple[ManifestRow | Skipped, bool]:
        """Skip, reject or upload one file; runs in a worker thread. True if uploaded."""
        data = Path(local.path).read_bytes()
        try:
            row = self._describe(local, data)
        except ImageError as err:
            return Skipped(local.rel_path, str(err)), False
        checksum = self._hdfs_copy_checksum(row, data)
        upload = checksum is None
        if upload:
            final = self.dest.child(local.rel_path)
            self._put(final, data)
            checksum = file_checksum(data, HDFS_BLOCK_SIZE, self._checksum_kind(final))
        return dataclasses.replace(row, hdfs_checksum=checksum), upload

    def _hdfs_copy_checksum(self, row: ManifestRow, data: bytes) -> str | None:
        """HDFS's checksum of the HDFS copy of ``row``'s file if it holds exactly ``data``.

        A copy that is still the very file (inode id, modification time) recorded holding
        these bytes is trusted without a request; any other copy of the right size is checked
        by comparing HDFS's checksum of it with the one of the local bytes.
        """
        status = self._status(row.path)
        if status is None or status["type"] != "FILE" or status["length"] != row.bytes:
            return None
        record = UploadRecord(row.path, row.sha256, status["fileId"], status["modificationTime"])
        if row.hdfs_checksum and self.records.get(row.path) == record:
            return row.hdfs_checksum
        remote = self.client.checksum(self.dest.child(row.path))
        kind = self._checksum_kind(algorithm=remote["algorithm"])
        checksum = reported_checksum(remote)
        return checksum if checksum == file_checksum(data, status["blockSize"], kind) else None

    def _status(self, rel_path: str) -> dict | None:
        """The FileStatus of ``rel_path`` in the latest listing of its folder."""
        folder, name = posixpath.split(rel_path)
        return self.listings.get(folder, {}).get(name)

    def _describe(self, local: Candidate, data: bytes) -> ManifestRow:
        """The file's manifest row, decoding ``data`` unless the last manifest lists the same
        bytes (then their size, mode and HDFS checksum are known); raises ImageError."""
        sha256 = hashlib.sha256(data).hexdigest()
        known = self.previous.get(sha256)
        if known:
            info = ImageInfo(known.width, known.height, known.mode, known.channels)
        else:
            info = inspect_image(data)
        return ManifestRow(
            path=local.rel_path,
            split=local.split,
            label=CLASSES[local.class_name],
            patient_id=patient_id(local.rel_path),
            bytes=len(data),
            sha256=sha256,
            hdfs_checksum=known.hdfs_checksum if known else "",
            width=info.width,
            height=info.height,
            channels=info.channels,
            mode=info.mode,
        )

    def _checksum_kind(self, path: str = "", algorithm: str = "") -> ChecksumKind:
        """The cluster's checksum settings: from ``algorithm`` if given, else asked once per
        run for the file at ``path``."""
        with self._kind_lock:
            if self._kind is None:
                algorithm = algorithm or self.client.checksum(path)["algorithm"]
                self._kind = ChecksumKind.from_algorithm(algorithm)
            return self._kind

    def _put(self, final: str, data: bytes) -> None:
        """Write ``data`` to ``final`` through a temporary name and an atomic rename."""
        temp = temp_path(final)
        self.client.write(temp, data, overwrite=True, permission=HDFS_FILE_PERMISSION,
                          blocksize=HDFS_BLOCK_SIZE)
        rename_replacing(self.client, temp, final)

    def _put_if_changed(self, name: str, data: bytes, previous: bytes) -> None:
        """Write one of the destination's CSV files, unless it already holds ``data``."""
        if data != previous:
            self._put(self.dest.child(name), data)
