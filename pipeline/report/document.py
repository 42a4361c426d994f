"""The metrics document (``xray-metrics/1``): what every evaluation writes as ``metrics.json``.

One type for every writer (the featurizer's evaluate job, both fine-tuning arms) and every
reader (the report page, the comparison, the demo summary): ``MetricsDocument.build`` computes
the metrics and the ROC curve from labels and scores, ``from_json`` checks a stored document,
and the page and plots are drawn from the same object, so the numbers a reader sees are the
numbers a script reads.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from pipeline import config
from pipeline.data.patients import patient_id
from pipeline.data.rules import Duplicate, Skipped
from pipeline.report.calibration import Calibrator, calibration_section, fit_platt
from pipeline.report.metrics import (binary_metrics, clustered_bootstrap, operating_points,
                                     patient_level, roc_curve)

#: Documents written before patients, calibration and operating points were added are still
#: ``xray-metrics/1``: those fields are optional and absent there.
SCHEMA = "xray-metrics/1"
#: The document's name in every run folder.
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class ScoredPart:
    """Labels and raw scores of a set of films (the validation part, in a document)."""

    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> ScoredPart:
        """From a table of films with columns ``label`` and ``score``."""
        return cls(frame["label"].to_numpy(dtype=int), frame["score"].to_numpy(dtype=float))


def rounded_roc(labels: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"fpr": [round(float(x), 6) for x in fpr], "tpr": [round(float(x), 6) for x in tpr]}


def patient_section(labels: np.ndarray, scores: np.ndarray, threshold: float,
                    paths: Sequence[str]) -> tuple[dict, dict]:
    """(patients, bootstrap) of a document: patient-level metrics (a patient is positive if
    any film is; their score is the highest of their films) and patient-clustered bootstrap
    intervals at film and at patient level."""
    patients = np.array([patient_id(p) for p in paths])
    p_labels, p_scores = patient_level(labels, scores, patients)
    resamples, seed, level = config.BOOTSTRAP_RESAMPLES, config.SEED, 0.95
    bootstrap = {
        "method": "percentile intervals from resampling patients with replacement",
        "resamples": resamples, "seed": seed, "level": level,
        "film": clustered_bootstrap(labels, scores, threshold, patients, resamples, seed, level),
        "patient": clustered_bootstrap(p_labels, p_scores, threshold, np.arange(len(p_labels)),
                                       resamples, seed, level)}
    section = {"rule": "a patient is positive if any of their films is (score: the highest "
                       "of their films)",
               "films_per_patient": round(len(labels) / max(len(p_labels), 1), 3),
               "metrics": binary_metrics(p_labels, p_scores, threshold)}
    return section, bootstrap


def spark_run(spark: SparkSession) -> dict[str, str]:
    """The Spark application a result came from, to find it in the History Server."""
    return {"app_id": spark.sparkContext.applicationId, "master": spark.sparkContext.master}


@dataclass
class MetricsDocument:
    """One scored split of one model."""

    #: ``featurizer+lr``, ``finetune-cnn`` or ``finetune-inceptionv3``.
    method: str
    model_name: str
    weights: str
    #: URI of the tree and of the model that scored it.
    data: str
    model: str
    split: str
    #: ``pipeline.report.metrics.binary_metrics`` at ``metrics["threshold"]``.
    metrics: dict
    threshold_source: str
    #: ``{"fpr": [...], "tpr": [...]}``
    roc: dict[str, list[float]]
    timings_s: dict[str, float]
    images_per_s: float
    #: What the training recorded (split sizes, validation metrics, timings, ...).
    training: dict
    created: str
    spark: dict[str, str]
    skipped: list[Skipped] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: ``patient_section``: per-patient metrics (None: film paths unknown).
    patients: dict | None = None
    #: ``patient_section``: patient-clustered bootstrap intervals.
    bootstrap: dict | None = None
    #: ``calibration.calibration_section`` on the scored split (None: no validation scores).
    calibration: dict | None = None
    #: ``metrics.operating_points`` at ``config.OPERATING_TARGETS``, thresholds chosen on
    #: the validation scores.
    operating_points: list[dict] = field(default_factory=list)
    schema: str = SCHEMA

    @classmethod
    def build(cls, spark: SparkSession, *, labels: np.ndarray, scores: np.ndarray,
              threshold: float, paths: Sequence[str] | None = None,
              validation: ScoredPart | None = None, calibrator: Calibrator | None = None,
              **fields) -> MetricsDocument:
        """The document of ``scores`` against ``labels`` at ``threshold``; ``fields`` are the
        remaining attributes (method, model_name, ... warnings).

        ``paths`` (one per film) add the per-patient figures and bootstrap intervals;
        ``validation`` (the part the threshold was chosen on) adds the operating points and
        the calibration, with ``calibrator`` or else one fitted on it.
        """
        labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
        threshold = float(threshold)
        extra: dict = {}
        if paths is not None:
            extra["patients"], extra["bootstrap"] = patient_section(labels, scores, threshold,
                                                                    list(paths))
        if validation is not None:
            extra["operating_points"] = operating_points(
                validation.labels, validation.scores, labels, scores, config.OPERATING_TARGETS)
            calibrator = calibrator or fit_platt(validation.labels, validation.scores)
        if calibrator is not None:
            extra["calibration"] = calibration_section(calibrator, labels, scores)
        return cls(metrics=binary_metrics(labels, scores, threshold),
                   roc=rounded_roc(labels, scores),
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   spark=spark_run(spark), **extra, **fields)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes, where: str) -> MetricsDocument:
        """The document stored in ``data``; ValueError naming ``where`` if it is not one."""
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where} is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{where} is not an {SCHEMA} document (not an object)")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in raw]
        missing += [f"metrics.{k}" for k in _METRIC_KEYS if k not in raw.get("metrics", {})]
        if missing or raw.get("schema") != SCHEMA:
            raise ValueError(f"{where} is not an {SCHEMA} document (schema {raw.get('schema')!r}, "
                             f"missing {', '.join(missing) or 'nothing'})")
        known = {f.name for f in dataclasses.fields(cls)}
        doc = cls(**{k: v for k, v in raw.items() if k in known})
        doc.skipped = [Skipped(**s) for s in doc.skipped]
        doc.duplicates = [Duplicate(**d) for d in doc.duplicates]
        return doc


#: What a reader may count on in ``metrics`` (binary_metrics' keys).
_METRIC_KEYS = tuple(binary_metrics(np.array([0, 1]), np.array([0.2, 0.8]), 0.5))
