"""The one metrics document: built from labels and scores, stored, read back and checked."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data.rules import Duplicate, Skipped
from pipeline.report.document import SCHEMA, MetricsDocument
from pipeline.report.metrics import binary_metrics


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
