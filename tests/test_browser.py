"""The pages a clinician opens, opened in a real headless Chromium: the screening worklist and
the evaluation report. Every picture must decode, nothing may be fetched from outside, no
script may be needed, and the browser must report no error."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.data.rules import Skipped
from pipeline.data.sample_data import film
from pipeline.report.document import MetricsDocument
from pipeline.report.metrics import binary_metrics, roc_curve
from pipeline.report.page import write_metrics_report
from pipeline.report.worklist import (WorklistFilm, WorklistStudy, overlay_png, thumbnail_png,
                                      write_worklist)
from tests.browser import chromium, find_chromium, load

HOSTILE_ID = '<script>alert("id")</script>'


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def _scored(rng: np.random.Generator, uri: str, score: float, threshold: float,
            heatmap: bool = True) -> WorklistFilm:
    """A film with real pictures made by the worklist's own helpers."""
    pixels = np.asarray(film(rng, pneumonia=score > threshold))
    yy, xx = np.mgrid[0:7, 0:7]
    heat = np.exp(-((yy - rng.integers(1, 6)) ** 2 + (xx - rng.integers(1, 6)) ** 2) / 3)
    return WorklistFilm(uri, score, score > threshold, thumbnail_png(pixels),
                        overlay_png(pixels, heat) if heatmap else None)


def _studies(threshold: float) -> list[WorklistStudy]:
    rng = np.random.default_rng(7)

    def f(uri: str, score: float, **kw) -> WorklistFilm:
        return _scored(rng, f"file:/in/{uri}", score, threshold, **kw)

    return [
        WorklistStudy("file:/in/c.png", None, None, None, 0.20, False,
                      [f("c.png", 0.20, heatmap=False)]),
        WorklistStudy("1.2.9", "P-0042", "ACC-7", "1.2.9", 0.91, True,
                      [f("a1.dcm", 0.40), f("a2.dcm", 0.91)]),
        WorklistStudy("1.2.8", HOSTILE_ID, "ACC-8", None, 0.75, True, [f("b.jpeg", 0.75)]),
        WorklistStudy("file:/in/d.png", None, None, None, 0.05, False, [f("d.png", 0.05)]),
    ]


def _sizes(pngs: list[bytes | None]) -> list[tuple[int, int]]:
    return [Image.open(io.BytesIO(png)).size for png in pngs if png is not None]


def test_worklist_opens_with_every_picture_in_order(browser, tmp_path):
    studies = _studies(threshold=0.5)
    path = tmp_path / "worklist.html"
    write_worklist(path, studies, model_name="InceptionV3", model_uri="hdfs:///models/p",
                   method="featurizer+lr", weights="none", threshold=0.5, data="hdfs:///in",
                   threshold_source="set for 95% sensitivity on validation",
                   skipped=[Skipped("file:/in/e.jpeg", "empty file (0 bytes)")],
                   warnings=["2 films had no DICOM study UID"], max_images=4)
    shot = tmp_path / "worklist.png"
    page = load(browser, path, screenshot=shot)

    assert page.errors == [] and page.external == [] and page.scripts == 0
    assert page.title == "Pneumonia screening worklist: InceptionV3"
    # Page order: flagged studies by score (0.91 then 0.75), then the rest (0.20, 0.05); in a
    # study its films by score; pictures for the first 4 films only.
    by_uri = {film.uri: film for study in studies for film in study.films}
    order = ["a2.dcm", "a1.dcm", "b.jpeg", "c.png"]
    expected = _sizes([png for uri in order for png in (by_uri[f"file:/in/{uri}"].thumbnail_png,
                                                        by_uri[f"file:/in/{uri}"].overlay_png)])
    assert len(page.images) == len(expected) == 7 and page.broken_images == []
    assert [(img["width"], img["height"]) for img in page.images] == expected
    text = page.text
    positions = [text.index(s) for s in ("P-0042", HOSTILE_ID, "file:/in/c.png", "file:/in/d.png")]
    assert positions == sorted(positions)
    assert text.index("a2.dcm") < text.index("a1.dcm")
    assert "Films scored: 5 (flagged 2) · studies: 4 (flagged 2) · files skipped: 1" in text
    assert "threshold 0.5000 (set for 95% sensitivity on validation)" in text
    assert "randomly initialised network" in text
    assert "Pictures are shown for the first 4 of the 5 films listed" in text
    assert "file:/in/e.jpeg\tempty file (0 bytes)" in text
    assert "2 films had no DICOM study UID" in text
    assert Image.open(shot).size[0] == 1280


def test_trained_weights_show_no_banner(browser, tmp_path):
    path = tmp_path / "worklist.html"
    write_worklist(path, [], model_name="ResNet50", model_uri="file:/m", method="featurizer+lr",
                   weights="imagenet", threshold=0.3, data="file:/in")
    page = load(browser, path)
    assert page.errors == [] and page.images == []
    assert "randomly initialised" not in page.text and "Films scored: 0" in page.text


def test_evaluation_report_opens_with_both_plots(browser, tmp_path):
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.6, 0.8, 0.9])
    fpr, tpr, _ = roc_curve(labels, scores)
    # Built field by field: MetricsDocument.build only adds the Spark application's id, and a
    # browser test has no reason to start Spark.
    doc = MetricsDocument(
        method="featurizer+lr", model_name="InceptionV3", weights="none", data="file:/d",
        model="file:/m", split="test", metrics=binary_metrics(labels, scores, 0.5),
        threshold_source="stored in the model", roc={"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        timings_s={"total": 2.0}, images_per_s=4.0, training={}, created="2026-01-01T00:00:00",
        spark={"app_id": "none", "master": "none"},
        skipped=[Skipped("file:/d/test/NORMAL/x.jpeg", "empty file (0 bytes)")])
    write_metrics_report(tmp_path, doc)
    page = load(browser, tmp_path / "report.html")

    assert page.errors == [] and page.external == [] and page.scripts == 0
    assert page.title == "Pneumonia screening evaluation: InceptionV3"
    assert page.broken_images == []
    assert [(img["alt"], img["width"], img["height"]) for img in page.images] == [
        (name, *Image.open(tmp_path / f"{name}.png").size) for name in ("confusion_matrix", "roc")]
    assert "Of 4 films with pneumonia, 3 were flagged" in page.text
    assert "Of 4 normal films, 3 were cleared" in page.text
    assert "randomly initialised network" in page.text
    assert "file:/d/test/NORMAL/x.jpeg: empty file (0 bytes)" in page.text


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The harness itself: a corrupt picture, an outside resource and a failing script are seen."""
    path = tmp_path / "broken.html"
    path.write_text('<!doctype html><title>broken</title><body><p>x</p>'
                    '<img alt="corrupt" src="data:image/png;base64,iVBORw0KGgoAAAA">'
                    '<img alt="outside" src="https://example.invalid/a.png">'
                    '<script>throw new Error("boom")</script></body>')
    page = load(browser, path)
    assert [img["alt"] for img in page.broken_images] == ["corrupt", "outside"]
    assert page.external == ["https://example.invalid/a.png"]
    assert page.scripts == 1 and any("boom" in error for error in page.errors)


def test_no_chromium_fails_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("chromium") is None
    with pytest.raises(pytest.fail.Exception, match="run `make browser`"):
        find_chromium()
