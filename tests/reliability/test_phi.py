"""Patient images are protected health information: what the pipeline leaves behind (logs,
reports, metrics, predictions, models, the ingest manifest, Spark's event logs and YARN's
container logs) carries file names and counts, never pixels or image metadata.

One tree whose films carry a patient's name and record number in their EXIF (and PNG text)
metadata, and random pixels that no plot or header could contain by chance, goes through
ingest, then train and evaluate on YARN; then DICOM films whose headers hold a patient's
identifiers, names and dates are screened by predict. Every byte they leave is searched for
those strings and for every 64-byte run of the films' file bytes, decoded pixels, and their
base64 forms. Predict's own outputs are the exception by design (a clinician must find the
patient: its tables carry the DICOM identifiers, its worklist the films), and are only
checked to be 750/640 like every output.

The same runs are the README's cluster commands as written (ingest to HDFS; train, evaluate
and predict on YARN): their report is read back from HDFS and their applications found in the
History Server with their named steps.
"""
from __future__ import annotations

import base64
import io
import json
import posixpath
import subprocess
import sys
import uuid

import numpy as np
import pyarrow as pa
import pytest
from hdfs import InsecureClient
from PIL import Image, PngImagePlugin

from pipeline import config
from pipeline.data.images import decode_bytes
from tests import dicoms
from tests.cluster_fixtures import completed_app, history
from tests.reliability.runner import LOCAL_ENV, job_command

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

#: What a hospital export's metadata holds: nothing of it may come out.
PATIENT = ("DOE^JANE^Q", "MRN-5550123-77", "St Elsewhere Radiology PHI-4471",
           *(value for value in dicoms.PATIENT.values()))
RUN = 64


def _film(rng: np.random.Generator, fmt: str) -> tuple[bytes, bytes]:
    """An encoded film with the patient in its metadata, and its decoded gray pixels."""
    pixels = rng.integers(0, 256, (72, 88), dtype=np.uint8)
    img = Image.fromarray(pixels, mode="L")
    exif = Image.Exif()
    exif[0x010E] = f"Chest AP {PATIENT[0]} {PATIENT[1]}"  # ImageDescription
    exif[0x013B] = PATIENT[2]  # Artist
    out = io.BytesIO()
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("PatientName", PATIENT[0])
        img.save(out, "PNG", exif=exif, pnginfo=text)
    else:
        img.save(out, "JPEG", quality=95, exif=exif, comment=PATIENT[1].encode())
    data = out.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("L")).tobytes()


def _windows(blob: bytes) -> set[bytes]:
    return {blob[i:i + RUN] for i in range(len(blob) - RUN + 1)}


def _b64_forms(blob: bytes) -> list[bytes]:
    """base64 of ``blob`` from each of the three byte alignments, so that any stretch of it
    encoded inside a larger base64 text shows up."""
    return [base64.b64encode(blob[shift:]) for shift in range(3)]


class Needles:
    """Every 64-byte run of the patients' bytes; ``found`` says where one occurs."""

    def __init__(self, films: list[tuple[bytes, bytes]]) -> None:
        self.runs: set[bytes] = set()
        for data, pixels in films:
            for blob in (data, pixels):
                for form in (blob, *_b64_forms(blob)):
                    self.runs |= _windows(form)

    def found(self, blob: bytes) -> str | None:
        for secret in PATIENT:
            if secret.encode() in blob:
                return f"metadata {secret!r}"
        for i in range(len(blob) - RUN + 1):
            if blob[i:i + RUN] in self.runs:
                return f"{RUN} bytes of a film at offset {i}"
        return None


def _event_log(name: str, data: bytes) -> bytes:
    """Spark 4 compresses event logs (zstd by default): searched as compressed bytes,
    they would hide anything."""
    if name.endswith(".zstd"):
        return pa.input_stream(pa.py_buffer(data), compression="zstd").read()
    assert "." not in name, f"event log {name}: compressed with a codec this test cannot read"
    return data


@pytest.fixture(scope="module")
def left_behind(spark_env, tmp_path_factory) -> tuple[dict[str, bytes], Needles, dict]:
    """Ingest, train and evaluate on YARN. Returns every log and output by name, the
    needles, and (type, permission) of everything in the model and report folders."""
    rng = np.random.default_rng(20240601)
    local = tmp_path_factory.mktemp("phi") / "chest_xray"
    films = []
    names = {"train/NORMAL": ["IM-0101-0001.jpeg", "IM-0102-0001.png", "IM-0103-0001.jpeg"],
             "train/PNEUMONIA": ["person101_virus_1.jpeg", "person102_bacteria_1.png",
                                 "person103_virus_1.jpeg"],
             "test/NORMAL": ["IM-0201-0001.jpeg"], "test/PNEUMONIA": ["person201_virus_1.png"]}
    for folder, files in names.items():
        for name in files:
            data, pixels = _film(rng, "PNG" if name.endswith(".png") else "JPEG")
            (local / folder).mkdir(parents=True, exist_ok=True)
            (local / folder / name).write_bytes(data)
            films.append((data, pixels))

    base = f"/tmp/xray-phi/{uuid.uuid4().hex[:8]}"
    uri = f"hdfs://{base}"
    outputs: dict[str, bytes] = {}
    client = InsecureClient(config.WEBHDFS_URL, user=config.HDFS_USER)
    env = dict(spark_env, PYTHONPATH=str(config.REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    try:
        ingest = subprocess.run([sys.executable, "jobs/ingest.py", str(local), f"{uri}/chest_xray"],
                                cwd=config.REPO_ROOT, env=LOCAL_ENV, capture_output=True,
                                timeout=600)
        assert ingest.returncode == 0, ingest.stderr[-3000:]
        outputs["ingest console"] = ingest.stdout + ingest.stderr
        one_executor = ("--conf", "spark.executor.instances=1")
        for job, args in (("train", ["--model-out", f"{uri}/model", "--weights", "none"]),
                          ("evaluate", ["--model", f"{uri}/model", "--out", f"{uri}/report"])):
            command = job_command(job, "--data", f"{uri}/chest_xray", *args, master="yarn",
                                  spark=one_executor)
            done = subprocess.run(command, cwd=config.REPO_ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=900)
            assert done.returncode == 0, done.stdout[-3000:].decode(errors="replace")
            outputs[f"{job} console"] = done.stdout
        rng_dicom = np.random.default_rng(7)
        for i, bits in enumerate((8, 12, 16)):
            pixels = rng_dicom.integers(0, 256, (80, 64), dtype=np.uint8)
            data = (dicoms.monochrome2_bytes(pixels, bits) if i != 2
                    else dicoms.monochrome1_bytes(pixels, bits))
            client.write(f"{base}/inbox/ward/{i}", data, overwrite=True)
            films.append((data, pixels.tobytes()))
            films.append((b"", decode_bytes(data, 299).tobytes()))
        client.write(f"{base}/inbox/lateral", dicoms.lateral_bytes(pixels), overwrite=True)
        command = job_command("predict", "--model", f"{uri}/model", "--input", f"{uri}/inbox",
                              "--out", f"{uri}/screen", "--heatmaps", "all", master="yarn",
                              spark=one_executor)
        done = subprocess.run(command, cwd=config.REPO_ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=900)
        assert done.returncode == 0, done.stdout[-3000:].decode(errors="replace")
        outputs["predict console"] = done.stdout
        for folder, _, files in client.walk(base):
            for name in files:
                if folder.startswith((f"{base}/inbox", f"{base}/screen")):
                    continue  # the films themselves, and predict's outputs (see above)
                if not folder.startswith(f"{base}/chest_xray/") or name.startswith("_"):
                    with client.read(posixpath.join(folder, name)) as reader:
                        outputs[f"hdfs {posixpath.join(folder, name)}"] = reader.read()
        with client.read(f"{base}/model/training_summary.json") as reader:
            apps = [json.load(reader)["spark"]["app_id"]]
        with client.read(f"{base}/report/metrics.json") as reader:
            apps.append(json.load(reader)["spark"]["app_id"])
        with client.read(f"{base}/screen/summary.json") as reader:
            screened = json.load(reader)
            apps.append(screened["spark"]["app_id"])
        assert screened["counts"]["scored"] == 3 and screened["counts"]["skipped"] == 1
        for app in apps:
            for path in (config.STATE_DIR / "yarn" / "logs" / app).rglob("*"):
                if path.is_file():
                    outputs[f"container log {path}"] = path.read_bytes()
            for name in client.list("/spark-logs"):  # eventlog_v2_<app>/: rolling event logs
                if app in name:
                    for folder, _, files in client.walk(f"/spark-logs/{name}"):
                        for file in files:
                            with client.read(posixpath.join(folder, file)) as reader:
                                outputs[f"event log {folder}/{file}"] = _event_log(file,
                                                                                   reader.read())
        modes = {}
        for top in ("model", "report", "screen"):
            for (folder, status), _, files in client.walk(f"{base}/{top}", status=True):
                modes[folder] = (status["type"], status["permission"])
                modes.update({posixpath.join(folder, name): (s["type"], s["permission"])
                              for name, s in files})
    finally:
        client.delete(base, recursive=True)
    return outputs, Needles(films), modes


def test_the_search_finds_patient_bytes(left_behind):
    """The control: the same search does find a film's pixels, file bytes and metadata."""
    _, needles, _ = left_behind
    assert needles.found(f"uid={dicoms.PATIENT['StudyInstanceUID']}".encode())
    assert needles.found(dicoms.PATIENT["PatientName"].encode())
    film, raw = _film(np.random.default_rng(20240601), "JPEG")  # the tree's first film
    assert needles.found(b"log line " + film[300:364] + b" more")
    assert needles.found(b"pixels " + raw[1000:1100])
    assert needles.found(b"<img src='data:image/png;base64," + base64.b64encode(raw)[40:200])
    assert needles.found(f"tag: {PATIENT[1]}".encode())


def test_nothing_left_behind_holds_pixels_or_metadata(left_behind):
    outputs, needles, _ = left_behind
    kinds = {name.split(" ")[0] + " " + name.split(" ")[1] for name in outputs}
    # What was searched: every console, the outputs, and both applications' worker and event logs.
    assert {"ingest console", "train console", "evaluate console", "predict console",
            "container log", "event log"} <= kinds, sorted(outputs)
    assert len([n for n in outputs if n.startswith("container log")]) >= 6
    assert len({n.split("/")[2] for n in outputs if n.startswith("event log")}) == 3
    assert any(n.endswith("/report/report.html") for n in outputs)
    assert any(n.endswith("/model/training_summary.json") for n in outputs)
    assert any(n.endswith(config.MANIFEST_NAME) for n in outputs)
    leaks = {name: where for name, blob in outputs.items()
             if (where := needles.found(blob))}
    assert leaks == {}


def test_the_jobs_ran_on_yarn_and_the_history_server_shows_their_steps(left_behind):
    """The README's cluster commands as written: the report read back from HDFS grades the
    tree's test films with the model's threshold, and the History Server lists each
    application as completed, with its named pipeline steps."""
    outputs, _, _ = left_behind

    def read(suffix: str) -> dict:
        return json.loads(next(blob for name, blob in outputs.items() if name.endswith(suffix)))
    summary, report = read("/model/training_summary.json"), read("/report/metrics.json")
    assert report["spark"]["master"] == summary["spark"]["master"] == "yarn"
    assert report["data"].startswith("hdfs://") and report["split"] == "test"
    assert report["metrics"]["counts"]["total"] == 2  # test/NORMAL and test/PNEUMONIA: 1 each
    assert report["metrics"]["threshold"] == pytest.approx(summary["threshold"])
    in_report = {name.split("/report/", 1)[1].split("/")[0] for name in outputs if "/report/" in name}
    assert in_report >= {"metrics.json", "report.html", "roc.png", "confusion_matrix.png",
                         "predictions.csv"}, in_report
    # (the scan steps list files on the driver and run no Spark job)
    # ("choose threshold" works on the validation scores "fit classifier" collected: no job)
    steps = {"train": {"featurize train", "fit classifier", "save model"},
             "evaluate": {"featurize test", "evaluate test"}}
    for job, app_id in (("train", summary["spark"]["app_id"]), ("evaluate", report["spark"]["app_id"])):
        assert completed_app(app_id)["name"] == f"xray-{job}"
        described = {j.get("description") for j in history(f"/applications/{app_id}/jobs")}
        assert steps[job] <= described, (job, described)


def test_model_and_report_on_hdfs_are_750_and_640(left_behind):
    _, _, modes = left_behind
    assert {perm for kind, perm in modes.values() if kind == "DIRECTORY"} == {"750"}, modes
    assert {perm for kind, perm in modes.values() if kind == "FILE"} == {"640"}, modes
