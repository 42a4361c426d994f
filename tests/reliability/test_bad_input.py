"""Messy hospital exports through the train and evaluate jobs: each job completes, names every
bad item with its reason, and processes everything else.

The per-file rules have unit tests (test_tree_scan, test_images, test_dataset, test_image_check,
and tests/ingest for the ingest tool); this is the job-level promise, on one tree holding one of
each kind of trouble. The jobs run through ``run_job`` on the shared local session.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
from hdfs import InsecureClient
from PIL import Image

from jobs import evaluate as evaluate_job
from jobs import train as train_job
from pipeline.config import HDFS_USER, MANIFEST_NAME, WEBHDFS_URL
from pipeline.data.manifest import from_csv
from tests import reasons as R
from tests.cli import run_cli
from tests.reliability.runner import run_in_process, scan_modes, submit
from tests.trees import image_bytes, valid_tree, write

pytestmark = pytest.mark.slow

UNICODE = "person 11 é 東京_virus_1.jpeg"

#: name below chest_xray/ -> the reason every program gives for leaving it out (a prefix where
#: Pillow's own words follow): the train and evaluate jobs for their split, ingest for both.
BAD = {
    **{f"{folder}/zero.jpeg": R.EMPTY for folder in ("train/NORMAL", "test/PNEUMONIA")},
    **{f"{folder}/.DS_Store": R.HIDDEN for folder in ("train/NORMAL", "test/PNEUMONIA")},
    "train/PNEUMONIA/._person1_bacteria_1.jpeg": R.HIDDEN,
    "train/COVID": R.unknown_class_folder("COVID"),
    "test/OTHER": R.unknown_class_folder("OTHER"),
    "train/NORMAL/outside.jpeg": R.LINK_OUTSIDE,
    "train/PNEUMONIA/outside-folder": R.LINK_OUTSIDE,
    **{f"{folder}/truncated.jpeg": R.UNDECODABLE for folder in ("train/NORMAL", "test/PNEUMONIA")},
    **{f"{folder}/text.jpeg": R.NOT_JPEG_OR_PNG for folder in ("train/NORMAL", "test/PNEUMONIA")},
    "train/NORMAL/huge.jpeg": R.over_pixel_limit(12000, 12000),
}
TRAIN_BAD = {name: why for name, why in BAD.items() if name.startswith("train/")}
TEST_BAD = {name: why for name, why in BAD.items() if name.startswith("test/")}
#: Listed as films, refused once their bytes are read.
BAD_CONTENT = (R.UNDECODABLE, R.NOT_JPEG_OR_PNG, R.over_pixel_limit(12000, 12000))
#: Decodable but unusual: PNG, 16-bit PNG, CMYK JPEG, a name with spaces and non-ASCII, a copy.
TRAIN_GOOD = [*(f"train/NORMAL/IM-{i:04d}-0001.jpeg" for i in range(1, 5)),
              *(f"train/PNEUMONIA/person{i}_bacteria_1.jpeg" for i in range(1, 5)),
              "train/NORMAL/IM-0010-0001.png", "train/NORMAL/IM-0011-0001.png",
              "train/PNEUMONIA/person10_virus_1.jpeg", f"train/PNEUMONIA/{UNICODE}",
              "train/PNEUMONIA/person5_virus_1.jpeg"]
TEST_GOOD = [*(f"test/PNEUMONIA/person{i}_virus_1.jpeg" for i in range(30, 33)),
             "test/PNEUMONIA/person33_virus_1.png", "test/PNEUMONIA/person34 ü_virus_1.jpeg"]


def _film(seed: int, **kw) -> bytes:
    return image_bytes(width=60 + seed % 7 * 9, height=50 + seed % 5 * 11, seed=seed, **kw)


def _bad_files(folder: Path) -> None:
    """The undecodable kinds a hospital export holds, and Finder's litter."""
    write(folder / "zero.jpeg", b"")
    write(folder / "truncated.jpeg", image_bytes(width=300, height=300, seed=99)[:1500])
    write(folder / "text.jpeg", b"Patient list exported 2024-01-01\n")
    write(folder / ".DS_Store", b"\0\0\0\1Bud1")


def messy_tree(base: Path) -> Path:
    root = base / "chest_xray"
    for i, rel in enumerate(TRAIN_GOOD[:8] + TEST_GOOD[:3]):
        write(root / rel, _film(i))
    write(root / "train/NORMAL/IM-0010-0001.png", _film(20, mode="RGB", fmt="PNG"))
    write(root / "train/NORMAL/IM-0011-0001.png", _film(21, mode="I;16", fmt="PNG"))
    write(root / "train/PNEUMONIA/person10_virus_1.jpeg", _film(22, mode="CMYK"))
    write(root / f"train/PNEUMONIA/{UNICODE}", _film(23))
    shutil.copy(root / "train/PNEUMONIA/person1_bacteria_1.jpeg",
                root / "train/PNEUMONIA/person5_virus_1.jpeg")
    write(root / "test/PNEUMONIA/person33_virus_1.png", _film(24, mode="I;16", fmt="PNG"))
    write(root / "test/PNEUMONIA/person34 ü_virus_1.jpeg", _film(25))

    _bad_files(root / "train/NORMAL")
    _bad_files(root / "test/PNEUMONIA")
    write(root / "train/PNEUMONIA/._person1_bacteria_1.jpeg", b"\0\5\26\7AppleDouble")
    write(root / "train/COVID/IM-0020-0001.jpeg", _film(26))
    write(root / "test/OTHER/person40_virus_1.jpeg", _film(27))
    (root / "test/NORMAL").mkdir()
    Image.new("L", (12000, 12000), 128).save(root / "train/NORMAL/huge.jpeg", quality=50)
    outside = base / "outside-secret"
    write(outside / "IM-0099-0001.jpeg", _film(28))
    (root / "train/NORMAL/outside.jpeg").symlink_to(outside / "IM-0099-0001.jpeg")
    (root / "train/PNEUMONIA/outside-folder").symlink_to(outside, target_is_directory=True)
    return root


def _by_name(entries: list[dict], root: Path, key: str = "reason") -> dict[str, str]:
    """Report entries keyed by their path below the tree's root."""
    return {e["path"].split(f"{root.name}/", 1)[1]: e[key] for e in entries}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return messy_tree(tmp_path_factory.mktemp("messy"))


@pytest.fixture(scope="module")
def runs(spark, tree):
    """train, then evaluate on the test split, as the job entry points run them."""
    root, out = tree, tree.parent / "out"
    train = run_in_process(train_job, ["--data", str(root), "--model-out", str(out / "model"),
                                       "--weights", "none"])
    evaluate = run_in_process(evaluate_job, ["--data", str(root), "--model", str(out / "model"),
                                             "--out", str(out / "report")])
    return root, out, train, evaluate


def test_train_completes_and_names_every_bad_item(runs):
    root, out, (code, stderr, logs), _ = runs
    assert code == 0, stderr[-3000:]
    summary = json.loads((out / "model/training_summary.json").read_text())
    reasons = _by_name(summary["images"]["skipped"], root)
    assert set(reasons) == set(TRAIN_BAD)
    for name, fragment in TRAIN_BAD.items():
        assert fragment in reasons[name], (name, reasons[name])
        assert f"{name}: " in logs  # the log names it too, with the reason
    assert "outside-secret" not in json.dumps(summary) + logs  # links were not followed


def test_train_uses_everything_else(runs):
    root, out, (code, stderr, logs), _ = runs
    summary = json.loads((out / "model/training_summary.json").read_text())
    undecodable = [n for n, why in TRAIN_BAD.items() if why in BAD_CONTENT]
    assert summary["images"]["listed"] == len(TRAIN_GOOD) + len(undecodable)
    assert summary["images"]["featurized"] == len(TRAIN_GOOD)
    assert sum(part["films"] for part in summary["split"].values()) == summary["images"]["listed"]


def test_train_warns_about_the_duplicate(runs):
    root, out, (_, _, logs), _ = runs
    summary = json.loads((out / "model/training_summary.json").read_text())
    assert _by_name(summary["images"]["duplicates"], root, "duplicate_of") == {
        "train/PNEUMONIA/person5_virus_1.jpeg": f"file:{root}/train/PNEUMONIA/person1_bacteria_1.jpeg"}
    assert "duplicate file:" in logs and "person5_virus_1.jpeg is byte-identical to" in logs


def test_evaluate_completes_names_every_bad_item_and_scores_the_rest(runs):
    root, out, _, (code, stderr, logs) = runs
    assert code == 0, stderr[-3000:]
    doc = json.loads((out / "report/metrics.json").read_text())
    reasons = _by_name(doc["skipped"], root)
    assert set(reasons) == set(TEST_BAD)
    for name, fragment in TEST_BAD.items():
        assert fragment in reasons[name], (name, reasons[name])
    with (out / "report/predictions.csv").open(encoding="utf-8") as f:
        scored = [row["path"].split(f"{root.name}/", 1)[1] for row in csv.DictReader(f)]
    assert sorted(scored) == sorted(TEST_GOOD)
    assert doc["metrics"]["counts"] == {"NORMAL": 0, "PNEUMONIA": len(TEST_GOOD),
                                        "total": len(TEST_GOOD)}
    page = (out / "report/report.html").read_text(encoding="utf-8")
    assert "test/PNEUMONIA/truncated.jpeg" in page and "person34 ü_virus_1.jpeg" not in page


def test_empty_class_folder_is_a_warning(runs):
    root, out, _, (_, _, logs) = runs
    doc = json.loads((out / "report/metrics.json").read_text())
    assert doc["warnings"] == [f"file:{root}/test/NORMAL/: no images in class folder"]
    assert f"file:{root}/test/NORMAL/: no images in class folder" in logs
    assert "no images in class folder" in (out / "report/report.html").read_text(encoding="utf-8")


def test_outputs_are_readable_by_owner_and_group_only(runs):
    _, out, _, _ = runs
    for folder in ("model", "report"):
        modes = {**scan_modes(out / folder), ".": ("dir", (out / folder).stat().st_mode & 0o777)}
        assert {mode for kind, mode in modes.values() if kind == "dir"} == {0o750}
        assert {mode for kind, mode in modes.values() if kind == "file"} == {0o640}


def test_image_reader_applies_the_limit_after_the_jvm_decodes(tmp_path):
    """Documented behaviour (README, Readers): Spark's image source decodes in the JVM, so an
    over-limit film costs its full size in executor memory before our limit refuses it. This
    one (65 Mpx, gray: 65 MB) fits a 1 GB heap; a 12000x12000 RGB film would not. Its own
    spark-submit: a heap filled by earlier tests would make the shared session's JVM the victim."""
    root = valid_tree(tmp_path / "chest_xray", per_class=4, splits=("train",))
    Image.new("L", (8100, 8000), 90).save(root / "train/PNEUMONIA/big.jpeg", quality=50)
    out = tmp_path / "model"
    code, output = submit("train", "--data", str(root), "--model-out", str(out),
                          "--weights", "none", "--reader", "image")
    assert code == 0, output[-3000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert _by_name(summary["images"]["skipped"], root) == {
        "train/PNEUMONIA/big.jpeg": R.over_pixel_limit(8100, 8000)}
    assert summary["images"]["featurized"] == 8


@pytest.mark.cluster
def test_ingest_names_every_bad_item_and_uploads_the_rest(cluster, tree):
    """The same tree through the ingest tool (tests/ingest has the per-kind checks)."""
    dest = f"/tmp/xray-reliability/{uuid.uuid4().hex[:8]}"
    try:
        result = run_cli(str(tree), f"hdfs://{dest}")
        assert result.returncode == 0, result.stderr[-3000:]
        rejected = dict(re.findall(r"rejected (.+?): (.+)", result.stderr))
        assert set(rejected) == set(BAD)
        for name, fragment in BAD.items():
            assert fragment in rejected[name], (name, rejected[name])
        client = InsecureClient(WEBHDFS_URL, user=HDFS_USER)
        with client.read(f"{dest}/{MANIFEST_NAME}") as reader:
            rows = from_csv(reader.read())
        assert sorted(rows) == sorted(TRAIN_GOOD + TEST_GOOD)
        assert rows["train/PNEUMONIA/person5_virus_1.jpeg"].duplicate_of == \
            "train/PNEUMONIA/person1_bacteria_1.jpeg"
        assert "test/NORMAL/: no images in class folder" in result.stderr
    finally:
        InsecureClient(WEBHDFS_URL, user=HDFS_USER).delete(dest, recursive=True)
