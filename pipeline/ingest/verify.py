"""Audit an ingested tree: read every film back from HDFS and compare it with the manifest.

Ingest's re-run trusts HDFS's own checksum of a file (an MD5 of the CRCs the DataNodes
stored when it was written), so it cannot see bytes that rotted on a disk afterwards: the
stored CRCs still match the manifest. Only reading the data does: the DataNode checks every
chunk against its CRC while it sends it, and an unreadable block breaks the transfer off.
So the audit reads each film in full over WebHDFS (as ingest talks to HDFS), hashes it, and
names every film that is missing, unreadable, of another size or of other bytes than the
manifest's sha256. HDFS reads around a bad replica when another replica is good (and reports
the bad one, so the NameNode replaces it), so a film named here has no good copy left.

It reads the whole tree: run it once per audit (a cron job, after a disk was replaced), not
on every ingest.
"""
from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

import requests
import urllib3
from hdfs import HdfsError, InsecureClient

from pipeline.config import HDFS_USER, INGEST_THREADS, MANIFEST_NAME, WEBHDFS_URL
from pipeline.data import manifest, rules
from pipeline.data.manifest import ManifestRow
from pipeline.data.rules import Skipped
from pipeline.data.tree import TreeError
from pipeline.fs.webhdfs import CONNECTION_ERRORS, HdfsUnreachable, connect, parse_destination
from pipeline.runtime.progress import ProgressCallback

log = logging.getLogger(__name__)

#: What a transfer that a DataNode breaks off mid-stream raises (it sent the headers, then
#: failed to read the block: every replica it tried failed its checksum, or none is left).
_BROKEN_TRANSFER = (urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError)
#: Reads of 1 MiB: a film's bytes are hashed as they arrive, never held whole.
_CHUNK = 1 << 20
MISSING = "missing on HDFS"


def other_size(actual: int, expected: int) -> str:
    return f"{actual:,} bytes on HDFS, the manifest says {expected:,}"


OTHER_BYTES = "sha256 of the HDFS copy differs from the manifest's (other bytes than ingested)"


@dataclass
class Audit:
    """What ``verify`` found; ``summary()`` is the line the CLI prints."""

    uri: str
    checked: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    #: Each film that is missing, unreadable, or holds other bytes than the manifest says.
    bad: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.checked} films checked against {MANIFEST_NAME}, {len(self.bad)} bad | "
                f"{self.bytes_read / 1e6:.1f} MB read in {self.seconds:.1f} s")


def verify(dest_uri: str, *, threads: int = INGEST_THREADS, user: str = HDFS_USER,
           webhdfs_url: str = WEBHDFS_URL,
           on_progress: ProgressCallback | None = None) -> Audit:
    """Read every film ``dest_uri``'s manifest lists and compare it with its row.

    Raises TreeError when there is no readable manifest (nothing to check against),
    DestinationError or HdfsUnreachable; per-film problems end up in ``Audit.bad``.
    """
    started = time.monotonic()
    dest = parse_destination(dest_uri, webhdfs_url)
    client = connect(dest, user, threads)
    rows = _manifest(client, dest.child(MANIFEST_NAME), dest_uri)
    audit = Audit(dest_uri)
    total = sum(r.bytes for r in rows)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = {pool.submit(_check, client, dest.child(row.path), row): row for row in rows}
        try:
            for future in as_completed(futures):
                row = futures[future]
                problem, read = future.result()
                audit.checked += 1
                audit.bytes_read += read
                if problem:
                    audit.bad.append(Skipped(row.path, problem))
                if on_progress:
                    on_progress(audit.checked, len(rows), audit.bytes_read)
        except CONNECTION_ERRORS as err:
            pool.shutdown(wait=False, cancel_futures=True)
            raise HdfsUnreachable(f"HDFS stopped answering at {dest.webhdfs_url} after "
                                  f"{audit.checked} of {len(rows)} films "
                                  f"({type(err).__name__}); re-run the audit") from err
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    audit.bad.sort(key=lambda s: s.path)
    audit.seconds = time.monotonic() - started
    log.info("verified %s: %d films, %.1f of %.1f MB read, %d bad, %.1f s", dest_uri,
             audit.checked, audit.bytes_read / 1e6, total / 1e6, len(audit.bad), audit.seconds)
    return audit


def _manifest(client: InsecureClient, path: str, uri: str) -> list[ManifestRow]:
    try:
        with client.read(path) as reader:
            data = reader.read()
    except HdfsError as err:
        raise TreeError(f"no manifest to verify against at {uri} ({err}); ingest writes "
                        f"{MANIFEST_NAME}") from None
    try:
        return sorted(manifest.from_csv(data).values(), key=lambda r: r.path)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise TreeError(f"{uri}/{MANIFEST_NAME} is not a manifest ({err})") from None


def _check(client: InsecureClient, path: str, row: ManifestRow) -> tuple[str | None, int]:
    """(why the HDFS copy of ``row`` is bad or None, bytes read); runs in a worker thread."""
    try:
        sha256, size = _read(client, path)
    except HdfsError as err:
        if err.exception == "FileNotFoundException":
            return MISSING, 0
        return rules.unreadable(str(err).splitlines()[0]), 0
    except _BROKEN_TRANSFER:
        return rules.HDFS_CHECKSUM, 0
    if size != row.bytes:
        return other_size(size, row.bytes), size
    return (OTHER_BYTES if sha256 != row.sha256 else None), size


def _read(client: InsecureClient, path: str) -> tuple[str, int]:
    """sha256 (hex) and size of the file at ``path``. A transfer broken off is tried once
    more before it counts: it may have been the network."""
    try:
        return _hash(client, path)
    except _BROKEN_TRANSFER:
        return _hash(client, path)


def _hash(client: InsecureClient, path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with client.read(path, chunk_size=_CHUNK) as chunks:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def log_audit(audit: Audit) -> None:
    """Name every bad film, and what to do about it."""
    for item in audit.bad:
        log.error("bad %s: %s", item.path, item.reason)
    if audit.bad:
        log.error("%d film(s) of %s have no good copy on HDFS: delete them there "
                  "(hdfs dfs -rm) and re-run ingest from the original tree to upload them again",
                  len(audit.bad), audit.uri)
