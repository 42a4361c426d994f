"""Calibrated probabilities: Platt scaling fitted on the validation part, and how to grade it.

A class-weighted classifier's score is not a probability: the weights undo the 1:3 imbalance
on purpose, so raw scores run high. Platt scaling (a logistic regression on the logit of the
score, Platt 1999, with his smoothed targets) maps them to probabilities that match the
validation part's frequencies. It is monotone increasing (the slope is kept positive), so it
changes no ranking: every AUC and every operating point stays where it was, only the numbers
a clinician reads as "chance of pneumonia" move. Isotonic regression was not chosen: its
steps tie scores that were ordered, which changes the AUC, and it overfits a few hundred
validation films.

Hand-written because the fit is two parameters by Newton's method (a few lines) and no
library in the environment offers it (no scikit-learn or scipy here). Calibration learnt on
validation films cannot correct a shift that appears only on new films: the report shows
the reliability on the scored split so a reader sees whether it held.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Scores are clipped this far from 0 and 1 before the logit.
_EPS = 1e-7
#: The slope of a calibration whose scores carry no ranking: probabilities all but equal.
_FLAT_SLOPE = 1e-6
#: Reliability diagram and ECE: equal-width bins of the predicted probability.
BINS = 10


def _logit(scores: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(scores, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # stable for any z


@dataclass(frozen=True)
class Calibrator:
    """``p = sigmoid(slope * logit(score) + intercept)``, fitted on ``fitted_on`` films."""

    slope: float
    intercept: float
    fitted_on: int
    #: ``platt``, or ``prior`` where the scores did not rank the classes (``fit_platt``).
    method: str = "platt"

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of PNEUMONIA for raw model scores."""
        return _sigmoid(self.slope * _logit(scores) + self.intercept)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Calibrator:
        return cls(**raw)


def fit_platt(y_true: np.ndarray, scores: np.ndarray, iterations: int = 50) -> Calibrator:
    """Platt scaling of ``scores`` to ``y_true`` (needs both classes).

    Targets are Platt's smoothed ``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)``, which keep a
    small, perfectly separated validation part from producing probabilities of exactly 0 or 1.
    Where the best slope is not positive (scores that do not rank the classes, as a random
    network's may not), the honest probability is the prevalence for every film: method
    ``prior``, a vanishing positive slope so that the ranking, and so every AUC, is kept.
    """
    y = np.asarray(y_true).astype(int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if not n_pos or not n_neg:
        raise ValueError(f"calibration needs both classes, found {n_pos} positive and "
                         f"{n_neg} negative films")
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    x = np.c_[_logit(scores), np.ones(len(y))]

    def loss(beta: np.ndarray) -> float:  # cross-entropy against the smoothed targets
        z = x @ beta
        return float(np.sum(np.logaddexp(0, z) - target * z))

    # Newton's method with step halving (Lin, Lin and Weng 2007), from the prior alone
    beta = np.array([0.0, np.log((n_pos + 1) / (n_neg + 1))])
    current = loss(beta)
    for _ in range(iterations):
        p = _sigmoid(x @ beta)
        grad = x.T @ (p - target)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step, size = np.linalg.solve(hess, grad), 1.0
        while size > 1e-8 and loss(beta - size * step) > current + 1e-4 * size * (grad @ -step):
            size /= 2
        beta, previous = beta - size * step, current
        current = loss(beta)
        if previous - current < 1e-12 * max(1.0, abs(previous)):
            break
    if not beta[0] > _FLAT_SLOPE:
        return Calibrator(_FLAT_SLOPE, float(np.log((n_pos + 1) / (n_neg + 1))), len(y), "prior")
    return Calibrator(float(beta[0]), float(beta[1]), len(y))


def brier(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error of the probabilities (0 is perfect; 0.25 is a constant 0.5)."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(probs, dtype=float)
    return float(np.mean((p - y) ** 2))


def _binned(y_true: np.ndarray, probs: np.ndarray,
            bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean prediction, observed share of pneumonia and film count of each non-empty
    equal-width bin of predicted probability."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(probs, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    used = count > 0
    return (np.bincount(which, p, bins)[used] / count[used],
            np.bincount(which, y, bins)[used] / count[used], count[used])


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = BINS) -> dict[str, list]:
    """The points of a reliability diagram (``_binned``), for JSON."""
    predicted, observed, films = _binned(y_true, probs, bins)
    return {"predicted": [round(float(v), 6) for v in predicted],
            "observed": [round(float(v), 6) for v in observed],
            "films": [int(c) for c in films]}


def ece(y_true: np.ndarray, probs: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the film-weighted mean gap between predicted and observed
    over equal-width bins."""
    predicted, observed, films = _binned(y_true, probs, bins)
    return float((films * np.abs(predicted - observed)).sum() / films.sum()) if len(films) else 0.0


def calibration_section(calibrator: Calibrator, y_true: np.ndarray,
                        scores: np.ndarray) -> dict:
    """What a metrics document records about calibration on the scored split: the
    calibrator, Brier score and ECE before and after it, and both reliability curves."""
    calibrated = calibrator.apply(scores)
    return {"calibrator": calibrator.to_dict(), "bins": BINS,
            "brier": {"raw": brier(y_true, scores), "calibrated": brier(y_true, calibrated)},
            "ece": {"raw": ece(y_true, scores), "calibrated": ece(y_true, calibrated)},
            "reliability": {"raw": reliability(y_true, scores),
                            "calibrated": reliability(y_true, calibrated)}}
