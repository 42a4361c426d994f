"""Screening new films (jobs/predict.py) on real local Spark: both kinds of model, films of
any layout recognised by content (JPEG, PNG, DICOM), exact class activation maps, Grad-CAM,
the output tables and the worklist in a real browser."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pyspark.ml import PipelineModel

from jobs import predict as predict_job
from pipeline.data.dataset import read_images, scan_tree
from pipeline.data.images import decode_bytes
from pipeline.config import REPO_ROOT
from pipeline.data.sample_data import write_tree
from pipeline.featurizer.classifier import pneumonia_score
from pipeline.featurizer.model_store import calibrated_probabilities, load_model
from pipeline.featurizer.summary import TrainConfig
from pipeline.featurizer.training import train
from pipeline.finetune.models import build_model
from pipeline.predict.heatmaps import grad_cam, split_at_maps
from pipeline.predict.models import load_screening_model
from pipeline.predict.scoring import _Scorer, heatmap_name
from pipeline.report.document import MetricsDocument
from pipeline.runtime.cli import run_job
from tests import dicoms
from tests import reasons as R
from tests.batchnorm import trained_statistics
from tests.browser import chromium, load


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "chest_xray"
    write_tree(root, scale=1, seed=11)
    return root


@pytest.fixture(scope="module")
def model_uri(spark, tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    train(spark, TrainConfig(data=str(tree), model_out=str(out / "model"), weights="none",
                             features_cache=str(out / "features")))
    return str(out / "model")


@pytest.fixture(scope="module")
def inbox(tree, tmp_path_factory):
    """New films as a PACS export or a ward's folder holds them: nested, no suffixes, DICOM
    beside JPEG and PNG, and a few files that are not usable films."""
    root = tmp_path_factory.mktemp("inbox")
    films = sorted((tree / "test").rglob("*.jpeg"))[:8]
    for i, path in enumerate(films):
        folder = root / f"ward{i % 2}" / f"day{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / f"film{i}")  # no suffix: judged by content
    png = io.BytesIO()
    Image.open(films[0]).save(png, "PNG")
    (root / "ward0" / "scan.png.bin").write_bytes(png.getvalue())
    pixels = dicoms.film()
    (root / "pacs").mkdir()
    (root / "pacs" / "1.dcm").write_bytes(dicoms.monochrome2_bytes(pixels, 12))
    (root / "pacs" / "2").write_bytes(dicoms.monochrome1_bytes(pixels, 16))
    (root / "pacs" / "lateral").write_bytes(dicoms.lateral_bytes(pixels))
    (root / "notes.txt").write_text("not a film")
    cut = films[1].read_bytes()
    (root / "ward1" / "cut.jpeg").write_bytes(cut[:len(cut) // 2])
    (root / ".hidden.jpeg").write_bytes(films[2].read_bytes())
    return root


def _predict(*argv: str) -> None:
    run_job(predict_job.main, predict_job.parser(), ["--master", "local[2]", *argv])


@pytest.fixture(scope="module")
def screened(model_uri, inbox, tmp_path_factory):
    out = tmp_path_factory.mktemp("screen") / "out"
    _predict("--model", model_uri, "--input", str(inbox), "--out", str(out), "--heatmaps", "all")
    return out


def test_class_activation_map_mean_is_the_models_logit(spark, tree, model_uri):
    """The map is exact: its spatial mean plus the intercept is the logit Spark's saved
    PipelineModel computes from the pooled features, film by film."""
    listing = scan_tree(spark, str(tree), ("val",))
    spark_scores = (PipelineModel.load(model_uri).transform(read_images(spark, listing, "binaryFile"))
                    .select("path", pneumonia_score().alias("p")).orderBy("path").toPandas())
    model = load_screening_model(spark, model_uri)
    scorer = _Scorer(model.worker)
    films = [decode_bytes(open(p.removeprefix("file:"), "rb").read(), scorer.size)
             for p in spark_scores["path"]]
    maps = scorer.runner.outputs(films)
    assert maps.ndim == 4 and maps.shape[1] > 1  # spatial maps, not pooled features
    scores, cams = scorer.score(films)
    spark_logits = np.log(spark_scores["p"] / (1 - spark_scores["p"]))
    cam_logits = np.array([c.mean() for c in cams])
    assert np.abs(cam_logits - spark_logits).max() < 1e-4
    assert np.allclose(scores, spark_scores["p"], atol=1e-5)
    assert cams[0].shape == maps.shape[1:3]
    assert np.ptp(cams[0]) > 0  # a map, not a constant


def test_predict_scores_every_film_by_content(screened, model_uri, spark, inbox):
    table = pd.read_parquet(screened / "predictions.parquet").set_index("uri")
    names = {u.rpartition("/")[2]: row for u, row in table.iterrows()}
    assert len(table) == 14  # every file but the hidden one
    assert ".hidden.jpeg" not in names
    assert {names[f"film{i}"]["format"] for i in range(8)} == {"jpeg"}
    assert names["scan.png.bin"]["format"] == "png" and names["1.dcm"]["format"] == "dicom"
    assert names["notes.txt"]["skip_reason"] == R.NOT_JPEG_OR_PNG
    assert names["cut.jpeg"]["skip_reason"].startswith(R.UNDECODABLE)
    assert names["lateral"]["skip_reason"] == R.DICOM_LATERAL
    scored = table[table["skip_reason"].isna()]
    assert len(scored) == 11 and scored["score"].between(0, 1).all()
    threshold = load_screening_model(spark, model_uri).threshold
    assert (scored["threshold"] == threshold).all() and (scored["model"] == model_uri).all()
    assert (scored["flagged"] == (scored["score"] > threshold)).all()
    # the calibrated probability the model stored with its training (Platt): same ranking
    want = calibrated_probabilities(load_model(spark, model_uri), scored["score"].to_numpy())
    assert np.allclose(scored["probability"], want)
    # The same bytes score the same whatever their name or container: film0 was copied from
    # the PNG's source JPEG, and DICOM 1 and 2 hold the same pixels, inverted and 16-bit in 2.
    assert names["1.dcm"]["score"] == pytest.approx(names["2"]["score"], abs=1e-3)
    assert names["1.dcm"]["patient_id"] == dicoms.PATIENT["PatientID"]
    assert names["1.dcm"]["study_instance_uid"] == dicoms.PATIENT["StudyInstanceUID"]
    assert pd.isna(names["film0"]["patient_id"])
    for uri, row in scored.iterrows():
        assert row["heatmap"] == heatmap_name(uri)
        with Image.open(screened / row["heatmap"]) as overlay:
            assert overlay.format == "PNG" and min(overlay.size) > 0


def test_predict_matches_evaluate_scores(screened, model_uri, spark, tree, inbox):
    """A film's score is the one the trained PipelineModel gives it."""
    table = pd.read_parquet(screened / "predictions.parquet")
    film0 = table[table["uri"].str.endswith("/film0")].iloc[0]
    images = spark.read.format("binaryFile").load(film0["uri"])
    want = PipelineModel.load(model_uri).transform(
        images.withColumnRenamed("content", "image")).select(pneumonia_score()).first()[0]
    assert film0["score"] == pytest.approx(want, abs=1e-5)


def test_outputs_agree(screened):
    table = pd.read_parquet(screened / "predictions.parquet")
    csv = pd.read_csv(screened / "predictions.csv")
    assert sorted(csv["uri"]) == sorted(table["uri"])
    assert np.allclose(csv.set_index("uri").loc[table["uri"], "score"].fillna(-1),
                       table["score"].fillna(-1))
    studies = pd.read_parquet(screened / "studies.parquet")
    # the two DICOM films share one study; every other scored film is its own
    assert len(studies) == 10
    dicom_study = studies[studies["study"] == dicoms.PATIENT["StudyInstanceUID"]].iloc[0]
    assert dicom_study["films"] == 2
    scored = table[table["study_instance_uid"] == dicoms.PATIENT["StudyInstanceUID"]]
    assert dicom_study["score"] == pytest.approx(scored["score"].max())
    summary = json.loads((screened / "summary.json").read_text())
    assert summary["counts"]["films"] == 14 and summary["counts"]["skipped"] == 3
    assert summary["counts"]["studies"] == 10
    assert summary["counts"]["flagged"] == int(table["flagged"].sum())


def test_worklist_opens_in_a_browser(screened, tmp_path):
    with chromium() as browser:
        page = load(browser, screened / "worklist.html", screenshot=tmp_path / "worklist.png")
    assert not page.errors and not page.external and not page.broken_images
    assert len(page.images) >= 20  # a thumbnail and an overlay for each scored film
    assert "Pneumonia screening worklist" in page.title
    assert R.DICOM_LATERAL in page.text and dicoms.PATIENT["AccessionNumber"] in page.text


@pytest.mark.parametrize("arch,size", [("cnn", 64), ("inceptionv3", 75)])
def test_finetuned_model_scores_with_grad_cam(spark, tree, tmp_path, arch, size):
    """A model.keras with the metrics.json its run wrote: its threshold, Keras' own scores,
    and Grad-CAM maps that vary over the film. The InceptionV3 is scored with its base's
    batch normalizations (given trained-like statistics) folded, Keras' scores unfolded."""
    run = tmp_path / "finetune-run"
    run.mkdir()
    network = build_model(arch, size)
    trained_statistics(network, seed=9)
    network.save(run / "model.keras")
    doc = MetricsDocument.build(spark, labels=np.array([0, 1, 1, 0]), scores=np.array([.2, .7, .6, .4]),
                                threshold=0.5, method=f"finetune-{arch}", model_name=arch,
                                weights="none", data=str(tree), model=str(run / "model.keras"),
                                split="validation", threshold_source="test", timings_s={},
                                images_per_s=0.0, training={})
    (run / "metrics.json").write_text(doc.to_json())
    inbox = tmp_path / "in"
    inbox.mkdir()
    films = sorted((tree / "val").rglob("*.jpeg"))
    for path in films:
        shutil.copyfile(path, inbox / path.name)
    out = tmp_path / "out"
    _predict("--model", str(run), "--input", str(inbox), "--out", str(out), "--heatmaps", "all")
    table = pd.read_parquet(out / "predictions.parquet").sort_values("uri")
    pixels = np.stack([decode_bytes(p.read_bytes(), size) for p in sorted(films)]).astype("float32")
    want = network.predict_on_batch(pixels).ravel()
    assert np.allclose(table["score"], want, atol=1e-5)
    assert (table["threshold"] == 0.5).all() and table["heatmap"].notna().all()
    body, head = split_at_maps(network)
    scores, maps = grad_cam(body, head, pixels)
    assert np.allclose(scores, want, atol=1e-5) and maps.shape[0] == len(films)
    assert (maps >= 0).all()


def test_unknown_model_is_one_clear_line(tmp_path, capsys, inbox):
    with pytest.raises(SystemExit) as exit_:
        _predict("--model", str(tmp_path / "nothing"), "--input", str(inbox),
                 "--out", str(tmp_path / "o"))
    assert exit_.value.code == 2
    assert "is not a saved PipelineModel" in capsys.readouterr().err


def _rows(out) -> pd.DataFrame:
    """The rows written so far (a batch still being written has only hidden files)."""
    table = out / "predictions.parquet"
    rows = pd.read_parquet(table) if table.exists() and any(table.rglob("*.parquet")) else None
    return rows if rows is not None and "uri" in rows else pd.DataFrame(columns=["uri"])


def _land(src, folder, name) -> float:
    """Drop a film in as a producer should (hidden name, then rename); when it landed."""
    hidden = folder / f".{name}"
    shutil.copyfile(src, hidden)
    hidden.rename(folder / name)
    return time.monotonic()


def _wait_for(out, name: str, timeout: float = 180) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(u.endswith(f"/{name}") for u in _rows(out)["uri"]):
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"{name} was not scored within {timeout}s")


@pytest.mark.slow
def test_watch_scores_films_as_they_land_and_resumes(model_uri, tree, tmp_path):
    """--watch: each film's row appears seconds after it lands; SIGTERM stops it cleanly
    (143); restarted, it scores only the films that arrived since, none twice."""
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    films = sorted((tree / "test").rglob("*.jpeg"))[:4]
    env = dict(os.environ, XRAY_WATCH_TRIGGER_S="1", PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "jobs/predict.py", "--master", "local[2]", "--model", model_uri,
               "--input", str(inbox), "--out", str(out), "--watch"]
    latencies = []
    for run, batch in enumerate((films[:3], films[3:])):
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 180
            while not (out / "_checkpoint").exists() and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stdout.read()[-3000:]
                time.sleep(0.5)
            for path in batch:
                landed = _land(path, inbox, path.name)
                latencies.append(_wait_for(out, path.name) - landed)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                log = proc.communicate(timeout=240)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"no exit 240 s after SIGTERM:\n{proc.communicate()[0][-6000:]}")
        assert proc.returncode == 143, log[-3000:]
    print(f"\nwatch latency, film landed -> row written: "
          f"{', '.join(f'{s:.1f}' for s in latencies)} s")
    table = _rows(out)
    assert sorted(u.rpartition("/")[2] for u in table["uri"]) == sorted(p.name for p in films)
    assert table["score"].notna().all()
    assert (out / "worklist.html").exists() and (out / "studies.csv").exists()


def test_csv_list_names_missing_films(model_uri, inbox, tmp_path):
    """A CSV list of URIs: a listed film that does not exist is a row with its reason."""
    listed = tmp_path / "films.csv"
    film = next((inbox / "ward0").rglob("film*"))
    listed.write_text(f"uri\n{film}\n{inbox / 'gone.jpeg'}\n")
    out = tmp_path / "out"
    _predict("--model", model_uri, "--input", str(listed), "--out", str(out), "--heatmaps", "none")
    table = pd.read_parquet(out / "predictions.parquet").set_index("uri")
    assert len(table) == 2
    gone = table[table.index.str.endswith("gone.jpeg")].iloc[0]
    assert gone["skip_reason"] == "file not found" and pd.isna(gone["score"])
    assert table["score"].notna().sum() == 1 and table["heatmap"].isna().all()
