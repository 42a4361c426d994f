"""Evaluation: score one split of a tree with a saved PipelineModel and write the report."""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.sql import SparkSession

from pipeline import config
from pipeline.classifier import pneumonia_score
from pipeline.dataset import read_images, scan_tree
from pipeline.features import featurize
from pipeline.featurizer import DeepImageFeaturizer
from pipeline.metrics import binary_metrics, headline, roc_curve
from pipeline.report import SCHEMA, write_metrics_report
from pipeline.session import step
from pipeline.split import validation_mask
from pipeline.storage import HadoopFS, atomic_output, prepare_output
from pipeline.training import SUMMARY_FILE, listing_skips

log = logging.getLogger(__name__)

#: ``--split`` value for the validation part carved from train (not a folder of the tree)
VALIDATION = "validation"


@dataclass
class EvalConfig:
    data: str
    model: str
    out: str
    split: str = "test"
    reader: str = config.DEFAULT_READER


def load_model(spark: SparkSession, uri: str) -> tuple[DeepImageFeaturizer, LogisticRegressionModel, dict]:
    """The two stages of a model saved by training, and its training summary."""
    fs = HadoopFS(spark, uri)
    if not fs.exists(f"{uri.rstrip('/')}/metadata"):
        raise ValueError(f"{uri} is not a saved PipelineModel (no metadata/ folder)")
    stages = PipelineModel.load(uri).stages
    if len(stages) != 2 or not isinstance(stages[0], DeepImageFeaturizer) \
            or not isinstance(stages[1], LogisticRegressionModel):
        raise ValueError(f"{uri} is not a DeepImageFeaturizer + LogisticRegression model")
    summary_uri = f"{uri.rstrip('/')}/{SUMMARY_FILE}"
    summary = json.loads(fs.read_bytes(summary_uri)) if fs.exists(summary_uri) else {}
    return stages[0], stages[1], summary


def _listing_for(spark: SparkSession, cfg: EvalConfig, summary: dict):
    """The films of ``cfg.split``; ``validation`` is the patient-grouped part of train that
    this model's training held out (same fraction and seed, from its training summary)."""
    if cfg.split != VALIDATION:
        return scan_tree(spark, cfg.data, (cfg.split,))
    train_cfg = summary.get("config")
    if not train_cfg:
        raise ValueError(f"{cfg.model} has no training summary: its validation split is unknown")
    listing = scan_tree(spark, cfg.data, ("train",))
    keep = validation_mask(listing.images, train_cfg["val_fraction"], train_cfg["seed"])
    listing.images = listing.images[keep].reset_index(drop=True)
    return listing


def evaluate(spark: SparkSession, cfg: EvalConfig) -> dict:
    """Score ``cfg.split`` and write metrics.json, plots, predictions.csv and report.html."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    featurizer, classifier, summary = load_model(spark, cfg.model)
    prepare_output(spark, cfg.out)
    with step(spark, f"scan {cfg.split}", timings):
        listing = _listing_for(spark, cfg, summary)
        listing.log_summary()
    done = featurize(spark, featurizer, read_images(spark, listing, cfg.reader),
                     f"featurize {cfg.split}", timings)
    with step(spark, f"evaluate {cfg.split}", timings):
        scored = (classifier.transform(done.frame)
                  .select("path", "label", pneumonia_score().alias("score"), "prediction")
                  .orderBy("path").toPandas())
    threshold = classifier.getThreshold()
    if not np.array_equal(scored["prediction"].to_numpy() == 1, scored["score"].to_numpy() > threshold):
        raise RuntimeError("Spark's predictions disagree with score > threshold; refusing to report")
    fpr, tpr, _ = roc_curve(scored["label"], scored["score"])
    timings["total"] = round(time.monotonic() - started, 3)
    doc = {
        "schema": SCHEMA,
        "method": "featurizer+lr",
        "model_name": featurizer.getModelFile() or featurizer.getModelName(),
        "weights": "fine-tuned (modelFile)" if featurizer.getModelFile() else featurizer.getWeights(),
        "data": listing.root,
        "model": cfg.model,
        "split": cfg.split,
        "metrics": binary_metrics(scored["label"], scored["score"], threshold),
        "threshold_source": summary.get("threshold_source", "stored in the model"),
        "roc": {"fpr": [round(x, 6) for x in fpr], "tpr": [round(x, 6) for x in tpr]},
        "timings_s": timings,
        "images_per_s": round(done.total / max(timings["total"], 1e-9), 2),
        "training": {k: summary[k] for k in ("split", "validation_metrics", "timings_s",
                                             "featurize_images_per_s") if k in summary},
        "skipped": listing_skips(listing) + done.skipped,
        "duplicates": done.duplicates,
        "warnings": listing.warnings,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spark": {"app_id": spark.sparkContext.applicationId, "master": spark.sparkContext.master},
    }
    with tempfile.TemporaryDirectory() as local:
        out_dir = Path(local)
        write_metrics_report(out_dir, doc)
        scored.assign(label=scored["label"].astype(int), prediction=scored["prediction"].astype(int)) \
            .to_csv(out_dir / "predictions.csv", index=False)
        with atomic_output(spark, cfg.out) as tmp:
            HadoopFS(spark, tmp).put_dir(out_dir, tmp)
    m = doc["metrics"]
    log.info("%s on %d films: %s -> %s", cfg.split, m["counts"]["total"], headline(m), cfg.out)
    return doc
