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

import numpy as np
from pyspark.sql import SparkSession

from pipeline.data.rules import Duplicate, Skipped
from pipeline.report.metrics import binary_metrics, roc_curve

SCHEMA = "xray-metrics/1"
#: The document's name in every run folder.
METRICS_FILE = "metrics.json"


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
    schema: str = SCHEMA

    @classmethod
    def build(cls, spark: SparkSession, *, labels: np.ndarray, scores: np.ndarray,
              threshold: float, **fields) -> MetricsDocument:
        """The document of ``scores`` against ``labels`` at ``threshold``; ``fields`` are the
        remaining attributes (method, model_name, ... warnings)."""
        fpr, tpr, _ = roc_curve(labels, scores)
        return cls(metrics=binary_metrics(labels, scores, threshold),
                   roc={"fpr": [round(float(x), 6) for x in fpr],
                        "tpr": [round(float(x), 6) for x in tpr]},
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   spark=spark_run(spark), **fields)

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
