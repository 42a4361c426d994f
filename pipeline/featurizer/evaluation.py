"""Evaluation: score one split of a tree with a saved model and write the report.

The report grades the films at the model's stored threshold, or at one re-derived from the
validation scores stored with the model for another sensitivity target (no retraining); it
adds per-patient figures, patient-clustered intervals, the model's calibration and the
operating points at ``config.OPERATING_TARGETS``. ``with_validation`` also scores the
validation part of train into predictions.csv (``subset`` column), which an ensemble of runs
needs to fit its calibration and threshold on (``pipeline.report.ensemble``).
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline import config
from pipeline.data.dataset import Listing, scan_tree
from pipeline.featurizer.classifier import pneumonia_score
from pipeline.featurizer.features import featurize
from pipeline.featurizer.model_store import SavedModel, load_model
from pipeline.fs.storage import HadoopFS, atomic_output, prepare_output
from pipeline.report.document import MetricsDocument
from pipeline.report.metrics import headline, threshold_for_sensitivity
from pipeline.report.page import write_metrics_report
from pipeline.runtime.session import releasing, step

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
    #: None: the precision the model was trained with (``runtime.precision``).
    precision: str | None = None
    #: None: the model's stored threshold; else the highest threshold reaching this
    #: sensitivity on the validation scores stored with the model.
    target_sensitivity: float | None = None
    #: Also score the validation part of train (``subset`` validation in predictions.csv).
    with_validation: bool = False


def _listing_for(spark: SparkSession, cfg: EvalConfig, saved: SavedModel) -> Listing:
    """The films of ``cfg.split`` (``subset`` column: the split's name), and those of the
    validation part with ``with_validation``; ``validation`` is the patient-grouped part of
    train that this model's training held out (same fraction and seed, from its summary)."""
    validation = cfg.split == VALIDATION or cfg.with_validation
    if not validation:
        listing = scan_tree(spark, cfg.data, (cfg.split,))
        return dataclasses.replace(listing, images=listing.images.withColumn("subset",
                                                                            F.lit(cfg.split)))
    if saved.summary is None:
        raise ValueError(f"{cfg.model} has no training summary: its validation split is unknown")
    train = saved.summary.config
    splits = ("train",) if cfg.split == VALIDATION else ("train", cfg.split)
    listing = scan_tree(spark, cfg.data, splits).with_validation(train.val_fraction, train.seed)
    images = listing.images.filter(F.col("is_val") | (F.col("split") == cfg.split))
    return dataclasses.replace(listing, images=images.withColumn(
        "subset", F.when(F.col("is_val"), VALIDATION).otherwise(cfg.split)))


def _threshold(cfg: EvalConfig, saved: SavedModel) -> tuple[float, str]:
    """The threshold to grade at and where it came from."""
    if cfg.target_sensitivity is None:
        return (saved.classifier.getThreshold(),
                saved.summary.threshold_source if saved.summary else "stored in the model")
    if not 0 < cfg.target_sensitivity <= 1:
        raise ValueError(f"--target-sensitivity must be in (0, 1], got {cfg.target_sensitivity}")
    val = saved.validation
    if val is None:
        raise ValueError(f"{cfg.model} stores no validation scores (trained before they were "
                         "kept): retrain it to choose another sensitivity target")
    threshold = threshold_for_sensitivity(val.labels, val.scores, cfg.target_sensitivity)
    log.info("threshold %.4f re-derived for sensitivity %s from %d stored validation scores "
             "(the model's own: %.4f)", threshold, cfg.target_sensitivity, len(val.labels),
             saved.classifier.getThreshold())
    return threshold, (f"highest threshold reaching sensitivity {cfg.target_sensitivity} on the "
                       f"patient-grouped validation split ({len(val.labels)} films), re-derived "
                       f"at evaluation from the validation scores stored with the model")


@releasing()
def evaluate(spark: SparkSession, cfg: EvalConfig) -> MetricsDocument:
    """Score ``cfg.split`` and write metrics.json, plots, predictions.csv and report.html."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    saved = load_model(spark, cfg.model)
    featurizer = saved.featurizer
    if cfg.precision:
        featurizer = featurizer.copy({featurizer.precision: cfg.precision})
    threshold, threshold_source = _threshold(cfg, saved)
    classifier = saved.classifier.copy({saved.classifier.threshold: threshold})
    prepare_output(spark, cfg.out)
    with step(spark, f"scan {cfg.split}", timings):
        listing = _listing_for(spark, cfg, saved)
        listing.log_summary()
    done = featurize(spark, featurizer, listing, cfg.reader, f"featurize {cfg.split}", timings)
    with step(spark, f"evaluate {cfg.split}", timings):
        subsets = listing.images.select("path", "subset")
        every = (classifier.transform(done.frame.join(subsets, on="path"))
                 .select("subset", "path", "label", pneumonia_score().alias("score"), "prediction")
                 .orderBy("subset", "path").toPandas())
    if not np.array_equal(every["prediction"].to_numpy() == 1, every["score"].to_numpy() > threshold):
        raise RuntimeError("Spark's predictions disagree with score > threshold; refusing to report")
    scored = every[every["subset"] == cfg.split]
    timings["total"] = round(time.monotonic() - started, 3)
    doc = MetricsDocument.build(
        spark, labels=scored["label"], scores=scored["score"], threshold=threshold,
        paths=scored["path"].tolist(), validation=saved.validation, calibrator=saved.calibrator,
        method="featurizer+lr",
        model_name=featurizer.getModelFile() or featurizer.getModelName(),
        weights="fine-tuned (modelFile)" if featurizer.getModelFile() else featurizer.getWeights(),
        data=listing.root, model=cfg.model, split=cfg.split,
        threshold_source=threshold_source,
        timings_s=timings, images_per_s=round(done.total / max(timings["total"], 1e-9), 2),
        training=saved.summary.for_report() if saved.summary else {},
        skipped=listing.skipped + done.skipped, duplicates=done.duplicates,
        warnings=listing.warnings)
    with tempfile.TemporaryDirectory() as local:
        out_dir = Path(local)
        write_metrics_report(out_dir, doc)
        every.assign(label=every["label"].astype(int), prediction=every["prediction"].astype(int)) \
            .to_csv(out_dir / "predictions.csv", index=False)
        with atomic_output(spark, cfg.out) as tmp:
            HadoopFS(spark, tmp).put_dir(out_dir, tmp)
    m = doc.metrics
    log.info("%s on %d films: %s -> %s", cfg.split, m["counts"]["total"], headline(m), cfg.out)
    return doc
