"""Cross-validation figures: each fold graded as a final model would be, then their spread.

A fold's model picks its threshold and fits its calibration on an inner validation part of
its training folds, exactly as the final model does on train, and is graded on the held-out
fold it never saw. The figures are reported as mean and sample standard deviation over the
folds (how much they move with the choice of patients), beside the ROC of every held-out
film pooled (calibrated scores, so that folds' models share one scale).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.data.patients import patient_id
from pipeline.report.calibration import brier, ece, fit_platt
from pipeline.report.document import ScoredPart, rounded_roc
from pipeline.report.metrics import binary_metrics, patient_level, roc_auc, threshold_for_sensitivity

#: The figures of one fold, in table order.
FIGURES = ("roc_auc", "sensitivity", "specificity", "patient_roc_auc", "patient_sensitivity",
           "patient_specificity", "brier_raw", "brier_calibrated", "ece_raw",
           "ece_calibrated", "threshold")


def grade_fold(validation: ScoredPart, held_out: ScoredPart, paths: Sequence[str],
               target: float) -> tuple[dict, np.ndarray]:
    """(figures, calibrated held-out scores) of one fold: threshold and calibration from
    ``validation``, every figure on ``held_out`` (films at ``paths``)."""
    threshold = threshold_for_sensitivity(validation.labels, validation.scores, target)
    calibrated = fit_platt(validation.labels, validation.scores).apply(held_out.scores)
    films = binary_metrics(held_out.labels, held_out.scores, threshold)
    p_labels, p_scores = patient_level(held_out.labels, held_out.scores,
                                       np.array([patient_id(p) for p in paths]))
    patients = binary_metrics(p_labels, p_scores, threshold)
    figures = {"films": int(len(held_out.labels)), "patients": int(len(p_labels)),
               "threshold": threshold,
               **{k: films[k] for k in ("roc_auc", "sensitivity", "specificity")},
               **{f"patient_{k}": patients[k] for k in ("roc_auc", "sensitivity", "specificity")},
               "brier_raw": brier(held_out.labels, held_out.scores),
               "brier_calibrated": brier(held_out.labels, calibrated),
               "ece_raw": ece(held_out.labels, held_out.scores),
               "ece_calibrated": ece(held_out.labels, calibrated)}
    return figures, calibrated


def summarise_folds(per_fold: list[dict], labels: np.ndarray, calibrated: np.ndarray,
                    how: str) -> dict:
    """Mean and sd over ``per_fold`` of every figure, and the pooled out-of-fold ROC of
    ``calibrated`` scores against ``labels`` (all held-out films)."""
    def spread(key: str) -> dict[str, float | None]:
        values = np.array([f[key] for f in per_fold if f[key] is not None], dtype=float)
        if not len(values):
            return {"mean": None, "sd": None}
        return {"mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else None}

    return {"folds": len(per_fold), "how": how, "per_fold": per_fold,
            "summary": {key: spread(key) for key in FIGURES},
            "pooled": {"films": int(len(labels)), "roc_auc": roc_auc(labels, calibrated),
                       "roc": rounded_roc(labels, calibrated)}}


def mean_sd(summary: dict, key: str, digits: int = 3) -> str:
    """``0.951 ± 0.012`` for a report table (n/a where undefined)."""
    value = summary["summary"][key]
    if value["mean"] is None:
        return "n/a"
    sd = "" if value["sd"] is None else f" ± {value['sd']:.{digits}f}"
    return f"{value['mean']:.{digits}f}{sd}"
