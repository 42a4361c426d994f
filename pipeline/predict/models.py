"""The two kinds of model predict scores with, loaded on the driver into one description.

- a PipelineModel from ``jobs/train.py`` (DeepImageFeaturizer + logistic regression): the
  workers run the featurizer's backbone without pooling, so one forward pass gives both the
  score and its exact class activation map;
- a ``model.keras`` from ``jobs/finetune.py`` (the file, or the run's folder holding it): its
  threshold is the one the fine-tuning run chose on validation, in the ``metrics.json`` beside it.

Either way the threshold is the one the model was saved with, and rows name the model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from pipeline.featurizer.model_store import load_model
from pipeline.featurizer.transformer import WorkerConfig, stage_model_file
from pipeline.finetune.plan import MODEL_FILE
from pipeline.fs.storage import HadoopFS
from pipeline.report.calibration import Calibrator
from pipeline.report.document import METRICS_FILE, MetricsDocument

log = logging.getLogger(__name__)

FEATURIZER, KERAS = "featurizer+lr", "keras"


@dataclass(frozen=True)
class WorkerModel:
    """What a Python worker needs to rebuild the model (hashable: one build per worker)."""

    kind: str
    #: featurizer+lr: the backbone without pooling, and the regression on its pooled maps.
    featurizer: WorkerConfig | None = None
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    #: keras: the local name of the staged model file (SparkFiles).
    model_file: str = ""
    precision: str = "float32"
    draft_decode: bool = True
    #: The Platt scaling stored with the model (None for models saved without one).
    calibrator: Calibrator | None = None
    #: Films are contrast-equalised first (``pipeline.data.preprocess``), as in training.
    clahe: bool = False


@dataclass(frozen=True)
class ScreeningModel:
    """A loaded model, as the job and its outputs name it."""

    uri: str
    #: The architecture, e.g. "InceptionV3" or "cnn".
    name: str
    #: As the metrics document says it: "featurizer+lr" or "finetune-<arch>".
    method: str
    weights: str
    threshold: float
    worker: WorkerModel
    #: Why there are no class activation maps, when there cannot be ("" when there are).
    no_heatmaps: str = ""


def load_screening_model(spark: SparkSession, uri: str, precision: str | None = None) -> ScreeningModel:
    """Load ``uri`` (either kind); ValueError naming it when it is neither."""
    fs = HadoopFS(spark, uri)
    base = uri.rstrip("/")
    if base.endswith(".keras") or fs.exists(f"{base}/{MODEL_FILE}"):
        return _keras_model(spark, fs, base if base.endswith(".keras") else f"{base}/{MODEL_FILE}",
                            precision)
    saved = load_model(spark, uri)
    featurizer, classifier = saved.featurizer, saved.classifier
    if precision:
        featurizer = featurizer.copy({featurizer.precision: precision})
    cfg = featurizer.shipped_worker_config(spark)
    no_heatmaps = ""
    if cfg.model_file:
        no_heatmaps = "the features come from a fine-tuned model file's penultimate layer"
    elif cfg.pooling != "avg":
        no_heatmaps = f"the featurizer pools with {cfg.pooling!r}; the exact map needs 'avg'"
    coef = tuple(float(c) for c in classifier.coefficients.toArray())
    worker = WorkerModel(FEATURIZER, cfg, coef, float(classifier.intercept),
                         precision=cfg.precision, draft_decode=cfg.draft_decode,
                         calibrator=saved.calibrator, clahe=cfg.clahe)
    return ScreeningModel(uri, featurizer.getModelFile() or cfg.model_name, FEATURIZER, cfg.weights,
                          float(classifier.getThreshold()), worker, no_heatmaps)


def _keras_model(spark: SparkSession, fs: HadoopFS, model_uri: str,
                 precision: str | None) -> ScreeningModel:
    """A fine-tuned model file, with the threshold and weights its run's document records."""
    doc_uri = f"{model_uri.rpartition('/')[0]}/{METRICS_FILE}"
    if not fs.exists(model_uri):
        raise ValueError(f"{model_uri} does not exist")
    if not fs.exists(doc_uri):
        raise ValueError(f"{model_uri} has no {METRICS_FILE} beside it: its threshold is unknown "
                         "(give the folder jobs/finetune.py wrote)")
    doc = MetricsDocument.from_json(fs.read_bytes(doc_uri), doc_uri)
    if precision not in (None, "float32"):
        log.info("%s computes in the precision it was saved with; --precision %s ignored",
                 model_uri, precision)
    worker = WorkerModel(KERAS, model_file=stage_model_file(spark, model_uri),
                         clahe=bool(doc.training.get("config", {}).get("clahe")))
    return ScreeningModel(model_uri, doc.model_name, doc.method, str(doc.weights),
                          float(doc.metrics["threshold"]), worker)
