"""Structural validation of a local tree: what is a candidate, what is rejected and why."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.data.tree import TreeError
from pipeline.ingest.tree_scan import scan_tree
from tests import reasons as R
from tests.trees import image_bytes, valid_tree, write


def reasons(root: Path, **kwargs) -> dict[str, str]:
    """rel_path -> reject reason of a scan."""
    return {r.path: r.reason for r in scan_tree(root, **kwargs).skipped}


def test_valid_tree_every_image_is_a_candidate(tmp_path: Path) -> None:
    scan = scan_tree(valid_tree(tmp_path))
    assert scan.splits == ("train", "val")
    assert [f.rel_path for f in scan.files] == sorted(f.rel_path for f in scan.files)
    assert len(scan.files) == 8
    assert scan.skipped == [] and scan.warnings == []
    first = scan.files[0]
    assert (first.split, first.class_name) == ("train", "NORMAL")
    assert first.size == (tmp_path / first.rel_path).stat().st_size


def test_missing_tree_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TreeError, match="does not exist"):
        scan_tree(tmp_path / "nope")


def test_tree_without_splits_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "NORMAL" / "a.jpeg", image_bytes())
    with pytest.raises(TreeError, match="no split folder"):
        scan_tree(tmp_path)


def test_required_split_missing_is_named(tmp_path: Path) -> None:
    valid_tree(tmp_path, splits=("train",))
    with pytest.raises(TreeError, match=r"missing split folder\(s\) .*: val, test$"):
        scan_tree(tmp_path, splits=["train", "val", "test"])


def test_file_named_like_a_split_is_not_one(tmp_path: Path) -> None:
    valid_tree(tmp_path, splits=("train",))
    write(tmp_path / "val", b"not a folder")
    assert reasons(tmp_path) == {"val": R.NOT_A_SPLIT}
    with pytest.raises(TreeError, match=r"missing split folder\(s\) .*: val$"):
        scan_tree(tmp_path, splits=["train", "val"])


def test_unknown_split_name_is_an_error(tmp_path: Path) -> None:
    valid_tree(tmp_path)
    with pytest.raises(TreeError, match="unknown split"):
        scan_tree(tmp_path, splits=["training"])


def test_only_requested_splits_are_scanned(tmp_path: Path) -> None:
    scan = scan_tree(valid_tree(tmp_path), splits=["val"])
    assert {f.split for f in scan.files} == {"val"}
    assert scan.warnings == ["train/: split not requested, not ingested"]


def test_bad_entries_are_rejected_with_reasons(tmp_path: Path) -> None:
    valid_tree(tmp_path)
    cls = tmp_path / "train" / "NORMAL"
    write(tmp_path / ".DS_Store", b"x")
    write(cls / ".DS_Store", b"x")
    write(cls / "notes.txt", b"a note")
    write(cls / "empty.jpeg", b"")
    write(cls / "nested" / "a.jpeg", image_bytes())
    write(tmp_path / "train" / "OTHER" / "a.jpeg", image_bytes())
    write(tmp_path / "train" / "loose.jpeg", image_bytes())
    write(tmp_path / "extra" / "a.jpeg", image_bytes())
    write(tmp_path / "README.md", b"hi")
    write(cls / "a:b.jpeg", image_bytes())
    got = reasons(tmp_path)
    assert got == {
        ".DS_Store": R.HIDDEN,
        "train/NORMAL/.DS_Store": R.HIDDEN,
        "train/NORMAL/notes.txt": R.BAD_SUFFIX,
        "train/NORMAL/empty.jpeg": R.EMPTY,
        "train/NORMAL/nested": R.NESTED_FOLDER,
        "train/OTHER": R.unknown_class_folder("OTHER"),
        "train/loose.jpeg": R.OUTSIDE_CLASS_FOLDER,
        "extra": R.NOT_A_SPLIT,
        "README.md": R.NOT_A_SPLIT,
        "train/NORMAL/a:b.jpeg": R.COLON,
    }
    assert len(scan_tree(tmp_path).files) == 8


def test_empty_and_missing_class_folders_warn(tmp_path: Path) -> None:
    valid_tree(tmp_path, splits=("train",))
    (tmp_path / "val" / "NORMAL").mkdir(parents=True)
    write(tmp_path / "val" / "NORMAL" / ".hidden.jpeg", image_bytes())
    scan = scan_tree(tmp_path)
    assert scan.warnings == ["val/NORMAL/: no images in class folder",
                             "val/PNEUMONIA/: class folder missing"]
    assert [r.path for r in scan.skipped] == ["val/NORMAL/.hidden.jpeg"]


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    root = valid_tree(tmp_path / "chest_xray")
    outside = write(tmp_path / "secret.jpeg", image_bytes(seed=99))
    cls = root / "train" / "NORMAL"
    (cls / "out.jpeg").symlink_to(outside)
    (cls / "outdir").symlink_to(tmp_path, target_is_directory=True)
    (cls / "dangling.jpeg").symlink_to(cls / "gone.jpeg")
    inside = sorted(cls.iterdir())[0]
    (cls / "in.jpeg").symlink_to(inside)
    got = reasons(root)
    assert got == {
        "train/NORMAL/out.jpeg": R.LINK_OUTSIDE,
        "train/NORMAL/outdir": R.LINK_OUTSIDE,
        "train/NORMAL/dangling.jpeg": R.LINK_BROKEN,
        "train/NORMAL/in.jpeg": R.LINK,  # its target is ingested under its own name
    }
    assert inside.relative_to(root).as_posix() in {f.rel_path for f in scan_tree(root).files}


def test_odd_file_kinds_and_names(tmp_path: Path) -> None:
    valid_tree(tmp_path)
    cls = tmp_path / "train" / "PNEUMONIA"
    os.mkfifo(cls / "pipe.jpeg")
    write(cls / "with space ünïcode 東京.jpeg", image_bytes(seed=50))
    write(cls / "UPPER.JPG", image_bytes(seed=51))
    bad_name = os.fsencode(cls) + b"/bad\xff.jpeg"
    with open(bad_name, "wb") as out:
        out.write(image_bytes(seed=52))
    scan = scan_tree(tmp_path)
    got = {r.path: r.reason for r in scan.skipped}
    assert got.pop("train/PNEUMONIA/pipe.jpeg") == R.NOT_REGULAR
    assert list(got.values()) == [R.NOT_UTF8]
    names = {f.rel_path for f in scan.files}
    assert {"train/PNEUMONIA/with space ünïcode 東京.jpeg", "train/PNEUMONIA/UPPER.JPG"} <= names
