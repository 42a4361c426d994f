"""Binary screening metrics, computed from labels and scores with plain numpy.

Written out rather than borrowed so that every number in a report can be traced to a
formula tested against hand-computed confusion matrices. PNEUMONIA (1) is positive; a film
is called positive when its score is strictly above the threshold, as Spark's
LogisticRegressionModel does.
"""
from __future__ import annotations

import numpy as np


def _ratio(num: float, den: float) -> float | None:
    """None (null in JSON) where the ratio is undefined, never a silent 0."""
    return float(num / den) if den else None


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> list[float] | None:
    """95% Wilson score interval for a proportion: honest at 0%, 100% and small counts, where
    the textbook p +- z*se interval collapses or leaves [0, 1]."""
    if trials == 0:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return {
        "tn": int(((y_true == 0) & (y_pred == 0)).sum()),
        "fp": int(((y_true == 0) & (y_pred == 1)).sum()),
        "fn": int(((y_true == 1) & (y_pred == 0)).sum()),
        "tp": int(((y_true == 1) & (y_pred == 1)).sum()),
    }


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score used as a threshold (``>=``)."""
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="mergesort")
    y, s = y_true[order], scores[order]
    last_of_run = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    pos, neg = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    return (np.r_[0.0, fps / neg], np.r_[0.0, tps / pos], np.r_[np.inf, s[last_of_run]])


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    y_true = np.asarray(y_true).astype(int)
    if y_true.min(initial=1) == y_true.max(initial=0):
        return None  # one class only: AUC is undefined
    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(np.trapezoid(tpr, fpr))


def pr_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision: sum over thresholds of precision times the recall gained."""
    y_true = np.asarray(y_true).astype(int)
    if y_true.sum() == 0:
        return None
    _, tpr, thresholds = roc_curve(y_true, scores)
    scores = np.asarray(scores, dtype=float)
    precision = np.array([y_true[scores >= t].mean() for t in thresholds[1:]])
    return float(np.sum(np.diff(tpr) * precision))


def threshold_for_sensitivity(y_true: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (score > threshold) still reaches ``target``.

    It sits halfway between the last positive that must be caught and the next lower score,
    so small score shifts on new data do not flip that film.
    """
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    positives = np.sort(scores[y_true == 1])[::-1]
    if len(positives) == 0:
        raise ValueError("no positive (PNEUMONIA) films to set a threshold on")
    need = int(np.ceil(target * len(positives) - 1e-9))
    cut = positives[max(need, 1) - 1]
    below = scores[scores < cut]
    return float((cut + below.max()) / 2) if len(below) else float(np.nextafter(cut, -np.inf))


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Everything a screening report needs at one threshold, plus the threshold-free AUCs."""
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    cm = confusion(y_true, (scores > threshold).astype(int))
    tp, tn, fp, fn = cm["tp"], cm["tn"], cm["fp"], cm["fn"]
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "threshold": float(threshold),
        "accuracy": _ratio(tp + tn, len(y_true)),
        "precision": precision,
        "recall": recall,
        "sensitivity": recall,
        "specificity": _ratio(tn, tn + fp),
        "sensitivity_ci95": wilson_interval(tp, tp + fn),
        "specificity_ci95": wilson_interval(tn, tn + fp),
        "f1": f1,
        "roc_auc": roc_auc(y_true, scores),
        "pr_auc": pr_auc(y_true, scores),
        "confusion_matrix": {"labels": ["NORMAL", "PNEUMONIA"], "rows_actual_cols_predicted":
                             [[tn, fp], [fn, tp]], **cm},
        "counts": {"NORMAL": int((y_true == 0).sum()), "PNEUMONIA": int((y_true == 1).sum()),
                   "total": int(len(y_true))},
    }


def headline(metrics: dict, keys: tuple[str, ...] = ("sensitivity", "specificity", "roc_auc")) -> str:
    """``sensitivity 0.951, specificity 0.929, roc_auc 0.988`` for a log line; a metric that
    a missing class leaves undefined (None) reads n/a."""
    return ", ".join(f"{k} {'n/a' if metrics[k] is None else format(metrics[k], '.3f')}"
                     for k in keys)
