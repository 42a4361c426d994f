"""train --cv K and finetune --cv K: each recipe cross-validated on the same patient-grouped
folds, on real local Spark."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jobs import finetune as finetune_job
from jobs import train as train_job
from pipeline.data.dataset import scan_tree
from pipeline.data.sample_data import write_tree
from pipeline.data.split import fold_roles
from pipeline.featurizer.evaluation import EvalConfig, evaluate
from pipeline.featurizer.summary import TrainConfig
from pipeline.featurizer.training import train
from pipeline.report.crossval import FIGURES
from pipeline.report.ensemble import cross_validated_ensemble
from pipeline.runtime.cli import run_job


@pytest.fixture(scope="module")
def cv_run(spark, tmp_path_factory):
    """A 3-fold run on the features of the report's small cnn (untrained, 32 px: cheap; the
    cross-validation, not the backbone, is under test)."""
    from pipeline.finetune.models import build_model

    root = tmp_path_factory.mktemp("cvdata") / "chest_xray"
    write_tree(root, scale=1, seed=11)
    out = tmp_path_factory.mktemp("cvruns")
    build_model("cnn", 32).save(out / "cnn.keras")
    cfg = TrainConfig(data=str(root), model_out=str(out / "model"), weights="none",
                      model_file=str(out / "cnn.keras"), features_cache=str(out / "features"),
                      cv_folds=3)
    return root, cfg, train(spark, cfg), out


def test_every_film_is_held_out_once_and_figures_have_a_spread(spark, cv_run):
    root, cfg, model, _ = cv_run
    cv = model.summary.cross_validation
    train_films = scan_tree(spark, str(root), ("train",)).images.count()
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3
    assert sum(f["films"] for f in cv["per_fold"]) == cv["pooled"]["films"] == train_films
    for key in FIGURES:
        values = [f[key] for f in cv["per_fold"]]
        assert cv["summary"][key]["mean"] == pytest.approx(np.mean(values))
        assert cv["summary"][key]["sd"] == pytest.approx(np.std(values, ddof=1))
    for fold in cv["per_fold"]:
        assert 0 <= fold["roc_auc"] <= 1 and fold["patients"] < fold["films"]
    assert cv["pooled"]["roc"]["fpr"][0] == 0.0 and cv["pooled"]["roc"]["tpr"][-1] == 1.0


def test_the_final_model_is_fitted_as_without_cv(spark, cv_run):
    """--cv adds figures; the model, its threshold and calibration are those of a plain run
    (same features from the cache, same split)."""
    root, cfg, model, out = cv_run
    plain = train(spark, TrainConfig(**{**cfg.__dict__, "model_out": str(out / "plain"),
                                        "cv_folds": 0}))
    assert plain.summary.timings_s["featurize train"] == 0.0  # the cache served both
    assert plain.summary.cross_validation is None
    assert plain.summary.threshold == pytest.approx(model.summary.threshold)
    for key in ("slope", "intercept"):
        assert plain.summary.calibration[key] == pytest.approx(model.summary.calibration[key])


def test_the_report_shows_the_spread(spark, cv_run, tmp_path):
    root, cfg, model, _ = cv_run
    doc = evaluate(spark, EvalConfig(data=str(root), model=cfg.model_out, out=str(tmp_path / "r")))
    assert doc.training["cross_validation"]["folds"] == 3
    page = (tmp_path / "r/report.html").read_text()
    assert "Cross-validation of the training recipe" in page and " ± " in page
    assert (tmp_path / "r/cv_roc.png").exists()
    assert json.loads((tmp_path / "r/metrics.json").read_text())["training"]["cross_validation"]


def test_jobs_release_what_they_cached(spark, cv_run, tmp_path):
    """A session outlives its jobs (a notebook, this suite): train and evaluate unpersist the
    listings and feature vectors they persisted."""
    root, cfg, _, out = cv_run
    persisted = spark.sparkContext._jsc.getPersistentRDDs
    before = set(persisted().keys())
    again = train(spark, TrainConfig(**{**cfg.__dict__, "model_out": str(out / "again"),
                                        "features_cache": None, "cv_folds": 0}))
    evaluate(spark, EvalConfig(data=str(root), model=cfg.model_out, out=str(tmp_path / "r")))
    assert again.summary.featurized > 0
    assert set(persisted().keys()) == before


def test_one_fold_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_job(train_job.main, train_job.parser(), [
            "--data", str(tmp_path), "--model-out", str(tmp_path / "m"), "--cv", "1",
            "--master", "local[2]"])
    assert exit_info.value.code == 2
    assert "--cv needs at least 2 folds" in capsys.readouterr().err


@pytest.fixture(scope="module")
def finetune_cv(cv_run, tmp_path_factory):
    """finetune --cv 3 on cv_run's tree and seed: the report's cnn, 32 px, one epoch a fold."""
    root = cv_run[0]
    out = tmp_path_factory.mktemp("ftcv") / "cnn"
    run_job(finetune_job.main, finetune_job.parser(), [
        "--data", str(root), "--out", str(out), "--arch", "cnn", "--image-size", "32",
        "--epochs", "1", "--batch-size", "16", "--cv", "3", "--master", "local[2]"])
    return out, json.loads((out / "metrics.json").read_text())


def test_finetune_cv_grades_each_fold_on_films_its_network_never_saw(spark, cv_run, finetune_cv):
    """Every train film is held out once; fold k holds the same films, in the same order and
    with the same validation part, as train --cv's fold k (so the arms ensemble)."""
    root, _, model, _ = cv_run
    out, doc = finetune_cv
    cv = doc["training"]["cross_validation"]
    train_films = scan_tree(spark, str(root), ("train",)).images.count()
    assert cv["folds"] == 3 and sum(f["films"] for f in cv["per_fold"]) == train_films
    assert all(f["best_epoch"] == f["epochs_run"] == 1 for f in cv["per_fold"])
    for key in FIGURES:
        values = [f[key] for f in cv["per_fold"]]
        assert cv["summary"][key]["mean"] == pytest.approx(np.mean(values))
    featurizer_folds = model.summary.cross_validation["fold_scores"]
    assert len(cv["fold_scores"]) == len(featurizer_folds) == 3
    films = (scan_tree(spark, str(root), ("train",)).images.select("path", "patient_id", "label")
             .orderBy("path").toPandas())
    roles = fold_roles(films, 3)
    for k, (ours, theirs) in enumerate(zip(cv["fold_scores"], featurizer_folds)):
        for part in ("validation", "held_out"):
            expected = films.loc[roles[f"role{k}"] == part, "label"].astype(int).tolist()
            assert ours[part]["label"] == theirs[part]["label"] == expected
        assert ours["held_out"]["patient"] == theirs["held_out"]["patient"]
    assert (out / "model.keras").exists()  # the final run's model, whatever the folds did
    assert not any(p.name.startswith(("pixel-cache", "model.keras.")) for p in out.iterdir())
    page = (out / "report.html").read_text()
    assert "Cross-validation of the training recipe" in page and (out / "cv_roc.png").exists()


def test_folds_of_both_arms_ensemble(spark, cv_run, finetune_cv, tmp_path):
    _, cfg, _, _ = cv_run
    done = cross_validated_ensemble(spark, [cfg.model_out, str(finetune_cv[0])],
                                    str(tmp_path / "cv"), 0.95)
    rows = done["table"].splitlines()[2:]
    assert len(rows) == 3 and rows[1].startswith("| fine-tuned cnn 32 px, at most 1 epoch |")
    assert done["ensemble"]["folds"] == 3
    assert json.loads((tmp_path / "cv/cv.json").read_text())["ensemble"]["pooled"]["films"] == \
        done["ensemble"]["pooled"]["films"]
