"""Saving and loading the featurizer + classifier model, with its training summary.

The model is a Spark ``PipelineModel`` (DeepImageFeaturizer + LogisticRegressionModel, the
threshold stored in the latter), so plain ``PipelineModel.load`` works anywhere; this module
adds the summary beside it and the checks a job wants before it trusts a folder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.sql import SparkSession

from pipeline.featurizer.summary import TrainingSummary
from pipeline.featurizer.transformer import DeepImageFeaturizer
from pipeline.fs.storage import HadoopFS, atomic_output
from pipeline.report.calibration import Calibrator
from pipeline.report.document import ScoredPart

SUMMARY_FILE = "training_summary.json"


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
    stages = PipelineModel.load(uri).stages
    if len(stages) != 2 or not isinstance(stages[0], DeepImageFeaturizer) \
            or not isinstance(stages[1], LogisticRegressionModel):
        raise ValueError(f"{uri} is not a DeepImageFeaturizer + LogisticRegression model")
    summary_uri = f"{uri.rstrip('/')}/{SUMMARY_FILE}"
    summary = (TrainingSummary.from_json(fs.read_bytes(summary_uri), summary_uri)
               if fs.exists(summary_uri) else None)
    return SavedModel(stages[0], stages[1], summary)
