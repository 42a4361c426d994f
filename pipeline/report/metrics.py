"""Binary screening metrics, computed from labels and scores with plain numpy.

Written out rather than borrowed so that every number in a report can be traced to a
formula tested against hand-computed confusion matrices. PNEUMONIA (1) is positive; a film
is called positive when its score is strictly above the threshold, as Spark's
LogisticRegressionModel does.

Films are not independent: a patient has several, and they tend to be right or wrong
together. ``patient_level`` grades patients (positive if any film is), and
``clustered_bootstrap`` resamples patients, not films, so its intervals do not pretend that
a patient's fifth film is new evidence. It is written here, vectorised over resamples,
because no library in the environment does a clustered bootstrap and scipy's bootstrap
resamples rows (films).
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


def patient_level(y_true: np.ndarray, scores: np.ndarray,
                  patients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) per patient, sorted by patient id: a patient is positive if any of
    their films is, and scores the highest of their films (one flagged film flags them)."""
    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=float)
    _, index = np.unique(np.asarray(patients), return_inverse=True)
    labels = np.zeros(index.max(initial=-1) + 1, dtype=int)
    top = np.full(len(labels), -np.inf)
    np.maximum.at(labels, index, y_true)
    np.maximum.at(top, index, scores)
    return labels, top


def bootstrap_replicates(y_true: np.ndarray, scores: np.ndarray, threshold: float,
                         clusters: np.ndarray, resamples: int = 1000,
                         seed: int = 42) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(cluster ids, counts, figures): ``resamples`` draws of whole clusters with replacement
    (``counts[b, c]``: how often draw ``b`` took ``cluster ids[c]``) and each draw's ROC AUC,
    sensitivity and specificity at ``threshold`` (NaN where a class is missing).

    Each film carries its cluster's count as a weight, so all draws are evaluated at once:
    sensitivity and specificity are weighted sums of per-cluster counts, and the AUC is the
    weighted share of correctly ranked (positive, negative) pairs, ties counting half, as
    ``roc_auc``.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    ids, index = np.unique(np.asarray(clusters), return_inverse=True)
    n = len(ids)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    counts = np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n) \
        .astype(np.float32)
    pos_mask, called = y == 1, s > threshold
    per_cluster = np.stack([np.bincount(index, weights=m, minlength=n) for m in
                            (pos_mask, pos_mask & called, ~pos_mask, ~pos_mask & ~called)], 1)
    pos, caught, neg, cleared = (counts @ per_cluster.astype(np.float32)).T
    # Cumulate the weights of the larger class in score order, look them up for each film
    # of the smaller: pairs = sum over the smaller class of weight x (films of the other
    # class on the right side of it, ties counting half).
    small, large = (pos_mask, ~pos_mask) if pos_mask.sum() <= (~pos_mask).sum() else (~pos_mask, pos_mask)
    order = np.argsort(s[large], kind="mergesort")
    large_scores, large_cluster = s[large][order], index[large][order]
    small_cluster = index[small]
    lo = np.searchsorted(large_scores, s[small], "left")   # strictly below
    hi = np.searchsorted(large_scores, s[small], "right")  # below or tied
    pairs = np.empty(resamples, dtype=np.float64)
    chunk = 128  # resamples at a time: the cumulative weights stay small enough for the cache
    for start in range(0, resamples, chunk):
        w = counts[start:start + chunk]
        below = np.zeros((len(w), len(large_scores) + 1), dtype=np.float32)
        np.cumsum(w[:, large_cluster], axis=1, out=below[:, 1:])
        half_ranks = np.einsum("bi,bi->b", w[:, small_cluster], below[:, lo] + below[:, hi]) / 2
        # positives are the smaller class: negatives below them are the correct pairs;
        # negatives are: the correct pairs are the positives above them
        pairs[start:start + chunk] = (half_ranks if small is pos_mask else
                                      (w @ per_cluster[:, 2]) * (w @ per_cluster[:, 0]) - half_ranks)
    with np.errstate(invalid="ignore", divide="ignore"):
        figures = {"roc_auc": pairs / (pos * neg), "sensitivity": caught / pos,
                   "specificity": cleared / neg}
    return ids, counts, figures


def clustered_bootstrap(y_true: np.ndarray, scores: np.ndarray, threshold: float,
                        clusters: np.ndarray, resamples: int = 1000, seed: int = 42,
                        level: float = 0.95) -> dict[str, list[float] | None]:
    """Percentile intervals (``level``) of ROC AUC, sensitivity and specificity at
    ``threshold`` over ``bootstrap_replicates``: a draw without one of the classes leaves
    that figure out; a figure undefined in every draw is None."""
    if not len(y_true):
        return {"roc_auc": None, "sensitivity": None, "specificity": None}
    _, _, figures = bootstrap_replicates(y_true, scores, threshold, clusters, resamples, seed)
    tail = 100 * (1 - level) / 2
    out: dict[str, list[float] | None] = {}
    for name, values in figures.items():
        values = values[np.isfinite(values)]
        out[name] = (None if not len(values) else
                     [float(v) for v in np.percentile(values, [tail, 100 - tail])])
    return out


def operating_points(val_true: np.ndarray, val_scores: np.ndarray, y_true: np.ndarray,
                     scores: np.ndarray, targets: tuple[float, ...]) -> list[dict]:
    """For each target sensitivity: the threshold chosen on the validation scores, what it
    gives there, and what it gives on the scored split (so a site can pick its own)."""
    points = []
    for target in targets:
        t = threshold_for_sensitivity(val_true, val_scores, target)
        val, got = binary_metrics(val_true, val_scores, t), binary_metrics(y_true, scores, t)
        points.append({"target_sensitivity": target, "threshold": t,
                       "validation": {k: val[k] for k in ("sensitivity", "specificity")},
                       **{k: got[k] for k in ("sensitivity", "specificity", "sensitivity_ci95",
                                              "specificity_ci95")},
                       "flagged": got["confusion_matrix"]["tp"] + got["confusion_matrix"]["fp"],
                       "missed": got["confusion_matrix"]["fn"]})
    return points


def headline(metrics: dict, keys: tuple[str, ...] = ("sensitivity", "specificity", "roc_auc")) -> str:
    """``sensitivity 0.951, specificity 0.929, roc_auc 0.988`` for a log line; a metric that
    a missing class leaves undefined (None) reads n/a."""
    return ", ".join(f"{k} {'n/a' if metrics[k] is None else format(metrics[k], '.3f')}"
                     for k in keys)
