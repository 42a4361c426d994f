"""What a training run is asked to do (``TrainConfig``) and what it did (``TrainingSummary``).

The summary is saved beside the model as ``training_summary.json`` (``model_store``) and read
back by evaluation: the validation split it held out, its threshold, its timings, its
calibration and the validation scores (labels and scores only, no paths) from which
evaluate re-derives a threshold for another sensitivity target. Summaries written before
those fields existed still load (they read None).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from pipeline import config
from pipeline.data.rules import Duplicate, Skipped


@dataclass(frozen=True)
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
    #: ``runtime.precision``; a summary records the precision ``auto`` chose (models saved
    #: before this setting computed in float32).
    precision: str = config.PRECISION
    draft_decode: bool = config.DRAFT_DECODE
    #: Patient-grouped cross-validation folds run before the final fit (0: none).
    cv_folds: int = 0
    #: A fine-tuned ``.keras`` model as the backbone (``DeepImageFeaturizer.modelFile``).
    model_file: str | None = None
    #: Contrast equalisation before the network (``DeepImageFeaturizer.clahe``).
    clahe: bool = False
    #: Input side of the named backbone in px (0: its own; ``DeepImageFeaturizer.inputSize``).
    input_size: int = 0
    #: Seed of a random-init backbone, when it should differ from ``seed`` (which also draws
    #: the validation part and the folds): members of a seed ensemble share their folds.
    featurizer_seed: int | None = None
    #: (regParam, elasticNetParam) candidates; when given, each fit (every fold's, and the
    #: final one) takes the one with the best ROC AUC on its own validation part.
    reg_grid: tuple[tuple[float, float], ...] = ()


@dataclass
class TrainingSummary:
    """One training run of the featurizer + classifier."""

    config: TrainConfig
    #: Films the listing accepted, and those the CNN could featurize.
    listed: int
    featurized: int
    skipped: list[Skipped]
    duplicates: list[Duplicate]
    warnings: list[str]
    #: ``pipeline.data.split.split_counts`` of the fit and validation parts.
    split: dict[str, dict[str, int]]
    class_weights: dict[str, float]
    threshold: float
    threshold_source: str
    validation_metrics: dict
    timings_s: dict[str, float]
    featurize_images_per_s: float
    spark: dict[str, str]
    #: ``Calibrator.to_dict()`` fitted on the validation scores.
    calibration: dict | None = None
    #: ``{"label": [...], "score": [...]}`` of the validation films, in no particular order.
    validation_scores: dict[str, list] | None = None
    #: ``pipeline.report.crossval.summarise_folds`` of a ``--cv`` run.
    cross_validation: dict | None = None
    #: The (regParam, elasticNetParam) the final fit took from ``reg_grid`` (None without one).
    regularisation: dict | None = None

    #: The stored layout groups the image counts (as models saved before this type did).
    _IMAGES = ("listed", "featurized", "skipped", "duplicates")

    def to_json(self) -> str:
        raw = dataclasses.asdict(self)
        raw["images"] = {k: raw.pop(k) for k in self._IMAGES}
        return json.dumps(raw, indent=2)

    @classmethod
    def from_json(cls, data: str | bytes, where: str) -> TrainingSummary:
        """The summary stored in ``data``; ValueError naming ``where`` if it is not one."""
        try:
            raw = json.loads(data)
            stored = raw.pop("config")
            stored["reg_grid"] = tuple(tuple(pair) for pair in stored.get("reg_grid", ()))
            images, cfg = raw.pop("images"), TrainConfig(**{"precision": "float32", **stored})
            return cls(**raw, config=cfg, listed=images["listed"], featurized=images["featurized"],
                       skipped=[Skipped(**s) for s in images["skipped"]],
                       duplicates=[Duplicate(**d) for d in images["duplicates"]])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{where} is not a training summary: {exc!r}") from None

    def for_report(self) -> dict:
        """What an evaluation's metrics document records about the training."""
        return {"split": self.split, "validation_metrics": self.validation_metrics,
                "timings_s": self.timings_s,
                "featurize_images_per_s": self.featurize_images_per_s,
                **({"cross_validation": self.cross_validation} if self.cross_validation else {})}
