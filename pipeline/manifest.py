"""The dataset manifest: one CSV row per ingested image, stored next to the images on HDFS.

It is what later stages read instead of listing HDFS (labels, patients for grouped splits,
duplicates to drop) and what a re-run of ingest compares against to skip unchanged files.
Rows hold only facts about the content (no times, no run ids), sorted by path, so the same
tree always gives the same bytes, however many runs it took to upload it.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ManifestRow:
    """One image. ``path`` is relative to the manifest's directory (POSIX)."""

    path: str
    split: str
    label: int
    patient_id: str
    bytes: int
    sha256: str
    #: HDFS's own file checksum (hex of the FileChecksum bytes, as ``hdfs dfs -checksum``
    #: prints it): lets a re-run check the HDFS copy without reading it.
    hdfs_checksum: str
    width: int
    height: int
    channels: int
    mode: str
    #: Path of the byte-identical image this one copies (the first in path order), or "".
    duplicate_of: str = ""


COLUMNS = tuple(f.name for f in dataclasses.fields(ManifestRow))
_INT_COLUMNS = {f.name for f in dataclasses.fields(ManifestRow) if f.type == "int"}


def mark_duplicates(rows: Iterable[ManifestRow]) -> list[ManifestRow]:
    """Rows sorted by path, each copy pointing at the first row with the same sha256."""
    first: dict[str, str] = {}
    marked = []
    for row in sorted(rows, key=lambda r: r.path):
        original = first.setdefault(row.sha256, row.path)
        marked.append(dataclasses.replace(row, duplicate_of="" if original == row.path
                                          else original))
    return marked


def to_csv(rows: Iterable[ManifestRow]) -> bytes:
    """UTF-8 CSV with a header, rows sorted by path, ``\\n`` line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: r.path):
        writer.writerow(dataclasses.astuple(row))
    return out.getvalue().encode("utf-8")


def from_csv(data: bytes) -> dict[str, ManifestRow]:
    """``path -> row`` of a manifest written by ``to_csv``; ValueError if it is not one."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"manifest columns {reader.fieldnames} are not {list(COLUMNS)}")
    rows = {}
    for record in reader:
        values = {k: int(v) if k in _INT_COLUMNS else v for k, v in record.items()}
        rows[record["path"]] = ManifestRow(**values)
    return rows
