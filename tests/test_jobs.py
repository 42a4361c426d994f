"""Train and evaluate end to end on a synthetic tree, on real local Spark."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.ml import PipelineModel

from jobs import evaluate as evaluate_job
from jobs import train as train_job
from pipeline.cli import run_job
from pipeline.dataset import read_images, scan_tree
from pipeline.evaluation import EvalConfig, evaluate
from pipeline.sample_data import write_tree
from pipeline.storage import atomic_output
from pipeline.training import TrainConfig, train


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "chest_xray"
    write_tree(root, scale=1, seed=5)
    (root / "test/PNEUMONIA/person999_virus_1.jpeg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


@pytest.fixture(scope="module")
def trained(spark, tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(data=str(tree), model_out=str(out / "model"), weights="none",
                      features_cache=str(out / "features"))
    return cfg, train(spark, cfg), out


def test_training_summary(trained):
    cfg, summary, _ = trained
    split = summary["split"]
    assert split["validation"]["films"] > 0 and split["fit"]["films"] > split["validation"]["films"]
    assert summary["validation_metrics"]["sensitivity"] >= cfg.target_sensitivity
    saved = json.loads((trained[2] / "model/training_summary.json").read_text())
    assert saved["threshold"] == summary["threshold"]


def test_saved_model_loads_and_predicts_identically(spark, trained, tree):
    cfg, summary, _ = trained
    model = PipelineModel.load(cfg.model_out)
    assert model.stages[1].getThreshold() == pytest.approx(summary["threshold"])
    images = read_images(spark, scan_tree(spark, str(tree), ("val",)), "binaryFile")
    first = model.transform(images).select("path", "probability").orderBy("path").collect()
    again = PipelineModel.load(cfg.model_out).transform(images).select("path", "probability") \
        .orderBy("path").collect()
    assert [r.path for r in first] == [r.path for r in again]
    assert np.allclose([r.probability[1] for r in first], [r.probability[1] for r in again])


def test_feature_cache_is_reused(spark, trained):
    cfg, _, out = trained
    summary = train(spark, TrainConfig(**{**cfg.__dict__, "model_out": str(out / "model2")}))
    assert summary["timings_s"]["featurize train"] == 0.0


def test_evaluate_writes_report(spark, trained, tree, tmp_path):
    cfg, summary, _ = trained
    out = tmp_path / "report"
    doc = evaluate(spark, EvalConfig(data=str(tree), model=cfg.model_out, out=str(out)))
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "confusion_matrix.png", "roc.png",
                                               "report.html", "predictions.csv"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"] == doc["metrics"] and saved["split"] == "test"
    assert saved["metrics"]["threshold"] == pytest.approx(summary["threshold"])
    bad = [s for s in saved["skipped"] if s["path"].endswith("person999_virus_1.jpeg")]
    assert bad and "not a decodable image" in bad[0]["reason"]
    lines = (out / "predictions.csv").read_text().strip().splitlines()
    assert len(lines) - 1 == saved["metrics"]["counts"]["total"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "weights=none" in page


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
    cfg, summary, _ = trained
    doc = evaluate(spark, EvalConfig(data=str(tree), model=cfg.model_out, out=str(tmp_path / "v"),
                                     split="validation"))
    assert doc["metrics"]["counts"]["total"] == summary["split"]["validation"]["films"]
    assert doc["metrics"]["roc_auc"] == pytest.approx(summary["validation_metrics"]["roc_auc"])
