"""The fine-tuning job: the report's two Keras methods, trained inside a Spark application.

Steps, each a named step in the Spark UI:
1. list the tree (train, and test when it is scored) and carve the patient-grouped
   validation part out of train (``pipeline.data.split``: the one split every arm uses);
2. Spark decodes and resizes every film once into a Parquet pixel cache under the job's
   temporary output (``pipeline.finetune.pixel_cache``);
3. with ``--cv K``, K patient-grouped folds of train are each trained and graded the same
   way first (the final run's recipe, on the same pixel cache; ``cross_validate``);
4. one barrier task trains on an executor, on its GPU when the cluster offers one, keeping
   the epoch with the lowest validation loss (``pipeline.finetune.task``);
5. the driver picks the decision threshold on the validation scores alone, then reports
   the chosen split: ``test`` (the tree's own), or ``validation`` when the tree has none;
6. ``model.keras`` (written by the task), ``history.json``, ``training_curves.png``,
   ``predictions.csv`` and the metrics report land at ``--out`` atomically: a failure
   anywhere leaves nothing there.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark import RDD
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline import config
from pipeline.data.dataset import Listing, scan_tree
from pipeline.data.patients import patient_id
from pipeline.data.split import HELD_OUT, check_fold_count, fold_roles, split_counts
from pipeline.data.tree import TreeError
from pipeline.featurizer.models import IMAGENET, NO_WEIGHTS
from pipeline.finetune.barrier import GPU_MODES, run_single_task
from pipeline.finetune.augment import AUGMENTS
from pipeline.finetune.models import MIN_IMAGE_SIZE
from pipeline.finetune.pixel_cache import PixelCache, training_rows, write_pixel_cache
from pipeline.finetune.plan import MODEL_FILE, TrainPlan
from pipeline.finetune.task import training_task
from pipeline.fs.storage import HadoopFS, atomic_output
from pipeline.fs.task_files import task_target
from pipeline.report.crossval import FoldGrades, folds_how
from pipeline.report.curves import plot_history
from pipeline.report.document import MetricsDocument, ScoredPart
from pipeline.report.metrics import binary_metrics, headline, threshold_for_sensitivity
from pipeline.report.page import write_metrics_report
from pipeline.runtime.precision import CHOICES as PRECISIONS
from pipeline.runtime.session import pinned, releasing, step

log = logging.getLogger(__name__)

SCORED_SPLITS = ("test", "validation")
BACKENDS = ("tensorflow", "jax", "torch")
MODEL_NAMES = {"cnn": "report-cnn", "inceptionv3": "InceptionV3"}


@dataclass(frozen=True)
class FinetuneConfig:
    arch: str
    data: str
    out: str
    epochs: int = config.FINETUNE_EPOCHS
    #: inceptionv3: ``imagenet`` (default), ``none`` or a no-top weights file URI; cnn: none.
    weights: str | None = None
    batch_size: int = config.FINETUNE_BATCH_SIZE
    image_size: int = config.FINETUNE_IMAGE_SIZE
    unfreeze_epochs: int = config.FINETUNE_UNFREEZE_EPOCHS
    learning_rate: float = config.FINETUNE_LEARNING_RATE
    unfreeze_learning_rate: float = config.FINETUNE_UNFREEZE_LEARNING_RATE
    seed: int = config.SEED
    target_sensitivity: float = config.TARGET_SENSITIVITY
    val_fraction: float = config.VALIDATION_FRACTION
    max_images: int | None = None
    split: str = "test"
    gpu: str = "auto"
    backend: str = field(default_factory=lambda: os.environ.get("KERAS_BACKEND", "tensorflow"))
    #: ``runtime.precision``: ``auto`` is decided by the training task on its device.
    precision: str = config.PRECISION
    #: Contrast-equalise the films (``pipeline.data.preprocess``); recorded in the document's
    #: ``training.config``, from which predict does the same.
    clahe: bool = False
    #: Patient-grouped cross-validation folds trained before the final run (0: none).
    cv_folds: int = 0
    #: The recipe beyond the report's: ``augment.AUGMENTS``, ``config.SCHEDULES``, and the
    #: label smoothing of the loss (0: none).
    augment: str = "report"
    schedule: str = "plateau"
    label_smoothing: float = 0.0

    def check(self) -> None:
        """Refuse settings that cannot work, before any Spark work starts."""
        choices = {"arch": config.FINETUNE_ARCHS, "split": SCORED_SPLITS, "gpu": GPU_MODES,
                   "backend": BACKENDS, "precision": PRECISIONS, "augment": AUGMENTS,
                   "schedule": config.SCHEDULES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.image_size < MIN_IMAGE_SIZE[self.arch]:
            raise ValueError(f"--image-size: {self.arch} needs at least {MIN_IMAGE_SIZE[self.arch]} px")
        if self.arch == "cnn" and self.weights not in (None, NO_WEIGHTS):
            raise ValueError("--weights applies to inceptionv3; the cnn trains from scratch")
        if self.unfreeze_epochs and (self.arch != "inceptionv3" or self.model_weights == NO_WEIGHTS):
            raise ValueError("--unfreeze-epochs needs --arch inceptionv3 with pretrained weights "
                             "(with --weights none the whole network trains from the start)")
        if self.unfreeze_epochs < 0:
            raise ValueError("--unfreeze-epochs must be at least 0")
        if self.max_images is not None and self.max_images < 8:
            raise ValueError("--max-images must be at least 8 (both classes on both sides)")
        if not 0 < self.target_sensitivity <= 1:
            raise ValueError("--target-sensitivity must be in (0, 1]")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError("--label-smoothing must be in [0, 0.5)")
        check_fold_count(self.cv_folds)

    @property
    def model_weights(self) -> str:
        """What the network starts from: ``none`` for the cnn, ``imagenet`` unless told."""
        return NO_WEIGHTS if self.arch == "cnn" else self.weights or IMAGENET

    @property
    def weights_file(self) -> str | None:
        """The weights URI to ship to the task, if the start is a file."""
        return None if self.model_weights in (IMAGENET, NO_WEIGHTS) else self.model_weights


def sample_listing(listing: Listing, max_images: int | None, seed: int) -> Listing:
    """At most ``max_images`` films per split, a seeded random choice (for quick runs): each
    split's films, in path order, sampled in one Spark task."""
    if max_images is None:
        return listing

    def sample(films: pd.DataFrame) -> pd.DataFrame:
        films = films.sort_values("path").reset_index(drop=True)
        return films.sample(n=min(len(films), max_images), random_state=seed)

    images = pinned(listing.images.groupBy("split").applyInPandas(sample, listing.images.schema))
    log.info("--max-images %d: using %d of %d films", max_images, images.count(),
             listing.images.count())
    return dataclasses.replace(listing, images=images)  # skipped files and warnings kept


def _scan(spark: SparkSession, cfg: FinetuneConfig) -> Listing:
    splits = ("train", "test") if cfg.split == "test" else ("train",)
    fs = HadoopFS(spark, cfg.data)
    if cfg.split == "test" and fs.exists(cfg.data) and not fs.exists(f"{cfg.data.rstrip('/')}/test"):
        raise TreeError(f"{cfg.data} has no test split: pass --split validation to report the "
                           "patient-grouped validation part of train instead")
    listing = sample_listing(scan_tree(spark, cfg.data, splits), cfg.max_images, cfg.seed)
    listing = listing.with_validation(cfg.val_fraction, cfg.seed)
    listing.log_summary()
    log.info("validation is carved from train by patient; the tree's own val/ folder is not used")
    return listing


def checked_split_counts(listing: Listing) -> dict:
    """Films, patients and classes of the fit and validation parts; both need both classes."""
    counts = split_counts(listing.images.filter(F.col("split") == "train"))
    for part, c in counts.items():
        if not c["normal"] or not c["pneumonia"]:
            raise ValueError(f"the {part} part of train needs both classes, found {c}")
    return counts


def _plan(cfg: FinetuneConfig, score_subsets: tuple[str, ...], save_model: bool = True) -> TrainPlan:
    return TrainPlan(cfg.arch, cfg.image_size, cfg.model_weights, cfg.epochs, cfg.unfreeze_epochs,
                     cfg.batch_size, cfg.learning_rate, cfg.unfreeze_learning_rate, cfg.seed,
                     cfg.backend, score_subsets, cfg.precision, save_model, cfg.augment,
                     cfg.schedule, cfg.label_smoothing)


def _ship_weights(spark: SparkSession, cfg: FinetuneConfig) -> str | None:
    """Send a weights file to the training tasks (SparkFiles); returns its name there."""
    if not cfg.weights_file:
        return None
    spark.sparkContext.addFile(cfg.weights_file)
    return os.path.basename(cfg.weights_file.rstrip("/"))


def _train(spark: SparkSession, cfg: FinetuneConfig, plan: TrainPlan, rows: RDD,
           weights_name: str | None, out_tmp: str) -> dict:
    """Run the barrier task over ``rows`` (``training_rows``); with ``plan.save_model`` it
    writes the model into ``out_tmp``."""
    task = functools.partial(training_task, plan, weights_name, task_target(spark, out_tmp))
    result = run_single_task(rows, task, cfg.gpu)[0]
    if "error" in result:
        raise ValueError(result["error"])
    return result


def cross_validate(spark: SparkSession, cfg: FinetuneConfig, cache_uri: str,
                   weights_name: str | None, out_tmp: str) -> dict:
    """``cfg.cv_folds`` folds of the cached train films, each a whole training (a barrier
    task like the final one) on the other folds less their patient-grouped validation part,
    graded on the fold (``pipeline.report.crossval``). Folds and parts are the ones
    ``jobs/train.py --cv`` draws from the same films and seed, so the two arms' folds can be
    ensembled (``jobs/ensemble.py --cv``)."""
    films = (spark.read.parquet(cache_uri)
             .filter(F.col("error").isNull() & (F.col("split") == "train"))
             .select("path", "patient_id", "label").orderBy("path").toPandas())
    roles = spark.createDataFrame(fold_roles(films, cfg.cv_folds, cfg.val_fraction, cfg.seed))
    plan = _plan(cfg, ("validation", HELD_OUT), save_model=False)
    grades = FoldGrades(cfg.target_sensitivity, cfg.cv_folds)
    for k in range(cfg.cv_folds):
        with step(spark, f"cross-validate: fold {k + 1} of {cfg.cv_folds}"):
            fold = roles.select("path", F.col(f"role{k}").alias("role"))
            rows = training_rows(spark, cache_uri, fold)
            result = _train(spark, cfg, plan, rows, weights_name, out_tmp)
        val, held = (_scores(result, s).sort_values("path") for s in ("validation", HELD_OUT))
        grades.add(ScoredPart.of(val), ScoredPart.of(held), [patient_id(p) for p in held["path"]],
                   best_epoch=result["best_epoch"], epochs_run=len(result["history"]))
    return grades.summary(folds_how(cfg.cv_folds, cfg.val_fraction, cfg.target_sensitivity,
                                    "the network is trained", "keeps the epoch with the lowest "
                                    "validation loss and "))


def _scores(result: dict, subset: str) -> pd.DataFrame:
    return pd.DataFrame(result["scores"][subset]).assign(subset=subset)


def evaluate_scores(result: dict, split: str, target: float) -> tuple[float, dict, pd.DataFrame]:
    """The threshold (from the validation scores only), the validation metrics at it, and the
    scores of ``split`` (path, label, score) that the report grades at it."""
    val = _scores(result, "validation")
    threshold = threshold_for_sensitivity(val["label"], val["score"], target)
    val_metrics = binary_metrics(val["label"], val["score"], threshold)
    return threshold, val_metrics, val if split == "validation" else _scores(result, split)


def _write_outputs(local: Path, doc: MetricsDocument, result: dict) -> None:
    history = {"arch": doc.training["arch"], "monitor": "val_loss (mode min)",
               "best_epoch": result["best_epoch"], "epochs": result["history"]}
    (local / "history.json").write_text(json.dumps(history, indent=2))
    plot_history(result["history"], result["best_epoch"], local / "training_curves.png")
    predictions = pd.concat([_scores(result, s) for s in result["scores"]])
    predictions.assign(label=predictions["label"].astype(int),
                       prediction=(predictions["score"] > doc.metrics["threshold"]).astype(int)) \
        .to_csv(local / "predictions.csv", index=False)
    write_metrics_report(local, doc)


@releasing()
def finetune(spark: SparkSession, cfg: FinetuneConfig) -> MetricsDocument:
    """Run the whole job; returns the metrics document also written to ``cfg.out``."""
    cfg.check()
    task_target(spark, cfg.out)  # an output the training task cannot write fails here, first
    started = time.monotonic()
    timings: dict[str, float] = {}
    with step(spark, "scan", timings):
        listing = _scan(spark, cfg)
        counts = checked_split_counts(listing)
    with atomic_output(spark, cfg.out) as tmp:
        cache_uri = f"{tmp}/pixel-cache"
        with step(spark, "decode and cache pixels", timings):
            cache = write_pixel_cache(spark, listing, cfg.image_size, cache_uri, cfg.seed,
                                      cfg.clahe)
        weights_name = _ship_weights(spark, cfg)
        cross_validation = None
        if cfg.cv_folds:
            with step(spark, f"cross-validate ({cfg.cv_folds} folds)", timings):
                cross_validation = cross_validate(spark, cfg, cache_uri, weights_name, tmp)
        with step(spark, "train (barrier task)", timings):
            plan = _plan(cfg, ("validation", "test") if cfg.split == "test" else ("validation",))
            result = _train(spark, cfg, plan, training_rows(spark, cache_uri), weights_name, tmp)
        fs = HadoopFS(spark, tmp)
        fs.delete(cache_uri)
        with step(spark, "choose threshold and score", timings):
            threshold, val_metrics, scored = evaluate_scores(result, cfg.split, cfg.target_sensitivity)
        log.info("threshold %.4f on %d validation films: %s", threshold,
                 val_metrics["counts"]["total"], headline(val_metrics, ("sensitivity", "specificity")))
        timings["total"] = round(time.monotonic() - started, 3)
        doc = _document(spark, cfg, listing, counts, cache, result, timings, threshold,
                        val_metrics, scored, cross_validation)
        with tempfile.TemporaryDirectory() as local:
            _write_outputs(Path(local), doc, result)
            for path in sorted(Path(local).iterdir()):
                fs.write_bytes(f"{tmp}/{path.name}", path.read_bytes())
    m = doc.metrics
    log.info("%s on %d %s films: %s -> %s", doc.method, m["counts"]["total"], cfg.split,
             headline(m, ("accuracy", "sensitivity", "specificity", "roc_auc")), cfg.out)
    return doc


def _document(spark: SparkSession, cfg: FinetuneConfig, listing: Listing, counts: dict,
              cache: PixelCache, result: dict, timings: dict, threshold: float,
              val_metrics: dict, scored: pd.DataFrame,
              cross_validation: dict | None) -> MetricsDocument:
    """The run's metrics document: ``scored`` graded at ``threshold``."""
    history = result["history"]
    per_epoch = [e["images_per_s"] for e in history]
    same = " (the reported metrics are on that same split, so they flatter the threshold)"
    return MetricsDocument.build(
        spark, labels=scored["label"], scores=scored["score"], threshold=threshold,
        paths=scored["path"].tolist(),
        validation=ScoredPart.of(_scores(result, "validation")),
        method=f"finetune-{cfg.arch}", model_name=MODEL_NAMES[cfg.arch], weights=cfg.model_weights,
        data=listing.root, model=f"{cfg.out.rstrip('/')}/{MODEL_FILE}", split=cfg.split,
        threshold_source=(f"highest threshold reaching sensitivity {cfg.target_sensitivity} on the "
                          f"patient-grouped validation split ({val_metrics['counts']['total']} films), "
                          f"scored by the epoch with the lowest validation loss"
                          + (same if cfg.split == "validation" else "")),
        timings_s=timings, images_per_s=round(float(np.mean(per_epoch[1:] or per_epoch)), 2),
        training={
            "arch": cfg.arch, "config": asdict(cfg), "backend": result["backend"],
            "precision": result["precision"],
            "device": result["device"], "epochs_run": len(history), "best_epoch": result["best_epoch"],
            "class_weight": {str(k): v for k, v in result["class_weight"].items()},
            "split": counts,
            "validation_metrics": val_metrics,
            "images_per_s_per_epoch": per_epoch,
            "images_per_s_means": "training images per second (augmentation, forward and backward "
                                  "pass; validation excluded), mean over the epochs after the "
                                  "first, which also traces and compiles the model",
            "timings_s": timings,
            **({"cross_validation": cross_validation} if cross_validation else {}),
        },
        skipped=listing.skipped + cache.skipped, duplicates=cache.duplicates,
        warnings=listing.warnings)
