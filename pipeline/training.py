"""Training: featurize the train split, fit the classifier, pick the threshold, save the model.

The validation part is carved from train by patient (pipeline.split); the classifier never
sees it, and the threshold is chosen on it alone. The saved PipelineModel
(DeepImageFeaturizer + LogisticRegressionModel with that threshold) scores raw images.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline import config
from pipeline.classifier import make_classifier, pneumonia_score, with_class_weights
from pipeline.dataset import read_images, scan_tree
from pipeline.features import cached_featurize
from pipeline.featurizer import DeepImageFeaturizer
from pipeline.metrics import binary_metrics, headline, threshold_for_sensitivity
from pipeline.session import step
from pipeline.split import validation_mask
from pipeline.storage import HadoopFS, atomic_output, prepare_output

log = logging.getLogger(__name__)

SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainConfig:
    data: str
    model_out: str
    model_name: str = config.DEFAULT_MODEL
    weights: str = "imagenet"
    pooling: str = config.DEFAULT_POOLING
    batch_size: int = config.DEFAULT_BATCH_SIZE
    reader: str = config.DEFAULT_READER
    features_cache: str | None = None
    max_iter: int = config.LR_MAX_ITER
    reg_param: float = config.LR_REG_PARAM
    elastic_net: float = config.LR_ELASTIC_NET
    target_sensitivity: float = config.TARGET_SENSITIVITY
    val_fraction: float = config.VALIDATION_FRACTION
    seed: int = config.SEED


def train(spark: SparkSession, cfg: TrainConfig) -> dict:
    """Run the whole training; returns the summary that is also saved beside the model."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    featurizer = DeepImageFeaturizer(modelName=cfg.model_name, weights=cfg.weights,
                                     pooling=cfg.pooling, batchSize=cfg.batch_size, seed=cfg.seed)
    for out in filter(None, (cfg.model_out, cfg.features_cache)):
        prepare_output(spark, out)
    featurizer.check_weights(spark)
    with step(spark, "scan train", timings):
        listing = scan_tree(spark, cfg.data, ("train",))
        listing.log_summary()
    images = listing.images.assign(is_val=validation_mask(listing.images, cfg.val_fraction, cfg.seed))
    done = cached_featurize(
        spark, featurizer, read_images(spark, listing, cfg.reader), list(images["path"]),
        cfg.features_cache, "featurize train", timings)
    side = spark.createDataFrame(images[["path", "is_val"]])
    features = done.frame.join(F.broadcast(side), on="path")

    with step(spark, "fit classifier", timings):
        fit_part, class_weights = with_class_weights(features.filter(~F.col("is_val")))
        lr_model = make_classifier(cfg.max_iter, cfg.reg_param, cfg.elastic_net).fit(fit_part)
    with step(spark, "choose threshold", timings):
        val = (lr_model.transform(features.filter(F.col("is_val")))
               .select("label", pneumonia_score().alias("score")).toPandas())
        threshold = threshold_for_sensitivity(val["label"], val["score"], cfg.target_sensitivity)
        lr_model.setThreshold(threshold)
        val_metrics = binary_metrics(val["label"], val["score"], threshold)
    log.info("threshold %.4f on %d validation films: %s", threshold, len(val),
             headline(val_metrics, ("sensitivity", "specificity")))

    summary = {
        "config": asdict(cfg),
        "images": {"listed": int(len(images)), "featurized": done.total - len(done.skipped),
                   "skipped": listing_skips(listing) + done.skipped,
                   "duplicates": done.duplicates},
        "warnings": listing.warnings,
        "split": split_counts(images),
        "class_weights": {str(k): v for k, v in class_weights.items()},
        "threshold": threshold,
        "threshold_source": (f"highest threshold reaching sensitivity {cfg.target_sensitivity} on "
                             f"the patient-grouped validation split ({len(val)} films)"),
        "validation_metrics": val_metrics,
        "timings_s": timings,
        "featurize_images_per_s": round(done.total / max(timings["featurize train"], 1e-9), 2),
        "spark": {"app_id": spark.sparkContext.applicationId, "master": spark.sparkContext.master},
    }
    with step(spark, "save model", timings):
        model = PipelineModel(stages=[featurizer, lr_model])
        with atomic_output(spark, cfg.model_out) as tmp:
            model.write().save(tmp)
            summary["timings_s"]["total"] = round(time.monotonic() - started, 3)
            HadoopFS(spark, tmp).write_bytes(f"{tmp}/{SUMMARY_FILE}",
                                             json.dumps(summary, indent=2).encode())
    log.info("model saved to %s in %.1fs total", cfg.model_out, time.monotonic() - started)
    return summary


def listing_skips(listing) -> list[dict]:
    return [{"path": p, "reason": r} for p, r in listing.skipped]


def split_counts(images) -> dict:
    """Films, patients and classes on each side of the patient-grouped split, for the summary."""
    out = {}
    for name, part in (("fit", images[~images.is_val]), ("validation", images[images.is_val])):
        out[name] = {"films": int(len(part)), "patients": int(part.patient_id.nunique()),
                     "pneumonia": int(np.sum(part.label == 1)), "normal": int(np.sum(part.label == 0))}
    return out
