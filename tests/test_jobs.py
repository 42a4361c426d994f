"""Train and evaluate end to end on a synthetic tree, on real local Spark."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.ml import PipelineModel

from jobs import evaluate as evaluate_job
from jobs import train as train_job
from pipeline.runtime.cli import run_job
from pipeline.config import REPO_ROOT
from tests import reasons as R
from pipeline.data.dataset import read_images, scan_tree
from pipeline.data.sample_data import write_tree
from pipeline.featurizer.classifier import pneumonia_score
from pipeline.featurizer.evaluation import EvalConfig, evaluate
from pipeline.featurizer.model_store import calibrated_probabilities, load_model
from pipeline.featurizer.summary import TrainConfig, TrainingSummary
from pipeline.featurizer.training import train
from pipeline.fs.storage import atomic_output
from pipeline.report.metrics import threshold_for_sensitivity


FIXTURES = REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "chest_xray"
    write_tree(root, scale=1, seed=5)
    (root / "test/PNEUMONIA/person999_virus_1.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "_manifest.csv").write_text("path\n")  # as ingest leaves them on HDFS
    (root / "_ingest_state.csv").write_text("path\n")
    return root


@pytest.fixture(scope="module")
def trained(spark, tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(data=str(tree), model_out=str(out / "model"), weights="none",
                      features_cache=str(out / "features"))
    return cfg, train(spark, cfg), out


def test_threshold_is_recomputed_from_the_held_out_patients(spark, trained, tree):
    """The stored threshold is what the rule gives on the validation films' scores, scored
    here afresh by the saved model; those films' patients are not among the fitted ones."""
    cfg, model, _ = trained
    summary = model.summary
    listing = scan_tree(spark, str(tree), ("train",)).with_validation(cfg.val_fraction, cfg.seed)
    films = listing.images.toPandas()
    val, fit = films[films["is_val"]], films[~films["is_val"]]
    assert not set(val["patient_id"]) & set(fit["patient_id"])
    assert summary.split["validation"]["films"] == len(val) > 0
    assert summary.split["fit"]["films"] == len(fit) > len(val)
    scored = (PipelineModel.load(cfg.model_out).transform(read_images(spark, listing, "binaryFile"))
              .filter("is_val").select("label", pneumonia_score().alias("score")).toPandas())
    assert len(scored) == len(val)
    assert summary.threshold == pytest.approx(
        threshold_for_sensitivity(scored["label"], scored["score"], cfg.target_sensitivity))


def test_summary_round_trips(trained):
    cfg, model, out = trained
    text = (out / "model/training_summary.json").read_text()
    assert TrainingSummary.from_json(text, "summary") == model.summary
    assert json.loads(text)["images"]["listed"] == model.summary.listed


def test_saved_model_predicts_as_the_fitted_one(spark, trained, tree):
    cfg, model, _ = trained
    fitted = PipelineModel(stages=[model.featurizer, model.classifier])
    loaded = load_model(spark, cfg.model_out)
    assert loaded.classifier.getThreshold() == pytest.approx(model.summary.threshold)
    images = read_images(spark, scan_tree(spark, str(tree), ("val",)), "binaryFile")
    want = fitted.transform(images).select("path", "probability", "prediction").orderBy("path").collect()
    got = PipelineModel(stages=[loaded.featurizer, loaded.classifier]).transform(images) \
        .select("path", "probability", "prediction").orderBy("path").collect()
    assert [r.path for r in got] == [r.path for r in want] and len(want) > 0
    assert np.allclose([r.probability[1] for r in got], [r.probability[1] for r in want])
    assert [r.prediction for r in got] == [r.prediction for r in want]


def _jobs_of(spark, group: str, action):
    """(what ``action()`` returns, how many Spark jobs it ran)."""
    sc = spark.sparkContext
    sc.setJobGroup(group, group)
    try:
        result = action()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return result, len(sc.statusTracker().getJobIdsForGroup(group))


def test_loading_reads_the_metadata_itself_and_gives_pyspark_s_stages(spark, trained):
    """load_model's stages are PipelineModel.load's, with fewer Spark jobs: only the
    regression's own reader runs any."""
    cfg, _, _ = trained
    plain, plain_jobs = _jobs_of(spark, "plain-load", lambda: PipelineModel.load(cfg.model_out))
    ours, our_jobs = _jobs_of(spark, "our-load", lambda: load_model(spark, cfg.model_out))
    assert our_jobs <= 3 < plain_jobs
    featurizer = plain.stages[0]
    assert ours.featurizer.uid == featurizer.uid
    assert {p.name: v for p, v in ours.featurizer.extractParamMap().items()} == \
        {p.name: v for p, v in featurizer.extractParamMap().items()}
    assert ours.featurizer.isSet(ours.featurizer.weights) == featurizer.isSet(featurizer.weights)
    classifier = plain.stages[1]
    assert ours.classifier.uid == classifier.uid
    assert ours.classifier.getThreshold() == classifier.getThreshold()
    assert np.array_equal(ours.classifier.coefficients.toArray(), classifier.coefficients.toArray())


def test_model_saved_before_the_package_layout_loads(spark, tree, tmp_path):
    """A model saved by the flat-layout code (tests/fixtures/model-flat-layout, VGG16 random
    init + LR) names its featurizer pipeline.featurizer.DeepImageFeaturizer and still loads,
    with its summary, and scores; a model saved now names the same class."""
    old = load_model(spark, str(FIXTURES / "model-flat-layout"))
    assert old.featurizer.getModelName() == "VGG16" and old.summary.config.weights == "none"
    # saved before calibration and validation scores were stored: they read None
    assert old.calibrator is None and old.validation is None and old.summary.config.cv_folds == 0
    with pytest.raises(ValueError, match="without a stored calibration"):
        calibrated_probabilities(old, np.array([0.5]))
    assert old.summary.threshold == pytest.approx(old.classifier.getThreshold())
    images = read_images(spark, scan_tree(spark, str(tree), ("val",)), "binaryFile")
    rows = PipelineModel(stages=[old.featurizer, old.classifier]).transform(images) \
        .select("probability").collect()
    assert rows and all(0 <= r.probability[1] <= 1 for r in rows)
    stage = next((FIXTURES / "model-flat-layout" / "stages").glob("0_*/metadata/part-*"))
    assert json.loads(stage.read_text())["class"] == "pipeline.featurizer.DeepImageFeaturizer"
    old.featurizer.write().save(str(tmp_path / "resaved"))
    resaved = next((tmp_path / "resaved" / "metadata").glob("part-*"))
    assert json.loads(resaved.read_text())["class"] == "pipeline.featurizer.DeepImageFeaturizer"


def test_feature_cache_is_reused(spark, trained):
    cfg, _, out = trained
    again = train(spark, TrainConfig(**{**cfg.__dict__, "model_out": str(out / "model2")}))
    assert again.summary.timings_s["featurize train"] == 0.0


def test_evaluate_writes_report(spark, trained, tree, tmp_path):
    cfg, model, _ = trained
    out = tmp_path / "report"
    doc = evaluate(spark, EvalConfig(data=str(tree), model=cfg.model_out, out=str(out)))
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "confusion_matrix.png", "roc.png",
                                               "report.html", "predictions.csv"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"] == doc.metrics and saved["split"] == "test"
    assert saved["metrics"]["threshold"] == pytest.approx(model.summary.threshold)
    bad = [s for s in saved["skipped"] if s["path"].endswith("person999_virus_1.jpeg")]
    assert bad and bad[0]["reason"].startswith(R.UNREADABLE_HEADER)  # cut inside its header
    # ingest's own files at the root are neither films nor worth a line in the report
    assert not [s for s in saved["skipped"] if s["path"].rsplit("/", 1)[1].startswith("_")]
    lines = (out / "predictions.csv").read_text().strip().splitlines()
    assert len(lines) - 1 == saved["metrics"]["counts"]["total"]
    page = (out / "report.html").read_text()
    # confusion matrix, ROC, reliability diagram
    assert page.count("data:image/png;base64,") == 3 and "weights=none" in page
    assert saved["calibration"]["calibrator"] == model.summary.calibration
    assert [p["target_sensitivity"] for p in saved["operating_points"]] == [0.9, 0.95, 0.98]
    assert saved["patients"]["metrics"]["counts"]["total"] < saved["metrics"]["counts"]["total"]


def test_failed_write_keeps_previous_output(spark, tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "keep.txt").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_output(spark, str(final)) as tmp:
            spark.createDataFrame([(1,)], ["x"]).write.parquet(tmp)
            raise RuntimeError("killed mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (final / "keep.txt").read_text() == "previous"


def test_failed_training_keeps_previous_model(spark, trained, tmp_path):
    cfg, _, _ = trained
    one_class = tmp_path / "one"
    write_tree(one_class, scale=1, seed=2)
    for f in (one_class / "train/NORMAL").iterdir():
        f.unlink()
    before = sorted(p.name for p in (trained[2] / "model").iterdir())
    with pytest.raises(ValueError, match="both classes"):
        train(spark, TrainConfig(data=str(one_class), model_out=cfg.model_out, weights="none"))
    assert sorted(p.name for p in (trained[2] / "model").iterdir()) == before


def test_cli_error_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_job(evaluate_job.main, evaluate_job.parser(), [
            "--data", str(tmp_path / "missing"), "--model", str(tmp_path / "m"),
            "--out", str(tmp_path / "o"), "--master", "local[2]"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "is not a saved PipelineModel" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_cli_rejects_bad_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_job.parser().parse_args(["--data", "x", "--model-out", "y", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_evaluate_validation_part_matches_training(spark, trained, tree, tmp_path):
    cfg, model, _ = trained
    doc = evaluate(spark, EvalConfig(data=str(tree), model=cfg.model_out, out=str(tmp_path / "v"),
                                     split="validation"))
    assert doc.metrics["counts"]["total"] == model.summary.split["validation"]["films"]
    assert doc.metrics["roc_auc"] == pytest.approx(model.summary.validation_metrics["roc_auc"])


def test_stored_validation_scores_are_the_validation_films_scores(spark, trained, tree):
    """What the model stores (no paths) is what the saved model gives on its validation
    films, and the stored threshold and calibration come from it."""
    cfg, model, _ = trained
    stored = load_model(spark, cfg.model_out)
    listing = scan_tree(spark, str(tree), ("train",)).with_validation(cfg.val_fraction, cfg.seed)
    scored = (PipelineModel.load(cfg.model_out).transform(read_images(spark, listing, "binaryFile"))
              .filter("is_val").select("label", pneumonia_score().alias("score")).toPandas())
    assert sorted(stored.validation.scores) == pytest.approx(sorted(scored["score"]))
    assert sorted(stored.validation.labels) == sorted(scored["label"].astype(int))
    assert stored.summary.threshold == threshold_for_sensitivity(
        stored.validation.labels, stored.validation.scores, cfg.target_sensitivity)
    probs = calibrated_probabilities(stored, scored["score"].to_numpy())
    assert ((0 < probs) & (probs < 1)).all()
    order = np.argsort(scored["score"].to_numpy())
    assert (np.diff(probs[order]) >= 0).all()  # calibration keeps the ranking


def test_target_sensitivity_re_derives_the_threshold(spark, trained, tree, tmp_path):
    """evaluate --target-sensitivity grades at the threshold the stored validation scores
    give for that target, without retraining; the model folder is untouched."""
    cfg, model, out = trained
    before = (out / "model/training_summary.json").read_text()
    args = ["--data", str(tree), "--model", cfg.model_out, "--out", str(tmp_path / "r80"),
            "--master", "local[2]", "--target-sensitivity", "0.8", "--with-validation"]
    run_job(evaluate_job.main, evaluate_job.parser(), args)
    doc = json.loads((tmp_path / "r80/metrics.json").read_text())
    val = model.summary.validation_scores
    want = threshold_for_sensitivity(np.array(val["label"]), np.array(val["score"]), 0.8)
    assert doc["metrics"]["threshold"] == pytest.approx(want)
    assert want != pytest.approx(model.summary.threshold)  # a different operating point
    assert "re-derived at evaluation" in doc["threshold_source"]
    assert (out / "model/training_summary.json").read_text() == before
    rows = (tmp_path / "r80/predictions.csv").read_text().strip().splitlines()
    subsets = [line.split(",")[0] for line in rows[1:]]
    assert subsets.count("validation") == model.summary.split["validation"]["films"]
    assert subsets.count("test") == doc["metrics"]["counts"]["total"]


def test_target_sensitivity_needs_stored_validation_scores(spark, tree, tmp_path):
    with pytest.raises(ValueError, match="stores no validation scores"):
        evaluate(spark, EvalConfig(data=str(tree), model=str(FIXTURES / "model-flat-layout"),
                                   out=str(tmp_path / "o"), target_sensitivity=0.9))


def test_train_on_a_fine_tuned_backbone(spark, tree, tmp_path):
    """train --model-file: the features come from a .keras model's penultimate layer (the
    report's cnn here, untrained: what matters is the wiring), recorded in the summary."""
    from pipeline.finetune.models import build_model

    model_file = tmp_path / "model.keras"
    build_model("cnn", 32).save(model_file)
    args = ["--data", str(tree), "--model-out", str(tmp_path / "m"), "--model-file",
            str(model_file), "--weights", "none", "--master", "local[2]"]
    run_job(train_job.main, train_job.parser(), args)
    saved = load_model(spark, str(tmp_path / "m"))
    assert saved.featurizer.getModelFile() == str(model_file)
    assert saved.summary.config.model_file == str(model_file)
    assert len(saved.classifier.coefficients) == 64  # the cnn's penultimate width
