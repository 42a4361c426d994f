"""jobs/ensemble.py on run folders written the way the jobs write them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs import ensemble as ensemble_job
from pipeline.report.calibration import fit_platt
from pipeline.report.document import MetricsDocument
from pipeline.report.ensemble import ensemble
from pipeline.report.metrics import roc_auc, threshold_for_sensitivity
from pipeline.report.page import write_metrics_report
from pipeline.runtime.cli import run_job

RNG = np.random.default_rng(4)
#: 150 patients, 2 films each; a latent severity every run sees through its own noise
PATIENT = np.repeat(np.arange(150), 2)
LABEL = (PATIENT % 4 != 0).astype(int)
SUBSET = np.where(PATIENT < 60, "validation", "test")
PATHS = [f"file:/d/{'train' if s == 'validation' else 'test'}/"
         f"{'PNEUMONIA' if y else 'NORMAL'}/person{p}_virus_{i}.jpeg"
         for i, (p, y, s) in enumerate(zip(PATIENT, LABEL, SUBSET))]


def _run(spark, folder: Path, noise_seed: int, squash: float) -> pd.DataFrame:
    """A run folder: predictions.csv (subset, path, label, score, prediction) and its
    metrics.json, with scores of its own scale (``squash``)."""
    noise = np.random.default_rng(noise_seed).normal(size=len(LABEL)) * 1.2
    scores = 1 / (1 + np.exp(-squash * (2 * LABEL - 1 + noise)))
    frame = pd.DataFrame({"subset": SUBSET, "path": PATHS, "label": LABEL, "score": scores})
    val, test = frame[frame.subset == "validation"], frame[frame.subset == "test"]
    t = threshold_for_sensitivity(val.label, val.score, 0.95)
    folder.mkdir(parents=True)
    frame.assign(prediction=(frame.score > t).astype(int)).to_csv(folder / "predictions.csv", index=False)
    doc = MetricsDocument.build(spark, labels=test.label, scores=test.score, threshold=t,
                                method="featurizer+lr", model_name=folder.name, weights="none",
                                data="file:/d", model=str(folder), split="test",
                                threshold_source="validation", timings_s={"total": 1.0},
                                images_per_s=1.0, training={})
    write_metrics_report(folder, doc)
    return frame


def test_ensemble_writes_a_document_like_any_other(spark, tmp_path):
    a = _run(spark, tmp_path / "a", 1, 1.0)
    b = _run(spark, tmp_path / "b", 2, 4.0)  # a far more confident scale
    out = tmp_path / "ens"
    run_job(ensemble_job.main, ensemble_job.parser(),
            [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--master", "local[2]"])
    doc = MetricsDocument.from_json((out / "metrics.json").read_bytes(), "ens/metrics.json")
    assert doc.method == "ensemble" and doc.split == "test"
    assert doc.metrics["counts"]["total"] == int((SUBSET == "test").sum())
    # the averaged score is the mean of each run's own calibrated score
    test = SUBSET == "test"
    cal = [fit_platt(f.label[f.subset == "validation"], f.score[f.subset == "validation"])
           .apply(f.score.to_numpy()) for f in (a, b)]
    mean = (cal[0] + cal[1]) / 2
    assert doc.metrics["roc_auc"] == pytest.approx(roc_auc(LABEL[test], mean[test]))
    assert doc.metrics["threshold"] == pytest.approx(
        threshold_for_sensitivity(LABEL[~test], mean[~test], 0.95))
    assert doc.patients is not None and doc.operating_points and doc.calibration
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "report.html", "roc.png",
                                               "predictions.csv", "reliability.png"}
    members = json.loads((out / "metrics.json").read_text())["training"]["members"]
    assert [m["name"] for m in members] == ["a", "b"]


def test_runs_without_validation_scores_or_shared_films_are_refused(spark, tmp_path):
    _run(spark, tmp_path / "a", 1, 1.0)
    _run(spark, tmp_path / "b", 2, 1.0)
    frame = pd.read_csv(tmp_path / "b/predictions.csv")
    frame[frame.subset == "test"].to_csv(tmp_path / "b/predictions.csv", index=False)
    with pytest.raises(ValueError, match="b/predictions.csv has no validation scores"):
        ensemble(spark, [str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "o"), 0.95)
    # validation films shared, test films named by another URI: nothing to grade together
    shared_val = pd.read_csv(tmp_path / "a/predictions.csv").query("subset == 'validation'")
    moved = frame[frame.subset == "test"].assign(
        path=lambda f: f.path.str.replace("file:/d", "hdfs:///d"))
    pd.concat([shared_val, moved]).to_csv(tmp_path / "b/predictions.csv", index=False)
    with pytest.raises(ValueError, match="share no test films"):
        ensemble(spark, [str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "o"), 0.95)
    assert not (tmp_path / "o").exists()
