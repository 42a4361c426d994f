"""Evaluation: score one split of a tree with a saved model and write the report."""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession

from pipeline import config
from pipeline.data.dataset import Listing, scan_tree
from pipeline.featurizer.classifier import pneumonia_score
from pipeline.featurizer.features import featurize
from pipeline.featurizer.model_store import SavedModel, load_model
from pipeline.fs.storage import HadoopFS, atomic_output, prepare_output
from pipeline.report.document import MetricsDocument
from pipeline.report.metrics import headline
from pipeline.report.page import write_metrics_report
from pipeline.runtime.session import step

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


def _listing_for(spark: SparkSession, cfg: EvalConfig, saved: SavedModel) -> Listing:
    """The films of ``cfg.split``; ``validation`` is the patient-grouped part of train that
    this model's training held out (same fraction and seed, from its training summary)."""
    if cfg.split != VALIDATION:
        return scan_tree(spark, cfg.data, (cfg.split,))
    if saved.summary is None:
        raise ValueError(f"{cfg.model} has no training summary: its validation split is unknown")
    train = saved.summary.config
    listing = scan_tree(spark, cfg.data, ("train",)).with_validation(train.val_fraction, train.seed)
    listing.images = listing.images[listing.images["is_val"]].reset_index(drop=True)
    return listing


def evaluate(spark: SparkSession, cfg: EvalConfig) -> MetricsDocument:
    """Score ``cfg.split`` and write metrics.json, plots, predictions.csv and report.html."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    saved = load_model(spark, cfg.model)
    featurizer, classifier = saved.featurizer, saved.classifier
    if cfg.precision:
        featurizer = featurizer.copy({featurizer.precision: cfg.precision})
    prepare_output(spark, cfg.out)
    with step(spark, f"scan {cfg.split}", timings):
        listing = _listing_for(spark, cfg, saved)
        listing.log_summary()
    done = featurize(spark, featurizer, listing, cfg.reader, f"featurize {cfg.split}", timings)
    with step(spark, f"evaluate {cfg.split}", timings):
        scored = (classifier.transform(done.frame)
                  .select("path", "label", pneumonia_score().alias("score"), "prediction")
                  .orderBy("path").toPandas())
    threshold = classifier.getThreshold()
    if not np.array_equal(scored["prediction"].to_numpy() == 1, scored["score"].to_numpy() > threshold):
        raise RuntimeError("Spark's predictions disagree with score > threshold; refusing to report")
    timings["total"] = round(time.monotonic() - started, 3)
    doc = MetricsDocument.build(
        spark, labels=scored["label"], scores=scored["score"], threshold=threshold,
        method="featurizer+lr",
        model_name=featurizer.getModelFile() or featurizer.getModelName(),
        weights="fine-tuned (modelFile)" if featurizer.getModelFile() else featurizer.getWeights(),
        data=listing.root, model=cfg.model, split=cfg.split,
        threshold_source=saved.summary.threshold_source if saved.summary else "stored in the model",
        timings_s=timings, images_per_s=round(done.total / max(timings["total"], 1e-9), 2),
        training=saved.summary.for_report() if saved.summary else {},
        skipped=listing.skipped + done.skipped, duplicates=done.duplicates,
        warnings=listing.warnings)
    with tempfile.TemporaryDirectory() as local:
        out_dir = Path(local)
        write_metrics_report(out_dir, doc)
        scored.assign(label=scored["label"].astype(int), prediction=scored["prediction"].astype(int)) \
            .to_csv(out_dir / "predictions.csv", index=False)
        with atomic_output(spark, cfg.out) as tmp:
            HadoopFS(spark, tmp).put_dir(out_dir, tmp)
    m = doc.metrics
    log.info("%s on %d films: %s -> %s", cfg.split, m["counts"]["total"], headline(m), cfg.out)
    return doc
