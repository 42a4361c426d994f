"""Listing and reading a chest_xray tree: every file accepted or skipped with a reason."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.config import CLASSES, MANIFEST_NAME
from pipeline.data import dataset
from pipeline.data.dataset import (
    _hadoop_files,
    _hadoop_lister,
    _local_files,
    metadata,
    read_images,
    scan_tree,
    unread,
)
from pipeline.data.local_tree import local_lister
from pipeline.data.manifest import ManifestRow, to_csv
from pipeline.data.rules import Skipped
from pipeline.data.tree import TreeError, walk
from pipeline.runtime.session import releasing
from tests import reasons as R
from tests.trees import valid_tree, write_image


@pytest.fixture()
def messy_tree(tmp_path):
    root = tmp_path / "chest_xray"
    write_image(root / "train/NORMAL/IM-0001-0001.jpeg", 120, 100, "L", fmt="JPEG")
    write_image(root / "train/NORMAL/IM-0001-0002.png", 90, 80, "RGB")
    write_image(root / "train/PNEUMONIA/person3_virus_7.jpeg", 100, 130, "L", fmt="JPEG")
    write_image(root / "train/PNEUMONIA/person 4 é_bacteria_9.jpeg", 64, 64, "L", fmt="JPEG")
    write_image(root / "test/NORMAL/IM-0002-0001.jpeg", 70, 70, "L", fmt="JPEG")
    write_image(root / "train/COVID/x.jpeg", 50, 50, "L", fmt="JPEG")
    (root / ".DS_Store").write_bytes(b"\0\0")
    (root / "train/NORMAL/notes.txt").write_text("hello")
    (root / "train/NORMAL/empty.jpeg").write_bytes(b"")
    (root / "train/NORMAL/IM-0003-0001.jpeg").symlink_to(root / "train/NORMAL/IM-0001-0001.jpeg")
    # ingest's own files: not films, and not worth a line in any report
    (root / "_manifest.csv").write_text("path\n")
    (root / "_ingest_state.csv").write_text("path\n")
    return root


def test_scan_accepts_and_explains(spark, messy_tree):
    listing = scan_tree(spark, str(messy_tree), ("train",))
    names = {p.rsplit("/", 1)[1]: (s, lbl, pid) for p, s, lbl, pid, _ in listing.images.toPandas().itertuples(index=False)}
    assert names == {
        "IM-0001-0001.jpeg": ("train", 0.0, "IM-0001"),
        "IM-0001-0002.png": ("train", 0.0, "IM-0001"),
        "person3_virus_7.jpeg": ("train", 1.0, "person3"),
        "person 4 é_bacteria_9.jpeg": ("train", 1.0, "person 4 é_bacteria_9"),
    }
    base = listing.root
    assert {s.path: s.reason for s in listing.skipped} == {
        f"{base}/.DS_Store": R.HIDDEN,
        f"{base}/train/COVID": R.unknown_class_folder("COVID"),
        f"{base}/train/NORMAL/notes.txt": R.BAD_SUFFIX,
        f"{base}/train/NORMAL/empty.jpeg": R.EMPTY,
        f"{base}/train/NORMAL/IM-0003-0001.jpeg": R.LINK,
    }  # test/ is another split: neither read nor skipped


def test_missing_split_is_named(spark, messy_tree):
    with pytest.raises(TreeError, match=r"missing split folder\(s\) .*: val"):
        scan_tree(spark, str(messy_tree), ("val",))


def test_missing_root(spark, tmp_path):
    with pytest.raises(TreeError, match="does not exist"):
        scan_tree(spark, str(tmp_path / "nope"), ("train",))


@pytest.mark.parametrize("reader", ["binaryFile", "image"])
def test_both_readers_join_every_accepted_file(spark, messy_tree, reader):
    listing = scan_tree(spark, str(messy_tree), ("train",))
    rows = read_images(spark, listing, reader).select("path", "label", "patient_id").collect()
    assert sorted(r.path for r in rows) == sorted(listing.images.toPandas().path)


def _write_manifest(root: Path) -> None:
    """A manifest of every film under ``root``, as ingest writes one; its patients are marked
    so a test sees which listing a job used. The folders are dated a minute back first: a job
    trusts a manifest only if it is newer than every split and class folder, in ms, and on a
    fast machine the last film and the manifest can land in the same ms."""
    back = time.time() - 60
    for folder in [p for p in root.rglob("*") if p.is_dir()]:
        os.utime(folder, (back, back))
    rows = [ManifestRow(path=str(f.relative_to(root)), split=f.parts[-3],
                        label=CLASSES[f.parts[-2]], patient_id=f"from-manifest-{i}",
                        bytes=f.stat().st_size, sha256="0" * 64, hdfs_checksum="", width=32,
                        height=24, channels=1, mode="L")
            for i, f in enumerate(sorted(root.glob("*/*/*")))]
    (root / MANIFEST_NAME).write_bytes(to_csv(rows))


def test_a_manifest_that_describes_the_tree_lists_it(spark, tmp_path, caplog):
    root = valid_tree(tmp_path / "chest_xray", per_class=2, splits=("train", "test"))
    (root / "test" / "NORMAL" / "IM-0005-0001.jpeg").unlink()
    (root / "test" / "NORMAL" / "IM-0007-0001.jpeg").unlink()
    walked = scan_tree(spark, str(root), ("train", "test"))
    _write_manifest(root)

    listed = scan_tree(spark, str(root), ("train", "test"))
    listed.images, walked.images = listed.images.toPandas(), walked.images.toPandas()
    assert listed.images["patient_id"].str.startswith("from-manifest-").all()
    columns = ["path", "split", "label", "is_val"]
    assert listed.images[columns].sort_values("path").reset_index(drop=True).equals(
        walked.images[columns].sort_values("path").reset_index(drop=True))
    assert listed.skipped == walked.skipped == []
    assert listed.warnings == walked.warnings == [f"{walked.root}/test/NORMAL/: no images in class folder"]
    only_test = scan_tree(spark, str(root), ("test",)).images.toPandas()
    assert set(only_test["split"]) == {"test"} and len(only_test) == 2


def test_the_manifest_is_read_from_a_copy_that_goes_when_the_job_ends(spark, tmp_path):
    """Spark's file sources skip ``_manifest.csv`` by its name: the job streams a copy into
    its scratch folder (no Java list of every line on the driver) and removes it at its end."""
    root = valid_tree(tmp_path / "chest_xray", per_class=2, splits=("train",))
    _write_manifest(root)
    scratch = Path(spark.sparkContext._jvm.System.getProperty("user.home")) / ".xray-scratch"
    before = set(scratch.glob("*/manifest.csv"))
    with releasing():
        listing = scan_tree(spark, str(root), ("train",))
        copies = set(scratch.glob("*/manifest.csv")) - before
        assert [c.read_bytes() for c in copies] == [(root / MANIFEST_NAME).read_bytes()]
        assert [(c.stat().st_mode & 0o777, c.parent.stat().st_mode & 0o777) for c in copies] \
            == [(0o640, 0o750)]  # patient IDs: like every output
        assert listing.images.is_cached
        assert listing.images.filter("patient_id LIKE 'from-manifest-%'").count() == 4
    assert not any(c.parent.exists() for c in copies)
    assert not listing.images.is_cached


@pytest.mark.parametrize("change", ["litter", "new film", "appended", "moved"])
def test_a_tree_changed_after_its_manifest_is_walked(spark, tmp_path, change):
    root = valid_tree(tmp_path / "chest_xray", per_class=2, splits=("train",))
    _write_manifest(root)
    film = root / "train" / "NORMAL" / "IM-0001-0001.jpeg"
    if change == "litter":
        (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\0")
    elif change == "new film":
        write_image(root / "train" / "NORMAL" / "IM-0099-0001.jpeg", 40, 30, "L", fmt="JPEG")
    elif change == "appended":
        with film.open("ab") as f:  # same name, same folder time, another size
            f.write(b"\0" * 10)
    else:
        film.rename(root / "train" / "PNEUMONIA" / film.name)

    listing = scan_tree(spark, str(root), ("train",))
    films = listing.images.toPandas()
    assert not films["patient_id"].str.startswith("from-manifest-").any()
    expected = {"litter": [Skipped(f"{listing.root}/train/NORMAL/.DS_Store", R.HIDDEN)]}
    assert listing.skipped == expected.get(change, [])
    assert len(films) == {"new film": 5}.get(change, 4)


def test_bulk_hadoop_lister_sees_what_scandir_sees(spark, tmp_path):
    """The lister for HDFS (and any other Hadoop file system), tried on a local folder: the
    same entries as os.scandir, and the same again when a name defeats the bulk path."""
    folder = tmp_path / "folder"
    write_image(folder / "IM-0001-0001.jpeg", 30, 20, "L", fmt="JPEG")
    write_image(folder / "a b é #%20,;'x.png", 10, 10, "RGB")
    (folder / ".DS_Store").write_bytes(b"\0\0")
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "nested").mkdir()

    def entries(lister, base):
        return sorted((e.name, e.path, e.is_dir, e.size) for e in lister(base))

    base = f"file:{folder}"
    expected = entries(local_lister(folder.resolve(), "file:"), base)
    assert entries(_hadoop_lister(spark, base), base) == expected
    assert len(expected) == 5
    (folder / "line\nbreak.jpeg").write_bytes(b"x")  # the bulk text cannot be split: per entry
    expected = entries(local_lister(folder.resolve(), "file:"), base)
    assert entries(_hadoop_lister(spark, base), base) == expected
    assert len(expected) == 6


def test_a_film_that_cannot_be_read_is_named_not_fatal(spark, tmp_path):
    """``unread``: what the listing expected and the read did not deliver, with the reason a
    second read gives (here: the film went away between the listing and the read)."""
    root = valid_tree(tmp_path / "chest_xray", per_class=2, splits=("train",))
    listing = scan_tree(spark, str(root), ("train",))
    (root / "train" / "NORMAL" / "IM-0001-0001.jpeg").unlink()
    got = read_images(spark, listing).persist()
    assert got.count() == 3
    lost = unread(spark, metadata(spark, listing), got)
    assert [s.path for s in lost] == [f"{listing.root}/train/NORMAL/IM-0001-0001.jpeg"]
    assert lost[0].reason.startswith(R.UNREADABLE), lost[0].reason
    assert "FileNotFoundException" in lost[0].reason
    assert unread(spark, metadata(spark, listing), metadata(spark, listing)) == []


def test_the_class_folders_listed_in_the_jvm_are_judged_as_scandir_sees_them(spark, tmp_path):
    """``_hadoop_files`` (HDFS and any other Hadoop file system), tried on a local tree: the
    same rows as the local listing in Spark tasks, also when a name defeats the bulk text."""
    root = tmp_path / "chest_xray"
    write_image(root / "train/NORMAL/IM-0001-0001.jpeg", 30, 20, "L", fmt="JPEG")
    write_image(root / "train/NORMAL/a b é #%20,;'x.png", 10, 10, "RGB")
    (root / "train/NORMAL/.DS_Store").write_bytes(b"\0\0")
    (root / "train/NORMAL/empty.jpeg").write_bytes(b"")
    (root / "train/NORMAL/nested").mkdir()
    write_image(root / "train/PNEUMONIA/person1_virus_1.jpeg", 30, 20, "L", fmt="JPEG")
    (root / "train/PNEUMONIA/notes.txt").write_text("x")
    base = f"file:{root.resolve()}"
    folders = walk(base, local_lister(root.resolve(), "file:"), ("train",),
                   list_files=False).class_folders

    def rows(frame):
        return sorted((tuple(r) for r in frame.collect()), key=lambda r: r[1])

    expected = rows(_local_files(spark, base, folders))
    assert rows(_hadoop_files(spark, folders)) == expected
    assert [r[4] for r in expected].count(None) == 3 and len(expected) == 7
    (root / "train/PNEUMONIA/line\nbreak.jpeg").write_bytes(b"x")
    expected = rows(_local_files(spark, base, folders))
    assert rows(_hadoop_files(spark, folders)) == expected and len(expected) == 8


def test_skipped_files_beyond_the_cap_are_counted_not_named(spark, tmp_path, monkeypatch):
    root = valid_tree(tmp_path / "chest_xray", per_class=2, splits=("train",))
    for i in range(5):
        (root / "train" / "NORMAL" / f"notes{i}.txt").write_text("x")
    monkeypatch.setattr(dataset, "MAX_NAMED", 2)
    listing = scan_tree(spark, str(root), ("train",))
    assert listing.skipped == [Skipped(f"{listing.root}/train/NORMAL/notes{i}.txt", R.BAD_SUFFIX)
                               for i in range(2)]
    assert f"{listing.root}: 3 more skipped files not named (the first 2 by path are)" in \
        listing.warnings
    assert listing.images.count() == 4
