"""The manifest's CSV format and duplicate flagging."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline.data.manifest import (
    COLUMNS,
    ManifestRow,
    from_csv,
    mark_duplicates,
    read_frame,
    to_csv,
)


def row(path: str, sha256: str = "a" * 64, **changes) -> ManifestRow:
    """A plausible row; tests change what they look at."""
    base = ManifestRow(path=path, split="train", label=1, patient_id="person1", bytes=10,
                       sha256=sha256, hdfs_checksum="0000020000000000" + "f" * 32,
                       width=224, height=224, channels=3, mode="RGB")
    return dataclasses.replace(base, **changes)


def test_columns_are_the_documented_ones() -> None:
    assert COLUMNS == ("path", "split", "label", "patient_id", "bytes", "sha256",
                       "hdfs_checksum", "width", "height", "channels", "mode", "duplicate_of")


def test_round_trip_with_awkward_names() -> None:
    rows = [row('train/PNEUMONIA/a, "quoted" ünï 東京.jpeg', sha256="b" * 64),
            row("train/NORMAL/plain.jpeg", label=0, mode="I;16", channels=1)]
    data = to_csv(rows)
    assert data.splitlines()[0] == ",".join(COLUMNS).encode()
    back = from_csv(data)
    assert back == {r.path: r for r in rows}
    assert isinstance(back["train/NORMAL/plain.jpeg"].label, int)


def test_bytes_do_not_depend_on_row_order() -> None:
    rows = [row(f"train/NORMAL/{i}.jpeg", sha256=f"{i:064d}") for i in range(5)]
    assert to_csv(rows) == to_csv(reversed(rows))
    lines = to_csv(rows).decode().splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == [r.path for r in rows]


def test_duplicates_point_at_the_first_path() -> None:
    rows = [row("val/NORMAL/c.jpeg", sha256="1" * 64),
            row("train/NORMAL/b.jpeg", sha256="1" * 64),
            row("train/NORMAL/a.jpeg", sha256="2" * 64),
            row("train/PNEUMONIA/d.jpeg", sha256="1" * 64, duplicate_of="stale")]
    marked = {r.path: r.duplicate_of for r in mark_duplicates(rows)}
    assert marked == {"train/NORMAL/a.jpeg": "", "train/NORMAL/b.jpeg": "",
                      "train/PNEUMONIA/d.jpeg": "train/NORMAL/b.jpeg",
                      "val/NORMAL/c.jpeg": "train/NORMAL/b.jpeg"}


def test_foreign_csv_is_refused() -> None:
    with pytest.raises(ValueError, match="columns"):
        from_csv(b"path,label\nx.jpeg,1\n")


def test_read_frame_gives_the_rows_as_written() -> None:
    rows = [row('train/PNEUMONIA/a, "quoted" ünï 東京.jpeg', sha256="b" * 64),
            row("train/NORMAL/plain.jpeg", label=0, patient_id="NA")]
    frame = read_frame(to_csv(rows), ("path", "label", "patient_id", "bytes"))
    assert frame.to_dict("records") == [
        {"path": "train/NORMAL/plain.jpeg", "label": "0", "patient_id": "NA", "bytes": "10"},
        {"path": 'train/PNEUMONIA/a, "quoted" ünï 東京.jpeg', "label": "1",
         "patient_id": "person1", "bytes": "10"}]


@pytest.mark.parametrize("data", [b"", b"path\ntrain/NORMAL/a.jpeg\n", b"\xff\xfe"])
def test_read_frame_refuses_what_is_not_a_manifest(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a manifest|columns"):
        read_frame(data)
