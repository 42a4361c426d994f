"""Listing and reading a chest_xray tree: every file accepted or skipped with a reason."""
from __future__ import annotations

import pytest

from pipeline.data.dataset import read_images, scan_tree
from pipeline.data.tree import TreeError
from tests import reasons as R
from tests.trees import write_image


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
    names = {p.rsplit("/", 1)[1]: (s, lbl, pid) for p, s, lbl, pid, _ in listing.images.itertuples(index=False)}
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
    assert sorted(r.path for r in rows) == sorted(listing.images.path)
