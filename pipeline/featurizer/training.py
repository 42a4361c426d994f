"""Training: featurize the train split, fit the classifier, pick the threshold, save the model.

The validation part is carved from train by patient (pipeline.data.split); the classifier
never sees it, and the threshold is chosen on it alone. The saved PipelineModel
(DeepImageFeaturizer + LogisticRegressionModel with that threshold) scores raw images.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.data.dataset import scan_tree
from pipeline.data.split import split_counts
from pipeline.featurizer.classifier import make_classifier, pneumonia_score, with_class_weights
from pipeline.featurizer.features import cached_featurize
from pipeline.featurizer.model_store import SavedModel, save_model
from pipeline.featurizer.summary import TrainConfig, TrainingSummary
from pipeline.featurizer.transformer import DeepImageFeaturizer
from pipeline.fs.storage import prepare_output
from pipeline.report.document import spark_run
from pipeline.report.metrics import binary_metrics, headline, threshold_for_sensitivity
from pipeline.runtime.session import step

log = logging.getLogger(__name__)


def train(spark: SparkSession, cfg: TrainConfig) -> SavedModel:
    """Run the whole training; returns the model and summary it also saved."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    featurizer = DeepImageFeaturizer(modelName=cfg.model_name, weights=cfg.weights,
                                     pooling=cfg.pooling, batchSize=cfg.batch_size, seed=cfg.seed,
                                     precision=cfg.precision, draftDecode=cfg.draft_decode)
    cfg = dataclasses.replace(cfg, precision=featurizer.getPrecision())  # what auto chose
    for out in filter(None, (cfg.model_out, cfg.features_cache)):
        prepare_output(spark, out)
    featurizer.check_weights(spark)
    with step(spark, "scan train", timings):
        listing = scan_tree(spark, cfg.data, ("train",)).with_validation(cfg.val_fraction, cfg.seed)
        listing.log_summary()
    done = cached_featurize(spark, featurizer, listing, cfg.reader, cfg.features_cache,
                            "featurize train", timings)

    with step(spark, "fit classifier", timings):
        fit_part, class_weights = with_class_weights(done.frame.filter(~F.col("is_val")))
        lr_model = make_classifier(cfg.max_iter, cfg.reg_param, cfg.elastic_net).fit(fit_part)
    with step(spark, "choose threshold", timings):
        val = (lr_model.transform(done.frame.filter(F.col("is_val")))
               .select("label", pneumonia_score().alias("score")).toPandas())
        threshold = threshold_for_sensitivity(val["label"], val["score"], cfg.target_sensitivity)
        lr_model.setThreshold(threshold)
        val_metrics = binary_metrics(val["label"], val["score"], threshold)
    log.info("threshold %.4f on %d validation films: %s", threshold, len(val),
             headline(val_metrics, ("sensitivity", "specificity")))

    timings["total"] = round(time.monotonic() - started, 3)  # saving the model excluded
    summary = TrainingSummary(
        config=cfg, listed=len(listing.images), featurized=done.total - len(done.skipped),
        skipped=listing.skipped + done.skipped, duplicates=done.duplicates,
        warnings=listing.warnings, split=split_counts(listing.images),
        class_weights={str(k): v for k, v in class_weights.items()}, threshold=threshold,
        threshold_source=(f"highest threshold reaching sensitivity {cfg.target_sensitivity} on "
                          f"the patient-grouped validation split ({len(val)} films)"),
        validation_metrics=val_metrics, timings_s=dict(timings),
        featurize_images_per_s=round(done.total / max(timings["featurize train"], 1e-9), 2),
        spark=spark_run(spark))
    model = SavedModel(featurizer, lr_model, summary)
    with step(spark, "save model"):
        save_model(spark, cfg.model_out, model)
    log.info("model saved to %s in %.1fs total", cfg.model_out, time.monotonic() - started)
    return model
