"""Platt scaling: ranks untouched, probabilities closer to the truth on films it never saw."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.report.calibration import (Calibrator, brier, calibration_section, ece, fit_platt,
                                         reliability)
from pipeline.report.metrics import roc_auc


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Films whose true chance of pneumonia is ``sigmoid(z)``, scored ``sigmoid(3 z + 2)``:
    far too confident and shifted up, as a class-weighted model's scores are."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return y, 1 / (1 + np.exp(-(3 * z + 2)))


def test_calibration_keeps_auc_and_lowers_brier_on_held_out_films():
    """Fitted on one set of films, graded on others (as on a held-out fold)."""
    y_fit, s_fit = _miscalibrated(800, seed=1)
    for seed in (2, 3, 4):  # three held-out folds
        y, s = _miscalibrated(800, seed)
        cal = fit_platt(y_fit, s_fit)
        p = cal.apply(s)
        assert roc_auc(y, p) == pytest.approx(roc_auc(y, s), abs=1e-12)
        assert brier(y, p) < brier(y, s) - 0.02
        assert ece(y, p) < ece(y, s) / 2
    # the truth is sigmoid(z) = sigmoid((logit(s) - 2) / 3): slope 1/3, intercept -2/3
    assert cal.slope == pytest.approx(1 / 3, abs=0.08)
    assert cal.intercept == pytest.approx(-2 / 3, abs=0.2)


def test_already_calibrated_scores_stay_about_where_they_are():
    rng = np.random.default_rng(5)
    p = rng.random(4000)
    y = (rng.random(4000) < p).astype(int)
    cal = fit_platt(y, p)
    assert cal.slope == pytest.approx(1, abs=0.1) and cal.intercept == pytest.approx(0, abs=0.1)


def test_round_trip_and_refusals():
    y, s = _miscalibrated(300, seed=6)
    cal = fit_platt(y, s)
    assert Calibrator.from_dict(cal.to_dict()) == cal and cal.fitted_on == 300
    with pytest.raises(ValueError, match="both classes"):
        fit_platt(np.ones(5), np.linspace(0.1, 0.9, 5))
    backwards = fit_platt(y, 1 - s)  # scores that rank the classes backwards
    assert backwards.method == "prior" and backwards.slope > 0
    p = backwards.apply(1 - s)
    assert np.allclose(p, (y.sum() + 1) / (len(y) + 2), atol=1e-3)  # the prevalence
    assert roc_auc(y, p) == pytest.approx(roc_auc(y, 1 - s), abs=1e-12)  # ranking kept


def test_brier_ece_and_reliability_by_hand():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.15, 0.95])
    assert brier(y, p) == pytest.approx((0.05 ** 2 + 0.15 ** 2 + 0.85 ** 2 + 0.05 ** 2) / 4)
    r = reliability(y, p)
    # bins [0, .1): 0.05 (0 observed); [.1, .2): 0.15, 0.15 (1 of 2); [.9, 1]: 0.95 (1 of 1)
    assert r == {"predicted": [0.05, 0.15, 0.95], "observed": [0.0, 0.5, 1.0], "films": [1, 2, 1]}
    assert ece(y, p) == pytest.approx((1 * 0.05 + 2 * 0.35 + 1 * 0.05) / 4)


def test_section_records_before_and_after():
    y, s = _miscalibrated(500, seed=8)
    cal = fit_platt(y, s)
    section = calibration_section(cal, y, s)
    assert section["brier"]["calibrated"] < section["brier"]["raw"]
    assert section["calibrator"] == cal.to_dict()
    assert sum(section["reliability"]["raw"]["films"]) == 500
