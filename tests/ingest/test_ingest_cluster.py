"""Ingest against the real HDFS: what lands where, re-runs, changed files, crashes, the CLI."""
from __future__ import annotations

import os
import posixpath
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hdfs import InsecureClient

from pipeline.data.rules import Duplicate
from pipeline.config import HDFS_USER, MANIFEST_NAME, STATE_NAME
from pipeline.fs.hdfs_checksum import ChecksumKind, file_checksum, reported_checksum
from pipeline.ingest.upload import Report, ingest
from pipeline.data.manifest import ManifestRow, UploadRecord, from_csv
from tests import reasons as R
from tests.cli import COMMAND, ENV, assert_one_line_error, run_cli, unused_port
from tests.trees import image_bytes, valid_tree, write

pytestmark = pytest.mark.cluster

VALID = 13
REJECTED = {
    "train/NORMAL/.DS_Store": R.HIDDEN,
    "train/NORMAL/notes.txt": R.BAD_SUFFIX,
    "train/NORMAL/text.jpeg": R.NOT_JPEG_OR_PNG,
    "train/NORMAL/zero.jpeg": R.EMPTY,
    "train/PNEUMONIA/truncated.jpeg": R.UNDECODABLE,
    "train/OTHER": R.unknown_class_folder("OTHER"),
    "train/PNEUMONIA/outside.jpeg": R.LINK_OUTSIDE,
    "val/NORMAL/empty": R.NESTED_FOLDER,
}
UNICODE = "train/NORMAL/with space ünï 東京.jpeg"
#: Characters that mean something in URLs: they must reach HDFS as part of the name.
URL_CHARS = "train/PNEUMONIA/odd #%20?+;&=,'name.jpeg"


def messy_tree(base: Path) -> Path:
    """8 plain images, 5 unusual valid ones (one a duplicate), and one of each bad kind."""
    root = valid_tree(base / "chest_xray")
    normal, pneumonia = root / "train" / "NORMAL", root / "train" / "PNEUMONIA"
    write(normal / UNICODE.rsplit("/", 1)[1], image_bytes(seed=60))
    write(pneumonia / URL_CHARS.rsplit("/", 1)[1], image_bytes(seed=66))
    write(normal / "IM-0900-0001.png", image_bytes(mode="I;16", fmt="PNG", seed=61))
    write(pneumonia / "person900_virus_1.jpeg", image_bytes(mode="CMYK", seed=62))
    write(pneumonia / "copy.jpeg", (normal / "IM-0001-0001.jpeg").read_bytes())
    write(normal / ".DS_Store", b"\0\0\0\1Bud1")
    write(normal / "notes.txt", b"see radiology report")
    write(normal / "text.jpeg", b"not really a jpeg\n")
    write(normal / "zero.jpeg", b"")
    write(pneumonia / "truncated.jpeg", image_bytes(width=200, height=200, seed=63)[:900])
    write(root / "train" / "OTHER" / "a.jpeg", image_bytes(seed=64))
    (pneumonia / "outside.jpeg").symlink_to(write(base / "secret.jpeg", image_bytes(seed=65)))
    (root / "val" / "NORMAL" / "empty").mkdir()
    (root / "test" / "NORMAL").mkdir(parents=True)
    return root


def run(tree: Path, hdfs_dir: str, threads: int = 4) -> Report:
    """One ingest into ``hdfs_dir`` through the library API."""
    return ingest(tree, f"hdfs://{hdfs_dir}", threads=threads)


def read(hdfs: InsecureClient, path: str) -> bytes:
    """The bytes of an HDFS file."""
    with hdfs.read(path) as reader:
        return reader.read()


def manifest_of(hdfs: InsecureClient, hdfs_dir: str) -> dict[str, ManifestRow]:
    """The manifest ingest wrote, parsed."""
    return from_csv(read(hdfs, f"{hdfs_dir}/{MANIFEST_NAME}"))


def hdfs_files(hdfs: InsecureClient, hdfs_dir: str) -> dict[str, dict]:
    """Every file under ``hdfs_dir``, by path relative to it, with its FileStatus."""
    found = {}
    for folder, _, files in hdfs.walk(hdfs_dir, status=True):
        for name, status in files:
            found[posixpath.relpath(posixpath.join(folder[0], name), hdfs_dir)] = status
    return found


def test_first_run_uploads_valid_images_and_lists_rejects(tmp_path: Path, hdfs: InsecureClient,
                                                          hdfs_dir: str) -> None:
    tree = messy_tree(tmp_path)
    report = run(tree, hdfs_dir)

    assert (report.uploaded, report.skipped, report.failures) == (VALID, 0, [])
    reasons = {r.path: r.reason for r in report.rejects}
    assert set(reasons) == set(REJECTED)
    for path, fragment in REJECTED.items():
        assert fragment in reasons[path], (path, reasons[path])
    assert report.duplicates == [Duplicate("train/PNEUMONIA/copy.jpeg", "train/NORMAL/IM-0001-0001.jpeg")]
    assert {"test/NORMAL/: no images in class folder",
            "test/PNEUMONIA/: class folder missing"} <= set(report.warnings)

    files = hdfs_files(hdfs, hdfs_dir)
    rows = manifest_of(hdfs, hdfs_dir)
    assert set(files) == set(rows) | {MANIFEST_NAME, STATE_NAME}
    assert len(rows) == VALID and {UNICODE, URL_CHARS} <= set(rows)
    records = from_csv(read(hdfs, f"{hdfs_dir}/{STATE_NAME}"), UploadRecord)
    assert records == {path: UploadRecord(path, row.sha256, files[path]["fileId"],
                                          files[path]["modificationTime"])
                       for path, row in rows.items()}
    for path, row in rows.items():
        local = (tree / path).read_bytes()
        assert read(hdfs, f"{hdfs_dir}/{path}") == local
        assert row.bytes == len(local) == files[path]["length"]
        assert row.hdfs_checksum == reported_checksum(hdfs.checksum(f"{hdfs_dir}/{path}"))
        assert row.label == (1 if "/PNEUMONIA/" in path else 0)
        assert row.split == path.split("/")[0]
    assert (rows["train/NORMAL/IM-0900-0001.png"].mode,
            rows["train/NORMAL/IM-0900-0001.png"].channels) == ("I;16", 1)
    assert (rows["train/PNEUMONIA/person900_virus_1.jpeg"].mode,
            rows["train/PNEUMONIA/person900_virus_1.jpeg"].channels) == ("CMYK", 4)
    assert rows["train/PNEUMONIA/person900_virus_1.jpeg"].patient_id == "person900"
    assert (rows["val/NORMAL/IM-0005-0001.jpeg"].width,
            rows["val/NORMAL/IM-0005-0001.jpeg"].height) == (32, 24)
    assert rows["train/PNEUMONIA/copy.jpeg"].duplicate_of == "train/NORMAL/IM-0001-0001.jpeg"
    assert rows["train/NORMAL/IM-0001-0001.jpeg"].duplicate_of == ""


def test_permissions(tmp_path: Path, hdfs: InsecureClient, hdfs_dir: str) -> None:
    run(valid_tree(tmp_path), hdfs_dir)
    for folder in ("", "train", "train/NORMAL", "val/PNEUMONIA"):
        status = hdfs.status(posixpath.join(hdfs_dir, folder))
        assert (folder, status["type"], status["permission"]) == (folder, "DIRECTORY", "750")
        assert status["owner"] == HDFS_USER
    for path, status in hdfs_files(hdfs, hdfs_dir).items():
        assert (path, status["permission"]) == (path, "640")


def test_rerun_uploads_nothing_and_keeps_the_manifest(tmp_path: Path, hdfs: InsecureClient,
                                                      hdfs_dir: str) -> None:
    tree = messy_tree(tmp_path)
    run(tree, hdfs_dir)
    first = read(hdfs, f"{hdfs_dir}/{MANIFEST_NAME}")
    report = run(tree, hdfs_dir)
    assert (report.uploaded, report.skipped, report.bytes_uploaded) == (0, VALID, 0)
    assert {r.path for r in report.rejects} == set(REJECTED)
    assert read(hdfs, f"{hdfs_dir}/{MANIFEST_NAME}") == first


def test_ingesting_one_split_keeps_the_others_in_the_manifest(tmp_path: Path,
                                                              hdfs: InsecureClient,
                                                              hdfs_dir: str) -> None:
    """``--splits train`` after a full ingest re-checks train and leaves val's rows and upload
    records as they were (they were dropped, so the next val run re-checksummed every file)."""
    tree = valid_tree(tmp_path)
    run(tree, hdfs_dir)
    manifest_before = read(hdfs, f"{hdfs_dir}/{MANIFEST_NAME}")
    state_before = read(hdfs, f"{hdfs_dir}/{STATE_NAME}")
    report = ingest(tree, f"hdfs://{hdfs_dir}", splits=["train"], threads=4)
    assert (report.uploaded, report.skipped) == (0, 4)
    assert read(hdfs, f"{hdfs_dir}/{MANIFEST_NAME}") == manifest_before
    assert read(hdfs, f"{hdfs_dir}/{STATE_NAME}") == state_before


def test_changed_local_file_is_the_only_upload(tmp_path: Path, hdfs: InsecureClient,
                                               hdfs_dir: str) -> None:
    tree = valid_tree(tmp_path)
    run(tree, hdfs_dir)
    before = manifest_of(hdfs, hdfs_dir)
    changed = "train/PNEUMONIA/person2_bacteria_0.jpeg"
    new_bytes = image_bytes(seed=1000)
    (tree / changed).write_bytes(new_bytes)

    report = run(tree, hdfs_dir)
    assert (report.uploaded, report.skipped) == (1, 7)
    after = manifest_of(hdfs, hdfs_dir)
    assert read(hdfs, f"{hdfs_dir}/{changed}") == new_bytes
    assert {p for p in after if after[p] != before[p]} == {changed}
    assert after[changed].hdfs_checksum == reported_checksum(hdfs.checksum(f"{hdfs_dir}/{changed}"))


def test_same_size_change_is_detected(tmp_path: Path, hdfs: InsecureClient,
                                      hdfs_dir: str) -> None:
    """Sizes alone would miss this: one byte of image data flipped, length unchanged."""
    tree = valid_tree(tmp_path)
    run(tree, hdfs_dir)
    changed = tree / "val/NORMAL/IM-0005-0001.jpeg"
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    report = run(tree, hdfs_dir)
    assert report.rejects == []  # this flip leaves a decodable JPEG (the test tree is seeded)
    assert (report.uploaded, report.skipped) == (1, 7)
    assert read(hdfs, f"{hdfs_dir}/val/NORMAL/IM-0005-0001.jpeg") == bytes(data)


def test_replaced_hdfs_copy_of_the_same_size_is_uploaded_again(
        tmp_path: Path, hdfs: InsecureClient, hdfs_dir: str) -> None:
    """The upload record must not vouch for a file someone else replaced on HDFS."""
    tree = valid_tree(tmp_path)
    run(tree, hdfs_dir)
    victim = "train/NORMAL/IM-0003-0001.jpeg"
    original = (tree / victim).read_bytes()
    hdfs.write(f"{hdfs_dir}/{victim}", bytes(len(original)), overwrite=True)
    report = run(tree, hdfs_dir)
    assert (report.uploaded, report.skipped) == (1, 7)
    assert read(hdfs, f"{hdfs_dir}/{victim}") == original


def test_unreadable_state_falls_back_to_checksums(tmp_path: Path, hdfs: InsecureClient,
                                                  hdfs_dir: str) -> None:
    tree = valid_tree(tmp_path)
    run(tree, hdfs_dir)
    hdfs.write(f"{hdfs_dir}/{STATE_NAME}", b"\xff\xfe garbage", overwrite=True)
    report = run(tree, hdfs_dir)
    assert (report.uploaded, report.skipped) == (0, 8)
    assert [w for w in report.warnings if w.startswith(STATE_NAME)] != []
    assert from_csv(read(hdfs, f"{hdfs_dir}/{STATE_NAME}"), UploadRecord).keys() == \
        manifest_of(hdfs, hdfs_dir).keys()


def test_corrupted_local_file_is_rejected_and_reported(tmp_path: Path, hdfs: InsecureClient,
                                                       hdfs_dir: str) -> None:
    tree = valid_tree(tmp_path)
    run(tree, hdfs_dir)
    corrupted = "train/NORMAL/IM-0001-0001.jpeg"
    (tree / corrupted).write_bytes((tree / corrupted).read_bytes()[:300])
    report = run(tree, hdfs_dir)
    assert (report.uploaded, report.skipped) == (0, 7)
    assert [r.path for r in report.rejects] == [corrupted]
    assert any(w.startswith(f"{corrupted}: HDFS copy from an earlier run") for w in
               report.warnings)
    assert corrupted not in manifest_of(hdfs, hdfs_dir)


def big_tree(root: Path, count: int) -> Path:
    """``count`` distinct small images in train/ (enough for a run to be interrupted)."""
    for i in range(count):
        cls = "NORMAL" if i % 2 else "PNEUMONIA"
        write(root / "train" / cls / f"IM-{i:04d}-0001.jpeg", image_bytes(seed=i))
    return root


def interrupted(tree: Path, hdfs: InsecureClient, hdfs_dir: str, sig: int) -> tuple[int, str]:
    """Run the ingest CLI into ``hdfs_dir``, send ``sig`` once 20 files are on HDFS, and
    return its exit status and stderr."""
    proc = subprocess.Popen([*COMMAND, str(tree), f"hdfs://{hdfs_dir}", "--threads", "2"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        folder = f"{hdfs_dir}/train/NORMAL"
        listing = hdfs.list(folder) if hdfs.status(folder, strict=False) else []
        if len([name for name in listing if not name.startswith(".")]) >= 20:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_sigterm_stops_with_one_line_and_no_partial_file(tmp_path: Path, hdfs: InsecureClient,
                                                         hdfs_dir: str) -> None:
    """The contract of every entry point: 143 and one line; uploads already under way finish
    under their temporary names and are renamed, so nothing half-written is left."""
    tree = big_tree(tmp_path / "chest_xray", 120)
    code, err = interrupted(tree, hdfs, hdfs_dir, signal.SIGTERM)
    assert code == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM"), err[-3000:]
    assert "Traceback" not in err
    left = hdfs_files(hdfs, hdfs_dir)
    assert 20 <= len(left) < 120 and MANIFEST_NAME not in left, "not stopped midway"
    assert not [p for p in left if posixpath.basename(p).startswith(".")], "temp files left"


def test_crash_then_rerun_uploads_only_what_is_missing(tmp_path: Path, hdfs: InsecureClient,
                                                       hdfs_dir: str) -> None:
    total = 120
    tree = big_tree(tmp_path / "chest_xray", total)
    interrupted(tree, hdfs, f"{hdfs_dir}/crashed", signal.SIGKILL)
    present = {p for p in hdfs_files(hdfs, f"{hdfs_dir}/crashed")
               if not posixpath.basename(p).startswith(".")}
    assert 20 <= len(present) < total, "the run was not interrupted midway"
    assert MANIFEST_NAME not in present

    resumed = run(tree, f"{hdfs_dir}/crashed")
    assert (resumed.uploaded, resumed.skipped) == (total - len(present), len(present))
    left = hdfs_files(hdfs, f"{hdfs_dir}/crashed")
    assert not [p for p in left if posixpath.basename(p).startswith(".")], "temp files left"

    fault_free = run(tree, f"{hdfs_dir}/clean")
    assert fault_free.uploaded == total
    assert (read(hdfs, f"{hdfs_dir}/crashed/{MANIFEST_NAME}")
            == read(hdfs, f"{hdfs_dir}/clean/{MANIFEST_NAME}"))


@pytest.mark.parametrize("size", [1, 511, 512, 513, 4096, 100_001])
def test_local_checksum_matches_hdfs(hdfs: InsecureClient, hdfs_dir: str, size: int) -> None:
    data = os.urandom(size)
    hdfs.write(f"{hdfs_dir}/f", data, overwrite=True)
    remote = hdfs.checksum(f"{hdfs_dir}/f")
    kind = ChecksumKind.from_algorithm(remote["algorithm"])
    assert file_checksum(data, hdfs.status(f"{hdfs_dir}/f")["blockSize"], kind) \
        == reported_checksum(remote)


def test_local_checksum_matches_hdfs_over_several_blocks(hdfs: InsecureClient,
                                                         hdfs_dir: str) -> None:
    block = 1024 * 1024  # HDFS's smallest allowed block size
    data = os.urandom(2 * block + 12345)
    hdfs.write(f"{hdfs_dir}/f", data, blocksize=block)
    remote = hdfs.checksum(f"{hdfs_dir}/f")
    assert remote["algorithm"] == f"MD5-of-{block // 512}MD5-of-512CRC32C"
    assert file_checksum(data, block, ChecksumKind.from_algorithm(remote["algorithm"])) \
        == reported_checksum(remote)


def test_cli_lists_rejects_and_summarises(tmp_path: Path, hdfs_dir: str) -> None:
    result = run_cli(str(messy_tree(tmp_path)), f"hdfs://{hdfs_dir}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ingest: uploaded {VALID}, skipped 0, rejected "
                                    f"{len(REJECTED)}, failed 0, duplicates flagged 1 | ")
    for path, fragment in REJECTED.items():
        assert f"rejected {path}: " in result.stderr and fragment in result.stderr
    assert ("duplicate train/PNEUMONIA/copy.jpeg is byte-identical to "
            "train/NORMAL/IM-0001-0001.jpeg") in result.stderr
    assert "Traceback" not in result.stderr


def test_namenode_uri_with_a_dead_port_does_not_reach_the_live_cluster(
        tmp_path: Path, hdfs: InsecureClient, hdfs_dir: str) -> None:
    """WebHDFS answers on localhost, but the URI names an RPC port nothing listens on."""
    uri = f"hdfs://localhost:{unused_port()}{hdfs_dir}"
    started = time.monotonic()
    result = run_cli(str(valid_tree(tmp_path)), uri)
    assert time.monotonic() - started < 30
    assert_one_line_error(result, "HDFS unreachable", uri)
    assert hdfs.status(hdfs_dir, strict=False) is None
