"""Saving and loading the featurizer + classifier model, with its training summary.

The model is a Spark ``PipelineModel`` (DeepImageFeaturizer + LogisticRegressionModel, the
threshold stored in the latter), so plain ``PipelineModel.load`` works anywhere; this module
adds the summary beside it and the checks a job wants before it trusts a folder.

Loading reads the pipeline's and the featurizer's metadata files itself. pyspark's reader runs
a Spark job for each of the four one-line JSON files its Python side opens
(``spark.read.text(...).first()``): about a second of a screening run's fixed cost on a warm
2-core session. The parameters are still set by pyspark's ``DefaultParamsReader``, the
regression still loads through Spark's own reader, and a folder of any other shape goes to
``PipelineModel.load``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.pipeline import PipelineSharedReadWrite
from pyspark.ml.util import DefaultParamsReader
from pyspark.sql import SparkSession

from pipeline.featurizer.summary import TrainingSummary
from pipeline.featurizer.transformer import DeepImageFeaturizer
from pipeline.fs.storage import HadoopFS, atomic_output
from pipeline.report.calibration import Calibrator
from pipeline.report.document import ScoredPart

SUMMARY_FILE = "training_summary.json"
#: The classes a saved model's metadata names, as pyspark writes them.
_PIPELINE = "pyspark.ml.pipeline.PipelineModel"
_FEATURIZER = ("pipeline.featurizer.DeepImageFeaturizer",
               f"{DeepImageFeaturizer.__module__}.{DeepImageFeaturizer.__name__}")
_CLASSIFIER = "org.apache.spark.ml.classification.LogisticRegressionModel"


@dataclass
class SavedModel:
    featurizer: DeepImageFeaturizer
    classifier: LogisticRegressionModel
    #: None for a model saved without one (by hand, with PipelineModel.save).
    summary: TrainingSummary | None

    @property
    def calibrator(self) -> Calibrator | None:
        """The Platt scaling fitted on the validation part; None for models trained before
        calibration was stored."""
        raw = self.summary.calibration if self.summary else None
        return Calibrator.from_dict(raw) if raw else None

    @property
    def validation(self) -> ScoredPart | None:
        """The validation films' labels and raw scores, as stored at training (None for
        models trained before they were)."""
        raw = self.summary.validation_scores if self.summary else None
        return ScoredPart(np.asarray(raw["label"], dtype=int),
                          np.asarray(raw["score"], dtype=float)) if raw else None


def calibrated_probabilities(model: SavedModel, scores: np.ndarray) -> np.ndarray:
    """P(PNEUMONIA) for the raw scores (``pneumonia_score``) of ``model``: its stored Platt
    scaling applied. ValueError for a model trained before calibration was stored."""
    calibrator = model.calibrator
    if calibrator is None:
        raise ValueError("this model was trained without a stored calibration: retrain it "
                         "(or refit on its feature cache) to get calibrated probabilities")
    return calibrator.apply(np.asarray(scores, dtype=float))


def save_model(spark: SparkSession, uri: str, model: SavedModel) -> None:
    """Write the model and its summary to ``uri`` atomically (see ``atomic_output``)."""
    with atomic_output(spark, uri) as tmp:
        PipelineModel(stages=[model.featurizer, model.classifier]).write().save(tmp)
        if model.summary is not None:
            HadoopFS(spark, tmp).write_bytes(f"{tmp}/{SUMMARY_FILE}",
                                             model.summary.to_json().encode())


def load_model(spark: SparkSession, uri: str) -> SavedModel:
    """The model saved at ``uri``; ValueError naming it if it is not one of ours."""
    fs = HadoopFS(spark, uri)
    if not fs.exists(f"{uri.rstrip('/')}/metadata"):
        raise ValueError(f"{uri} is not a saved PipelineModel (no metadata/ folder)")
    stages = _stages(fs, uri)
    if len(stages) != 2 or not isinstance(stages[0], DeepImageFeaturizer) \
            or not isinstance(stages[1], LogisticRegressionModel):
        raise ValueError(f"{uri} is not a DeepImageFeaturizer + LogisticRegression model")
    summary_uri = f"{uri.rstrip('/')}/{SUMMARY_FILE}"
    summary = (TrainingSummary.from_json(fs.read_bytes(summary_uri), summary_uri)
               if fs.exists(summary_uri) else None)
    return SavedModel(stages[0], stages[1], summary)


def _metadata(fs: HadoopFS, path: str) -> dict | None:
    """The JSON ``DefaultParamsWriter`` saved in ``path``/metadata (its first line)."""
    folder = f"{path}/metadata"
    if not fs.exists(folder):
        return None
    for part in sorted(e.path for e in fs.list_dir(folder)
                       if e.path.rpartition("/")[2].startswith("part-")):
        text = fs.read_bytes(part).decode("utf-8").strip()
        if text:
            return json.loads(text.splitlines()[0])
    return None


def _stages(fs: HadoopFS, uri: str) -> list[Transformer]:
    """The stages of the PipelineModel at ``uri``, as ``PipelineModel.load`` gives them."""
    base = uri.rstrip("/")
    pipeline = _metadata(fs, base)
    uids = (pipeline or {}).get("paramMap", {}).get("stageUids", [])
    if not pipeline or pipeline.get("class") != _PIPELINE or len(uids) != 2:
        return PipelineModel.load(uri).stages
    paths = [PipelineSharedReadWrite.getStagePath(uid, i, len(uids), f"{base}/stages")
             for i, uid in enumerate(uids)]
    featurizer, classifier = (_metadata(fs, path) for path in paths)
    if not featurizer or featurizer.get("class") not in _FEATURIZER \
            or not classifier or classifier.get("class") != _CLASSIFIER:
        return PipelineModel.load(uri).stages
    stage = DeepImageFeaturizer()
    stage._resetUid(featurizer["uid"])
    DefaultParamsReader.getAndSetParams(stage, featurizer)
    return [stage, LogisticRegressionModel.load(paths[1])]
