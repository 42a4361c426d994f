"""The fine-tuning job end to end on a synthetic tree, on real local Spark, both architectures."""
from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from pyspark.ml import PipelineModel

from jobs import compare as compare_job
from jobs import finetune as finetune_job
from pipeline.featurizer.classifier import make_classifier, with_class_weights
from pipeline.runtime.cli import run_job
from pipeline.data.dataset import read_images, scan_tree
from pipeline.featurizer.evaluation import EvalConfig, evaluate
from pipeline.featurizer import DeepImageFeaturizer
from pipeline.featurizer.models import penultimate_model
from pipeline.finetune.job import FinetuneConfig, sample_listing
from pipeline.finetune.models import build_model
from pipeline.report.document import MetricsDocument
from pipeline.data.images import decode_bytes
from pipeline.report.metrics import binary_metrics, threshold_for_sensitivity
from pipeline.data.patients import patient_id
from pipeline.data.sample_data import write_tree

MAX_IMAGES = 40
OUTPUTS = {"model.keras", "metrics.json", "history.json", "training_curves.png", "predictions.csv",
           "confusion_matrix.png", "roc.png", "report.html", "reliability.png"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "chest_xray"
    write_tree(root, scale=1, seed=3)
    return root


def _predictions(out) -> pd.DataFrame:
    return pd.read_csv(out / "predictions.csv", float_precision="round_trip")


def _run(tree, out, *extra: str) -> dict:
    run_job(finetune_job.main, finetune_job.parser(), [
        "--data", str(tree), "--out", str(out), "--epochs", "1", "--max-images", str(MAX_IMAGES),
        "--batch-size", "8", "--master", "local[2]", *extra])
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(spark, tree, tmp_path_factory):
    """One short cnn run, and one inceptionv3 run from a weights file, frozen then unfrozen."""
    base = tmp_path_factory.mktemp("runs")
    weights = base / "inception_notop.weights.h5"
    build_model("inceptionv3", 75, weights="none").get_layer("inception_v3").save_weights(weights)
    return {"cnn": (base / "cnn", _run(tree, base / "cnn", "--arch", "cnn", "--image-size", "32",
                                       "--precision", "bfloat16")),
            "inceptionv3": (base / "inc", _run(tree, base / "inc", "--arch", "inceptionv3",
                                               "--image-size", "75", "--weights", str(weights),
                                               "--unfreeze-epochs", "1", "--precision", "float32"))}


@pytest.mark.parametrize("arch,precision", [("cnn", "bfloat16"), ("inceptionv3", "float32")])
def test_trains_in_the_precision_asked_with_float32_scores(runs, arch, precision):
    """Mixed precision: the convolutions compute in bfloat16, the weights and the sigmoid
    output stay float32 (the saved model too)."""
    out, doc = runs[arch]
    assert doc["training"]["precision"] == precision
    model = keras.saving.load_model(out / "model.keras", compile=False)
    convs = [layer for layer in model._flatten_layers() if "conv" in type(layer).__name__.lower()]
    assert convs and {layer.compute_dtype for layer in convs} == {precision}
    assert {w.dtype for w in model.trainable_weights} == {"float32"}
    assert model.get_layer("pneumonia").compute_dtype == "float32"


@pytest.mark.parametrize("arch", ["cnn", "inceptionv3"])
def test_outputs_and_schema(runs, arch):
    out, doc = runs[arch]
    assert {p.name for p in out.iterdir() if not p.name.endswith(".crc")} == OUTPUTS
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert doc["schema"] == "xray-metrics/1" and doc["method"] == f"finetune-{arch}"
    assert doc["split"] == "test" and doc["metrics"]["counts"]["total"] > 0
    for key, kind in (("model_name", str), ("weights", str), ("data", str), ("threshold_source", str),
                      ("timings_s", dict), ("images_per_s", float), ("training", dict),
                      ("skipped", list), ("created", str), ("spark", dict), ("roc", dict),
                      ("warnings", list), ("duplicates", list)):
        assert isinstance(doc[key], kind), key
    # the one document type reads it back: same schema as the featurizer's evaluation
    assert MetricsDocument.from_json((out / "metrics.json").read_text(), "metrics.json").metrics \
        == doc["metrics"]
    assert len(doc["roc"]["fpr"]) == len(doc["roc"]["tpr"]) >= 2
    assert set(doc["spark"]) == {"app_id", "master"}
    history = json.loads((out / "history.json").read_text())
    epochs = 2 if arch == "inceptionv3" else 1
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, epochs + 1))
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "images_per_s"} <= set(history["epochs"][0])
    if arch == "inceptionv3":
        assert [e["phase"] for e in history["epochs"]] == ["frozen base", "unfrozen base"]
        assert history["epochs"][1]["lr"] == pytest.approx(1e-5)


def test_the_scanner_recipe_with_a_cosine_schedule(tree, tmp_path):
    """Recorded with the run; the rate warms up over the first epoch, then decays to a
    hundredth (no ReduceLROnPlateau in its way); the saved model scores as the run did."""
    out = tmp_path / "scanner"
    doc = _run(tree, out, "--arch", "cnn", "--image-size", "32", "--epochs", "3",
               "--augment", "scanner", "--schedule", "cosine", "--label-smoothing", "0.1")
    assert {k: doc["training"]["config"][k] for k in ("augment", "schedule", "label_smoothing")} \
        == {"augment": "scanner", "schedule": "cosine", "label_smoothing": 0.1}
    rates = [e["lr"] for e in json.loads((out / "history.json").read_text())["epochs"]]
    assert len(rates) == 3 and rates[0] == pytest.approx(1e-3) and rates[0] > rates[1] > rates[2]
    assert rates[2] == pytest.approx(1e-5)
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert "augment_flip" not in {layer.name for layer in model.layers}
    predictions = _predictions(out)
    x = _pixels(list(predictions["path"]), 32)
    assert np.allclose(model.predict(x, verbose=0).reshape(-1), predictions["score"], atol=1e-5)


def test_validation_is_the_patient_grouped_split(spark, runs, tree):
    out, doc = runs["cnn"]
    cfg = FinetuneConfig(arch="cnn", data=str(tree), out=str(out), max_images=MAX_IMAGES)
    listing = sample_listing(scan_tree(spark, str(tree), ("train", "test")), MAX_IMAGES, cfg.seed)
    train = listing.with_validation(cfg.val_fraction, cfg.seed).images.toPandas().query(
        "split == 'train'")
    val_paths = set(train["path"][train["is_val"]])
    predictions = _predictions(out)
    assert set(predictions.loc[predictions["subset"] == "validation", "path"]) == val_paths
    fit_patients = {patient_id(p) for p in set(train["path"]) - val_paths}
    assert fit_patients and not fit_patients & {patient_id(p) for p in val_paths}
    counts = doc["training"]["split"]
    assert counts["validation"]["films"] == len(val_paths)
    assert counts["fit"]["films"] + counts["validation"]["films"] == len(train)


@pytest.mark.parametrize("arch", ["cnn", "inceptionv3"])
def test_threshold_from_validation_and_saved_model_scores(runs, arch):
    out, doc = runs[arch]
    predictions = _predictions(out)
    val = predictions[predictions["subset"] == "validation"]
    test = predictions[predictions["subset"] == "test"]
    threshold = threshold_for_sensitivity(val["label"], val["score"], 0.95)
    assert doc["metrics"]["threshold"] == pytest.approx(threshold)
    assert doc["training"]["validation_metrics"] == binary_metrics(val["label"], val["score"], threshold)
    assert doc["metrics"] == binary_metrics(test["label"], test["score"], threshold)
    model = keras.saving.load_model(out / "model.keras", compile=False)
    x = _pixels(list(predictions["path"]), model.input_shape[1])
    assert np.allclose(model.predict(x, verbose=0).reshape(-1), predictions["score"], atol=1e-5)


def _pixels(paths: list[str], size: int) -> np.ndarray:
    return np.stack([decode_bytes(open(p.removeprefix("file:"), "rb").read(), size)
                     for p in paths]).astype("float32")


@pytest.mark.parametrize("arch", ["cnn", "inceptionv3"])
def test_fine_tuned_model_as_featurizer_model_file(spark, runs, arch):
    out, _ = runs[arch]
    model_file = str(out / "model.keras")
    paths = list(_predictions(out)["path"].head(12))
    images = spark.read.format("binaryFile").load(paths).withColumnRenamed("content", "image")
    featurized = DeepImageFeaturizer(modelFile=model_file, batchSize=5).transform(images)
    rows = {r.path: r.features.toArray() for r in featurized.select("path", "features").collect()}
    got = np.stack([rows[p] for p in paths])
    model = keras.saving.load_model(model_file, compile=False)
    expected = penultimate_model(model).predict(_pixels(paths, model.input_shape[1]), verbose=0)
    assert got.shape == expected.shape == (12, 64 if arch == "cnn" else 128)
    nonzero = np.linalg.norm(expected, axis=1) > 0  # a short-trained cnn can have dead units
    cosine = (got * expected).sum(1)[nonzero] / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))[nonzero]
    assert np.allclose(got, expected, atol=1e-4) and (cosine >= 0.9999).all()
    if arch == "inceptionv3":
        assert nonzero.all()


def _featurizer_lr_run(spark, tree, model_file: str, base) -> str:
    """The other arm's real output on the in-domain features: DeepImageFeaturizer(modelFile)
    + weighted logistic regression, saved as a PipelineModel and evaluated by its own job."""
    features = DeepImageFeaturizer(modelFile=model_file).transform(
        read_images(spark, scan_tree(spark, str(tree), ("train",)), "binaryFile"))
    fit_part, _ = with_class_weights(features)
    PipelineModel(stages=[DeepImageFeaturizer(modelFile=model_file), make_classifier().fit(fit_part)]) \
        .write().save(str(base / "lr-model"))
    evaluate(spark, EvalConfig(data=str(tree), model=str(base / "lr-model"), out=str(base / "lr")))
    return str(base / "lr")


def test_compare_runs_of_both_arms(spark, runs, tree, tmp_path):
    lr_run = _featurizer_lr_run(spark, tree, str(runs["cnn"][0] / "model.keras"), tmp_path)
    out = tmp_path / "compare"
    run_job(compare_job.main, compare_job.parser(), [
        str(runs["cnn"][0]), str(runs["inceptionv3"][0] / "metrics.json"), lr_run, "--out", str(out)])
    table = (out / "compare.md").read_text().splitlines()
    assert table[0].startswith("| run | method | split | accuracy | precision | recall | specificity")
    rows = [line.split(" | ") for line in table[2:5]]
    assert [r[:2] for r in rows] == [["| cnn", "finetune-cnn"], ["| inc", "finetune-inceptionv3"],
                                     ["| lr", "featurizer+lr"]]
    assert f"{runs['cnn'][1]['metrics']['roc_auc']:.4g}" in rows[0]
    assert rows[2][-1] == "fine-tuned (modelFile) |"
    page = (out / "compare.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and page.count("<tr>") == 4


def test_one_class_training_fails_cleanly_and_leaves_nothing(spark, tmp_path, capsys):
    tree = tmp_path / "one"
    write_tree(tree, scale=1, seed=4)
    for f in (tree / "train/NORMAL").iterdir():
        f.unlink()
    with pytest.raises(SystemExit) as exit_info:
        _run(tree, tmp_path / "run", "--arch", "cnn", "--image-size", "32")
    assert exit_info.value.code == 2
    assert "part of train needs both classes" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one"]


@pytest.mark.parametrize("args,message", [
    (["--arch", "cnn", "--image-size", "16"], "cnn needs at least 32 px"),
    (["--arch", "cnn", "--weights", "imagenet"], "--weights applies to inceptionv3"),
    (["--arch", "cnn", "--unfreeze-epochs", "2"], "--unfreeze-epochs needs --arch inceptionv3"),
    (["--arch", "inceptionv3", "--weights", "none", "--unfreeze-epochs", "1"], "pretrained weights"),
    (["--arch", "cnn", "--split", "test", "--data-without-test"], "has no test split: pass --split validation"),
    (["--arch", "cnn", "--cv", "1"], "--cv needs at least 2 folds"),
    (["--arch", "cnn", "--label-smoothing", "0.5"], "--label-smoothing must be in [0, 0.5)"),
])
def test_bad_arguments_are_one_line(spark, tree, tmp_path, capsys, args, message):
    data = tree
    if "--data-without-test" in args:
        args = [a for a in args if a != "--data-without-test"]
        data = tmp_path / "no_test"
        write_tree(data, scale=1, seed=6)
        for f in sorted((data / "test").rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        (data / "test").rmdir()
    with pytest.raises(SystemExit) as exit_info:
        run_job(finetune_job.main, finetune_job.parser(),
                ["--data", str(data), "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "out").exists()
