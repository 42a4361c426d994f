"""Cross-validation figures: each fold graded as a final model would be, then their spread.

A fold's model picks its threshold and fits its calibration on an inner validation part of
its training folds, exactly as the final model does on train, and is graded on the held-out
fold it never saw. The figures are reported as mean and sample standard deviation over the
folds (how much they move with the choice of patients), beside the ROC of every held-out
film pooled (calibrated scores, so that folds' models share one scale).

Each fold also keeps its validation and held-out scores (labels, scores, and for held-out
films an anonymous patient number, never a path or an identifier), in path order: the
models of several recipes cross-validated on the same folds can then be ensembled fold by
fold (``ensemble_folds``) without refitting anything, all on train.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from pipeline.report.calibration import brier, ece, fit_platt
from pipeline.report.document import ScoredPart, rounded_roc
from pipeline.report.metrics import (
    binary_metrics,
    headline,
    patient_level,
    roc_auc,
    threshold_for_sensitivity,
)

log = logging.getLogger(__name__)

#: The figures of one fold, in table order.
#: ``specificity_at_target``: the held-out fold's specificity where its own sensitivity
#: reaches the target (threshold-free, like the AUC: how well a recipe ranks, at the operating
#: region that matters); ``sensitivity``/``specificity`` are at the threshold the fold's
#: validation part chose, as a deployed model would run.
FIGURES = ("roc_auc", "sensitivity", "specificity", "specificity_at_target", "patient_roc_auc",
           "patient_sensitivity", "patient_specificity", "brier_raw", "brier_calibrated",
           "ece_raw", "ece_calibrated", "threshold")


def grade_fold(validation: ScoredPart, held_out: ScoredPart, patients: Sequence,
               target: float) -> tuple[dict, np.ndarray]:
    """(figures, calibrated held-out scores) of one fold: threshold and calibration from
    ``validation``, every figure on ``held_out`` (whose films belong to ``patients``)."""
    threshold = threshold_for_sensitivity(validation.labels, validation.scores, target)
    calibrated = fit_platt(validation.labels, validation.scores).apply(held_out.scores)
    films = binary_metrics(held_out.labels, held_out.scores, threshold)
    own = binary_metrics(held_out.labels, held_out.scores,
                         threshold_for_sensitivity(held_out.labels, held_out.scores, target))
    p_labels, p_scores = patient_level(held_out.labels, held_out.scores, np.asarray(patients))
    per_patient = binary_metrics(p_labels, p_scores, threshold)
    figures = {"films": int(len(held_out.labels)), "patients": int(len(p_labels)),
               "threshold": threshold,
               **{k: films[k] for k in ("roc_auc", "sensitivity", "specificity")},
               "specificity_at_target": own["specificity"],
               **{f"patient_{k}": per_patient[k] for k in ("roc_auc", "sensitivity", "specificity")},
               "brier_raw": brier(held_out.labels, held_out.scores),
               "brier_calibrated": brier(held_out.labels, calibrated),
               "ece_raw": ece(held_out.labels, held_out.scores),
               "ece_calibrated": ece(held_out.labels, calibrated)}
    return figures, calibrated


def fold_scores(validation: ScoredPart, held_out: ScoredPart, patients: Sequence) -> dict:
    """What ``ensemble_folds`` needs of one fold: its scores, and anonymous patient numbers
    (order of first appearance) for the held-out films."""
    _, first, index = np.unique(np.asarray(patients), return_index=True, return_inverse=True)
    number = np.argsort(np.argsort(first))[index]
    return {"validation": {"label": np.asarray(validation.labels).astype(int).tolist(),
                           "score": np.asarray(validation.scores).astype(float).tolist()},
            "held_out": {"label": np.asarray(held_out.labels).astype(int).tolist(),
                         "score": np.asarray(held_out.scores).astype(float).tolist(),
                         "patient": number.astype(int).tolist()}}


def summarise_folds(per_fold: list[dict], labels: np.ndarray, calibrated: np.ndarray,
                    how: str, scores: list[dict] | None = None) -> dict:
    """Mean and sd over ``per_fold`` of every figure, and the pooled out-of-fold ROC of
    ``calibrated`` scores against ``labels`` (all held-out films); ``scores``: each fold's
    ``fold_scores``."""
    def spread(key: str) -> dict[str, float | None]:
        values = np.array([f[key] for f in per_fold if f.get(key) is not None], dtype=float)
        if not len(values):
            return {"mean": None, "sd": None}
        return {"mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else None}

    return {"folds": len(per_fold), "how": how, "per_fold": per_fold,
            "summary": {key: spread(key) for key in FIGURES},
            "pooled": {"films": int(len(labels)), "roc_auc": roc_auc(labels, calibrated),
                       "roc": rounded_roc(labels, calibrated)},
            **({"fold_scores": scores} if scores is not None else {})}


def folds_how(folds: int, val_fraction: float, target: float, trained: str,
              also: str = "") -> str:
    """How a recipe was cross-validated, in one sentence: ``trained``, e.g. "the classifier
    is fitted"; ``also``: what else the validation part chooses."""
    return (f"{folds} patient-grouped folds of train stratified by class; per fold {trained} "
            f"on the other folds less a patient-grouped validation part ({val_fraction:.0%}), "
            f"which {also}sets the threshold (sensitivity {target}) and the calibration")


class FoldGrades:
    """The folds of one cross-validation as they are graded (``add``), then their summary.

    Every arm (featurizer + LR, fine-tuning, ensembles) grades its folds through this one
    path, so their figures mean the same and their fold scores ensemble together."""

    def __init__(self, target: float, folds: int) -> None:
        self.target = target
        self.folds = folds
        self.per_fold: list[dict] = []
        self._labels: list[np.ndarray] = []
        self._calibrated: list[np.ndarray] = []
        self._kept: list[dict] = []

    def add(self, validation: ScoredPart, held_out: ScoredPart, patients: Sequence,
            **extra) -> dict:
        """Grade the next fold (``grade_fold``), log it and keep its scores; ``extra``: what
        the fold's model chose (recorded beside its figures)."""
        figures, calibrated = grade_fold(validation, held_out, patients, self.target)
        log.info("fold %d/%d: %d held-out films, %s%s", len(self.per_fold) + 1, self.folds,
                 figures["films"], headline(figures),
                 "".join(f", {key} {value}" for key, value in extra.items()))
        self.per_fold.append({"fold": len(self.per_fold), **figures, **extra})
        self._labels.append(np.asarray(held_out.labels, dtype=int))
        self._calibrated.append(calibrated)
        self._kept.append(fold_scores(validation, held_out, patients))

    def summary(self, how: str) -> dict:
        """``summarise_folds`` of the folds graded so far (logged in one line)."""
        result = summarise_folds(self.per_fold, np.concatenate(self._labels),
                                 np.concatenate(self._calibrated), how, self._kept)
        log.info("cross-validation over %d folds: roc_auc %s, sensitivity %s, specificity %s, "
                 "pooled roc_auc %.3f", result["folds"], mean_sd(result, "roc_auc"),
                 mean_sd(result, "sensitivity"), mean_sd(result, "specificity"),
                 result["pooled"]["roc_auc"])
        return result


def ensemble_folds(members: list[dict], target: float, how: str) -> dict:
    """The cross-validation of an ensemble, from its members' ``summarise_folds`` (each run
    with the same folds, seed and films, so fold k holds the same films in the same order in
    every member): per fold, each member's scores are Platt-calibrated on its own validation
    part and averaged, and the average is graded like any fold."""
    stored = [m.get("fold_scores") for m in members]
    if len(members) < 2 or any(s is None for s in stored):
        raise ValueError("an ensemble's cross-validation needs two or more runs that kept "
                         "their fold scores (trained with --cv)")
    if len({len(s) for s in stored}) != 1:
        raise ValueError("the runs were cross-validated on different numbers of folds")
    grades = FoldGrades(target, len(stored[0]))
    for k, folds in enumerate(zip(*stored)):
        parts = {}
        for name in ("validation", "held_out"):
            got = [np.asarray(f[name]["label"]) for f in folds]
            if any(len(g) != len(got[0]) or (g != got[0]).any() for g in got):
                raise ValueError(f"fold {k}'s {name} films differ between the runs: they were "
                                 "not cross-validated on the same films (tree, --seed, "
                                 "--val-fraction, no --max-images)")
            parts[name] = got[0]
        mean = {name: np.mean([fit_platt(np.asarray(f["validation"]["label"]),
                                         np.asarray(f["validation"]["score"]))
                               .apply(np.asarray(f[name]["score"], dtype=float))
                               for f in folds], axis=0) for name in ("validation", "held_out")}
        grades.add(ScoredPart(parts["validation"], mean["validation"]),
                   ScoredPart(parts["held_out"], mean["held_out"]), folds[0]["held_out"]["patient"])
    return grades.summary(how)


def mean_sd(summary: dict, key: str, digits: int = 3) -> str:
    """``0.951 ± 0.012`` for a report table (n/a where undefined)."""
    value = summary["summary"].get(key, {"mean": None})  # runs before a figure existed lack it
    if value["mean"] is None:
        return "n/a"
    sd = "" if value["sd"] is None else f" ± {value['sd']:.{digits}f}"
    return f"{value['mean']:.{digits}f}{sd}"


def brief(cv: dict) -> dict:
    """What a job prints of a cross-validation: folds, pooled ROC AUC, mean ± sd per figure."""
    return {"folds": cv["folds"], "pooled_roc_auc": cv["pooled"]["roc_auc"],
            **{key: mean_sd(cv, key) for key in FIGURES}}


#: The columns of a recipe table: (figure, heading).
TABLE = (("roc_auc", "ROC AUC"), ("sensitivity", "sensitivity"), ("specificity", "specificity"),
         ("specificity_at_target", "spec. at target sens."), ("patient_roc_auc", "patient AUC"),
         ("brier_calibrated", "Brier (cal.)"), ("ece_calibrated", "ECE (cal.)"),
         ("brier_raw", "Brier (raw)"), ("ece_raw", "ECE (raw)"))


def recipe_table(rows: Sequence[tuple[str, dict]]) -> str:
    """A Markdown table of (name, ``summarise_folds``) rows: mean ± sd of each figure over
    the folds, and the pooled out-of-fold ROC AUC."""
    head = "| recipe | " + " | ".join(h for _, h in TABLE) + " | pooled AUC |"
    lines = [head, "|" + "---|" * (len(TABLE) + 2)]
    for name, cv in rows:
        lines.append(f"| {name} | " + " | ".join(mean_sd(cv, key) for key, _ in TABLE)
                     + f" | {cv['pooled']['roc_auc']:.3f} |")
    return "\n".join(lines) + "\n"
