"""Training: featurize the train split, fit the classifier, pick the threshold, save the model.

The validation part is carved from train by patient (pipeline.data.split); the classifier
never sees it, and the threshold and the Platt calibration are chosen on it alone. Its labels
and scores (no paths) are stored in the summary, so evaluate can re-derive a threshold for
another sensitivity target without retraining. The saved PipelineModel (DeepImageFeaturizer +
LogisticRegressionModel with that threshold) scores raw images.

With ``cv_folds`` K, the same recipe (fit on part, threshold and calibration on a
patient-grouped inner validation part, grade on films never seen) first runs on each of K
patient-grouped, stratified folds of the whole train split, on the features already computed:
K cheap logistic-regression fits. The final model is then fitted exactly as without it.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import pandas as pd
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.data.dataset import Listing, scan_tree
from pipeline.data.patients import patient_id
from pipeline.data.split import (
    FIT,
    HELD_OUT,
    INNER_VALIDATION,
    check_fold_count,
    fold_roles,
    split_counts,
)
from pipeline.featurizer.classifier import make_classifier, pneumonia_score, with_class_weights
from pipeline.featurizer.features import cached_featurize
from pipeline.featurizer.model_store import SavedModel, save_model
from pipeline.featurizer.summary import TrainConfig, TrainingSummary
from pipeline.featurizer.transformer import DeepImageFeaturizer
from pipeline.fs.storage import prepare_output
from pipeline.report.calibration import fit_platt
from pipeline.report.crossval import FoldGrades, folds_how
from pipeline.report.document import ScoredPart, spark_run
from pipeline.report.metrics import binary_metrics, headline, roc_auc, threshold_for_sensitivity
from pipeline.runtime.session import releasing, step

log = logging.getLogger(__name__)


def _fit(cfg: TrainConfig, frame: DataFrame, validation: DataFrame
         ) -> tuple[LogisticRegressionModel, dict[int, float], pd.DataFrame, dict | None]:
    """The class-weighted logistic regression on ``frame``'s features and its scores on
    ``validation``. With ``cfg.reg_grid``, each candidate is fitted and the one with the best
    validation ROC AUC (the first of equals) kept, with a record of the choice."""
    weighted, class_weights = with_class_weights(frame)
    candidates = cfg.reg_grid or ((cfg.reg_param, cfg.elastic_net),)
    if len(candidates) > 1:
        weighted = weighted.cache()
    fits = []
    for reg, net in candidates:
        model = make_classifier(cfg.max_iter, reg, net).fit(weighted)
        scored = _scores(model, validation)
        fits.append((roc_auc(scored["label"].to_numpy(dtype=int),
                             scored["score"].to_numpy(dtype=float)), reg, net, model, scored))
    auc, reg, net, model, scored = max(fits, key=lambda fit: fit[0])
    if not cfg.reg_grid:
        return model, class_weights, scored, None
    weighted.unpersist()
    log.info("regularisation: regParam %g, elasticNet %g of %d candidates (validation ROC AUC "
             "%.4f)", reg, net, len(candidates), auc)
    return model, class_weights, scored, {"reg_param": reg, "elastic_net": net,
                                          "validation_roc_auc": auc}


def _scores(model: LogisticRegressionModel, frame: DataFrame) -> pd.DataFrame:
    """path, label and P(PNEUMONIA) of every film of ``frame``, by path."""
    return (model.transform(frame).select("path", "label", pneumonia_score().alias("score"))
            .orderBy("path").toPandas())


def cross_validate(spark: SparkSession, cfg: TrainConfig, frame: DataFrame,
                   listing: Listing) -> dict:
    """``cfg.cv_folds`` folds of the featurized train films: per fold, the final recipe on
    the other folds, graded on it (``pipeline.report.crossval``). The folds are drawn on the
    driver from the featurized films' patients and labels (their scores come there too)."""
    images = (listing.images.join(frame.select("path"), on="path")
              .select("path", "patient_id", "label").orderBy("path").toPandas())
    roles = fold_roles(images, cfg.cv_folds, cfg.val_fraction, cfg.seed)
    # A few MB of vectors iterated over by every fit: one partition per core, not one per
    # feature-cache file, or task overhead outweighs the work (42 files: 20x the tasks).
    data = (frame.join(spark.createDataFrame(roles), on="path")
            .coalesce(spark.sparkContext.defaultParallelism).cache())
    grades = FoldGrades(cfg.target_sensitivity, cfg.cv_folds)
    for k in range(cfg.cv_folds):
        role = F.col(f"role{k}")
        model, _, val, chosen = _fit(cfg, data.filter(role == FIT),
                                     data.filter(role == INNER_VALIDATION))
        held = _scores(model, data.filter(role == HELD_OUT))
        grades.add(ScoredPart.of(val), ScoredPart.of(held), [patient_id(p) for p in held["path"]],
                   **({"chosen": chosen} if chosen else {}))
    data.unpersist()
    how = folds_how(cfg.cv_folds, cfg.val_fraction, cfg.target_sensitivity,
                    "the classifier is fitted")
    if cfg.reg_grid:
        how += (f"; regParam and elasticNet chosen per fold among {list(cfg.reg_grid)} by ROC "
                f"AUC on that validation part")
    return grades.summary(how)


@releasing()
def train(spark: SparkSession, cfg: TrainConfig) -> SavedModel:
    """Run the whole training; returns the model and summary it also saved."""
    check_fold_count(cfg.cv_folds)
    started = time.monotonic()
    timings: dict[str, float] = {}
    featurizer = DeepImageFeaturizer(modelName=cfg.model_name, weights=cfg.weights,
                                     pooling=cfg.pooling, batchSize=cfg.batch_size,
                                     seed=cfg.seed if cfg.featurizer_seed is None else cfg.featurizer_seed,
                                     precision=cfg.precision, draftDecode=cfg.draft_decode,
                                     modelFile=cfg.model_file or "", clahe=cfg.clahe,
                                     inputSize=cfg.input_size)
    cfg = dataclasses.replace(cfg, precision=featurizer.getPrecision())  # what auto chose
    for out in filter(None, (cfg.model_out, cfg.features_cache)):
        prepare_output(spark, out)
    featurizer.check_weights(spark)
    with step(spark, "scan train", timings):
        listing = scan_tree(spark, cfg.data, ("train",)).with_validation(cfg.val_fraction, cfg.seed)
        listing.log_summary()
    done = cached_featurize(spark, featurizer, listing, cfg.reader, cfg.features_cache,
                            "featurize train", timings)
    cross_validation = None
    if cfg.cv_folds:
        with step(spark, f"cross-validate ({cfg.cv_folds} folds)", timings):
            cross_validation = cross_validate(spark, cfg, done.frame, listing)

    with step(spark, "fit classifier", timings):
        lr_model, class_weights, val, chosen = _fit(cfg, done.frame.filter(~F.col("is_val")),
                                                    done.frame.filter(F.col("is_val")))
    with step(spark, "choose threshold", timings):
        threshold = threshold_for_sensitivity(val["label"], val["score"], cfg.target_sensitivity)
        lr_model.setThreshold(threshold)
        val_metrics = binary_metrics(val["label"], val["score"], threshold)
        calibrator = fit_platt(val["label"], val["score"])
    log.info("threshold %.4f on %d validation films: %s; calibration slope %.3f intercept %.3f",
             threshold, len(val), headline(val_metrics, ("sensitivity", "specificity")),
             calibrator.slope, calibrator.intercept)

    timings["total"] = round(time.monotonic() - started, 3)  # saving the model excluded
    summary = TrainingSummary(
        config=cfg, listed=listing.images.count(), featurized=done.total - len(done.skipped),
        skipped=listing.skipped + done.skipped, duplicates=done.duplicates,
        warnings=listing.warnings, split=split_counts(listing.images),
        class_weights={str(k): v for k, v in class_weights.items()}, threshold=threshold,
        threshold_source=(f"highest threshold reaching sensitivity {cfg.target_sensitivity} on "
                          f"the patient-grouped validation split ({len(val)} films)"),
        validation_metrics=val_metrics, timings_s=dict(timings),
        featurize_images_per_s=round(done.total / max(timings["featurize train"], 1e-9), 2),
        spark=spark_run(spark), calibration=calibrator.to_dict(),
        validation_scores={"label": val["label"].astype(int).tolist(),
                           "score": val["score"].astype(float).tolist()},
        cross_validation=cross_validation, regularisation=chosen)
    model = SavedModel(featurizer, lr_model, summary)
    with step(spark, "save model"):
        save_model(spark, cfg.model_out, model)
    log.info("model saved to %s in %.1fs total", cfg.model_out, time.monotonic() - started)
    return model
