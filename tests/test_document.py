"""The one metrics document: built from labels and scores, stored, read back and checked."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data.rules import Duplicate, Skipped
from pipeline.report.calibration import fit_platt
from pipeline.report.document import SCHEMA, MetricsDocument, ScoredPart
from pipeline.report.metrics import binary_metrics
from pipeline.report.page import write_metrics_report


def _doc(spark) -> MetricsDocument:
    return MetricsDocument.build(
        spark, labels=np.array([0, 0, 1, 1, 1]), scores=np.array([0.1, 0.6, 0.4, 0.7, 0.9]),
        threshold=0.5, method="featurizer+lr", model_name="VGG16", weights="none",
        data="file:/d", model="file:/m", split="test", threshold_source="stored in the model",
        timings_s={"total": 1.5}, images_per_s=3.3, training={},
        skipped=[Skipped("file:/d/test/NORMAL/x.jpeg", "empty file (0 bytes)")],
        duplicates=[Duplicate("file:/d/b.jpeg", "file:/d/a.jpeg")],
        warnings=["file:/d/test/NORMAL/: no images in class folder"])


def test_build_computes_metrics_and_roc_from_scores(spark):
    doc = _doc(spark)
    assert doc.metrics == binary_metrics(np.array([0, 0, 1, 1, 1]),
                                         np.array([0.1, 0.6, 0.4, 0.7, 0.9]), 0.5)
    assert doc.roc["fpr"][0] == 0.0 and doc.roc["tpr"][-1] == 1.0
    assert doc.schema == SCHEMA and doc.spark["app_id"] == spark.sparkContext.applicationId


def test_round_trip_keeps_every_field(spark):
    doc = _doc(spark)
    back = MetricsDocument.from_json(doc.to_json(), "metrics.json")
    assert back == doc and back.skipped[0].reason == "empty file (0 bytes)"


@pytest.mark.parametrize("damage,message", [
    (lambda d: d.pop("roc"), "missing roc"),
    (lambda d: d["metrics"].pop("specificity"), "missing metrics.specificity"),
    (lambda d: d.update(schema="xray-metrics/0"), "schema 'xray-metrics/0'"),
])
def test_a_damaged_document_is_refused_by_name(spark, damage, message):
    raw = json.loads(_doc(spark).to_json())
    damage(raw)
    with pytest.raises(ValueError, match=f"runs/a/metrics.json is not an {SCHEMA} document.*{message}"):
        MetricsDocument.from_json(json.dumps(raw), "runs/a/metrics.json")


def test_not_json_is_refused_by_name():
    with pytest.raises(ValueError, match="m.json is not JSON"):
        MetricsDocument.from_json(b"{oops", "m.json")


def _full_doc(spark) -> MetricsDocument:
    """A document with every optional part: patients (from the film names), bootstrap,
    calibration and operating points."""
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 40, size=120)
    labels = (patients % 3 != 0).astype(int)  # a patient's films share the label
    scores = 1 / (1 + np.exp(-(2 * labels - 1 + rng.normal(size=120))))
    paths = [f"file:/d/test/{'PNEUMONIA' if y else 'NORMAL'}/person{p}_virus_{i}.jpeg" if y else
             f"file:/d/test/NORMAL/IM-{p:04d}-{i:04d}.jpeg" for i, (p, y) in
             enumerate(zip(patients, labels))]
    val = ScoredPart(labels[::-1].copy(), np.clip(scores + 0.05, 0, 1))
    return MetricsDocument.build(
        spark, labels=labels, scores=scores, threshold=0.5, paths=paths, validation=val,
        method="featurizer+lr", model_name="VGG16", weights="none", data="file:/d",
        model="file:/m", split="test", threshold_source="stored in the model",
        timings_s={"total": 1.5}, images_per_s=3.3, training={})


def test_patients_bootstrap_calibration_and_operating_points(spark, tmp_path):
    doc = _full_doc(spark)
    p = doc.patients["metrics"]
    assert p["counts"]["total"] < doc.metrics["counts"]["total"]
    for level in ("film", "patient"):
        lo, hi = doc.bootstrap[level]["roc_auc"]
        point = doc.metrics["roc_auc"] if level == "film" else p["roc_auc"]
        assert lo <= point <= hi
    assert [o["target_sensitivity"] for o in doc.operating_points] == [0.9, 0.95, 0.98]
    assert doc.calibration["brier"]["raw"] >= 0 and doc.calibration["calibrator"]["fitted_on"] == 120
    back = MetricsDocument.from_json(doc.to_json(), "metrics.json")
    assert back == doc
    write_metrics_report(tmp_path, doc)
    page = (tmp_path / "report.html").read_text()
    assert "per patient" in page and "Operating points" in page and "Brier" in page
    assert page.count("data:image/png;base64,") == 3  # confusion, ROC, reliability


def test_patient_figures_follow_the_any_film_rule(spark):
    doc = _full_doc(spark)
    paths = ["file:/d/test/NORMAL/IM-0001-0001.jpeg", "file:/d/test/NORMAL/IM-0001-0002.jpeg",
             "file:/d/test/PNEUMONIA/person7_virus_1.jpeg", "file:/d/test/PNEUMONIA/person7_virus_2.jpeg"]
    small = MetricsDocument.build(
        spark, labels=np.array([0, 0, 1, 1]), scores=np.array([0.2, 0.7, 0.1, 0.9]), threshold=0.5,
        paths=paths, **{k: getattr(doc, k) for k in ("method", "model_name", "weights", "data",
                                                     "model", "split", "threshold_source",
                                                     "timings_s", "images_per_s", "training")})
    cm = small.patients["metrics"]["confusion_matrix"]
    # IM-0001: max 0.7 > 0.5 -> a false positive; person7: max 0.9 -> caught
    assert (cm["tp"], cm["fp"], cm["tn"], cm["fn"]) == (1, 1, 0, 0)
    # per film the same threshold gives 1 tp, 1 fp, 1 tn, 1 fn
    assert small.metrics["confusion_matrix"]["fn"] == 1


def test_a_document_written_before_the_optional_parts_still_reads(spark):
    raw = json.loads(_doc(spark).to_json())
    for key in ("patients", "bootstrap", "calibration", "operating_points"):
        raw.pop(key)
    doc = MetricsDocument.from_json(json.dumps(raw), "old/metrics.json")
    assert doc.patients is None and doc.calibration is None and doc.operating_points == []


def test_a_given_calibrator_is_used_not_refitted(spark):
    doc = _full_doc(spark)
    cal = fit_platt(np.array([0, 1, 0, 1]), np.array([0.2, 0.6, 0.4, 0.9]))
    again = MetricsDocument.build(
        spark, labels=np.array([0, 1]), scores=np.array([0.3, 0.8]), threshold=0.5,
        calibrator=cal, **{k: getattr(doc, k) for k in ("method", "model_name", "weights", "data",
                                                        "model", "split", "threshold_source",
                                                        "timings_s", "images_per_s", "training")})
    assert again.calibration["calibrator"] == cal.to_dict() and again.operating_points == []
