"""Upload a validated local X-ray tree to HDFS, resumably, and record it in a manifest.

Each file is read once: the same bytes are hashed, decoded (validation) and uploaded. An
upload goes to a hidden temporary name and is renamed onto the final name, so a crash never
leaves a partial file where readers look. A re-run skips a file when the manifest of the last
run describes it (same sha256 as the local bytes) and the HDFS copy is the one described (size
from one listing per folder, HDFS checksum); every other file is validated and uploaded again.
Byte-identical duplicates are uploaded and flagged in the manifest's ``duplicate_of`` column.
"""
from __future__ import annotations

import hashlib
import logging
import posixpath
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from hdfs import HdfsError, InsecureClient

from pipeline import manifest
from pipeline.config import (
    CLASSES,
    HDFS_DIR_PERMISSION,
    HDFS_FILE_PERMISSION,
    HDFS_USER,
    INGEST_CHECKPOINT_S,
    INGEST_THREADS,
    MANIFEST_NAME,
    WEBHDFS_URL,
)
from pipeline.image_check import InvalidImage, inspect_image
from pipeline.manifest import ManifestRow
from pipeline.patients import patient_id
from pipeline.tree_scan import LocalFile, Reject, scan_tree
from pipeline.webhdfs import (
    CONNECTION_ERRORS,
    Destination,
    HdfsUnreachable,
    connect,
    list_dir,
    parse_destination,
    rename_replacing,
)

log = logging.getLogger(__name__)

#: Suffix of in-flight uploads; with the leading dot, Hadoop and Spark inputs ignore them.
TEMP_SUFFIX = ".ingest-tmp"

#: ``on_progress(files_done, files_total, bytes_done)``, called from the calling thread.
ProgressCallback = Callable[[int, int, int], None]


@dataclass
class Report:
    """What a run did; ``summary()`` is the line the CLI prints."""

    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    bytes_total: int = 0
    seconds: float = 0.0
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: (path, path of the identical file it copies)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    #: (path, error) of files that could not be uploaded; a re-run retries them.
    failures: list[tuple[str, str]] = field(default_factory=list)

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
    report = Report(rejects=list(scan.rejects), warnings=list(scan.warnings))
    report.bytes_total = sum(f.size for f in scan.files)
    run = _Run(client, dest, scan.files, report)
    run.prepare_folders()
    run.transfer(threads, on_progress)
    report.seconds = time.monotonic() - started
    return report


class _Run:
    """The state of one ingest: HDFS listings, last run's manifest, this run's rows."""

    def __init__(self, client: InsecureClient, dest: Destination, files: list[LocalFile],
                 report: Report) -> None:
        self.client = client
        self.dest = dest
        self.files = files
        self.report = report
        self.listings: dict[str, dict[str, dict]] = {}
        self.previous = self._read_manifest()
        # Rows of the manifest being built: last run's rows for files still to check, replaced
        # by this run's outcome as files are done. Checkpoints write exactly this.
        local = {f.rel_path for f in files}
        self.rows = {path: row for path, row in self.previous.items() if path in local}

    def _read_manifest(self) -> dict[str, ManifestRow]:
        """Last run's manifest, or {} when there is none or it cannot be read."""
        path = self.dest.child(MANIFEST_NAME)
        if self.client.status(path, strict=False) is None:
            return {}
        with self.client.read(path) as reader:
            data = reader.read()
        try:
            return manifest.from_csv(data)
        except (ValueError, TypeError, UnicodeDecodeError) as err:
            self.report.warnings.append(
                f"{MANIFEST_NAME}: unreadable ({err}); every file is checked and uploaded again")
            return {}

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
        """Check or upload every file in a thread pool; checkpoint and write the manifest."""
        done = done_bytes = 0
        last_checkpoint = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            futures = {pool.submit(self._one, f): f for f in self.files}
            for future in as_completed(futures):
                local = futures[future]
                try:
                    self._record(local, *future.result())
                except CONNECTION_ERRORS as err:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise HdfsUnreachable(
                        f"HDFS stopped answering at {self.dest.webhdfs_url} after {done} of "
                        f"{len(self.files)} files ({type(err).__name__}); re-run to resume"
                    ) from err
                except (HdfsError, OSError) as err:
                    self.report.failures.append((local.rel_path, str(err)))
                done += 1
                done_bytes += local.size
                if on_progress:
                    on_progress(done, len(self.files), done_bytes)
                if time.monotonic() - last_checkpoint > INGEST_CHECKPOINT_S:
                    self._write_manifest()
                    last_checkpoint = time.monotonic()
        rows = self._write_manifest()
        self.report.duplicates = [(r.path, r.duplicate_of) for r in rows if r.duplicate_of]

    def _record(self, local: LocalFile, outcome: ManifestRow | Reject, uploaded: bool) -> None:
        """Fold one file's outcome into the report and the manifest being built."""
        if isinstance(outcome, Reject):
            self.report.rejects.append(outcome)
            self.rows.pop(local.rel_path, None)
            return
        self.rows[local.rel_path] = outcome
        if uploaded:
            self.report.uploaded += 1
            self.report.bytes_uploaded += outcome.bytes
        else:
            self.report.skipped += 1

    def _one(self, local: LocalFile) -> tuple[ManifestRow | Reject, bool]:
        """Skip, reject or upload one file; runs in a worker thread. True if uploaded."""
        data = local.abs_path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.dest.child(local.rel_path)
        previous = self.previous.get(local.rel_path)
        if previous and self._unchanged(local, data, sha256, previous):
            return previous, False
        try:
            info = inspect_image(data)
        except InvalidImage as err:
            return Reject(local.rel_path, str(err)), False
        self._put(final, data)
        return ManifestRow(
            path=local.rel_path,
            split=local.split,
            label=CLASSES[local.class_name],
            patient_id=patient_id(local.rel_path),
            bytes=len(data),
            sha256=sha256,
            hdfs_checksum=self.client.checksum(final)["bytes"],
            width=info.width,
            height=info.height,
            channels=info.channels,
            mode=info.mode,
        ), True

    def _unchanged(self, local: LocalFile, data: bytes, sha256: str,
                   previous: ManifestRow) -> bool:
        """Whether both the local file and its HDFS copy are what the manifest describes."""
        folder, name = posixpath.split(local.rel_path)
        status = self.listings[folder].get(name)
        return (
            previous.sha256 == sha256
            and status is not None
            and status["type"] == "FILE"
            and status["length"] == previous.bytes == len(data)
            and self.client.checksum(self.dest.child(local.rel_path))["bytes"]
            == previous.hdfs_checksum
        )

    def _put(self, final: str, data: bytes) -> None:
        """Write ``data`` to ``final`` through a temporary name and an atomic rename."""
        temp = temp_path(final)
        self.client.write(temp, data, overwrite=True, permission=HDFS_FILE_PERMISSION)
        rename_replacing(self.client, temp, final)

    def _write_manifest(self) -> list[ManifestRow]:
        """Write the rows known so far as the manifest (atomically); return them marked."""
        rows = manifest.mark_duplicates(self.rows.values())
        self._put(self.dest.child(MANIFEST_NAME), manifest.to_csv(rows))
        return rows
