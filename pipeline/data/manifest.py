"""The two CSV files ingest keeps next to the images on HDFS.

``_manifest.csv`` (ManifestRow) is for readers: labels, patients for grouped splits, sizes,
duplicates to drop. The jobs read it as a table (``read_frame``) instead of listing the tree
film by film, when it still describes the tree (``pipeline.data.dataset``). Its rows hold only facts about the content (no times, no run ids), sorted
by path, so the same tree always gives the same bytes, however many runs it took to upload it.

``_ingest_state.csv`` (UploadRecord) is for ingest's next run: which HDFS file (inode id and
modification time) holds which bytes (sha256), as last verified. HDFS files change only by
replacement (new inode id) or append/truncate (new modification time), so a file whose id and
time still match its record needs no checksum request to be trusted.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import pandas as pd


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


@dataclass(frozen=True)
class UploadRecord:
    """The HDFS file at ``path`` held bytes with ``sha256`` when last verified."""

    path: str
    sha256: str
    file_id: int
    modification_time: int


Row = TypeVar("Row", ManifestRow, UploadRecord)

COLUMNS = tuple(f.name for f in dataclasses.fields(ManifestRow))


def mark_duplicates(rows: Iterable[ManifestRow]) -> list[ManifestRow]:
    """Rows sorted by path, each copy pointing at the first row with the same sha256."""
    first: dict[str, str] = {}
    marked = []
    for row in sorted(rows, key=lambda r: r.path):
        original = first.setdefault(row.sha256, row.path)
        marked.append(dataclasses.replace(row, duplicate_of="" if original == row.path
                                          else original))
    return marked


def to_csv(rows: Iterable[Row], row_type: type[Row] = ManifestRow) -> bytes:
    """UTF-8 CSV with a header, rows sorted by path, ``\\n`` line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(f.name for f in dataclasses.fields(row_type))
    writer.writerows(dataclasses.astuple(row) for row in sorted(rows, key=lambda r: r.path))
    return out.getvalue().encode("utf-8")


def from_csv(data: bytes, row_type: type[Row] = ManifestRow) -> dict[str, Row]:
    """``path -> row`` of a file written by ``to_csv``; ValueError if it is not one."""
    fields = dataclasses.fields(row_type)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    if reader.fieldnames and reader.fieldnames != [f.name for f in fields]:
        raise ValueError(f"columns {reader.fieldnames} are not those of {row_type.__name__}")
    ints = {f.name for f in fields if f.type == "int"}
    return {record["path"]: row_type(**{k: int(v) if k in ints else v
                                        for k, v in record.items()})
            for record in reader}


def read_frame(data: bytes, columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    """``columns`` of a manifest written by ``to_csv`` as a table (every value a string, as
    written): one parse in C, no object per row, for trees of a million films. ValueError if
    it is not a manifest."""
    import pandas as pd  # here: ingest imports this module, and needs no pandas

    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False,
                            encoding="utf-8", usecols=list(columns))
        header = pd.read_csv(io.BytesIO(data), nrows=0).columns
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"not a manifest ({err})") from None
    if tuple(header) != COLUMNS:
        raise ValueError(f"columns {list(header)} are not those of ManifestRow")
    return frame
