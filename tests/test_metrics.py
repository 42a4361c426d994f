"""Metric math against confusion matrices computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.report.metrics import (binary_metrics, bootstrap_replicates, clustered_bootstrap,
                                     headline, operating_points, patient_level, pr_auc, roc_auc,
                                     threshold_for_sensitivity, wilson_interval)

# 10 films: labels and scores chosen so every cell is easy to count by hand.
Y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.65, 0.4, 0.1, 0.05])


def test_confusion_and_ratios_at_half():
    m = binary_metrics(Y, S, 0.5)
    # > 0.5: positives 0.9 0.8 0.7 0.6 caught (tp 4), 0.3 0.2 missed (fn 2);
    # negatives: 0.65 flagged (fp 1), 0.4 0.1 0.05 cleared (tn 3)
    cm = m["confusion_matrix"]
    assert (cm["tp"], cm["fn"], cm["fp"], cm["tn"]) == (4, 2, 1, 3)
    assert cm["rows_actual_cols_predicted"] == [[3, 1], [2, 4]]
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == m["recall"] == pytest.approx(4 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    assert m["counts"] == {"NORMAL": 4, "PNEUMONIA": 6, "total": 10}


def test_threshold_is_strict():
    m = binary_metrics(np.array([1, 0]), np.array([0.5, 0.5]), 0.5)
    assert m["confusion_matrix"]["tp"] == 0 and m["confusion_matrix"]["tn"] == 1


def test_roc_auc_counts_ranked_pairs():
    # pairs (pos, neg) ranked correctly: 24 pairs; wrong: 0.6<0.65, 0.3<0.65, 0.3<0.4,
    # 0.2<0.65, 0.2<0.4 -> 5 wrong, 19 right
    assert roc_auc(Y, S) == pytest.approx(19 / 24)


def test_roc_auc_ties_count_half():
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_pr_auc_by_hand():
    # ranks: 0.9 P, 0.8 P, 0.7 P, 0.65 N, 0.6 P, 0.4 N, 0.3 P, 0.2 P ...
    # AP = (1 + 1 + 1 + 4/5 + 5/7 + 6/8) / 6
    assert pr_auc(Y, S) == pytest.approx((3 + 4 / 5 + 5 / 7 + 6 / 8) / 6)


def test_undefined_values_are_none_not_zero():
    m = binary_metrics(np.array([1, 1]), np.array([0.9, 0.8]), 0.5)
    assert m["specificity"] is None and m["roc_auc"] is None


@pytest.mark.parametrize("target,caught", [(0.5, 3), (0.66, 4), (0.95, 6), (1.0, 6)])
def test_threshold_for_sensitivity_reaches_target(target, caught):
    t = threshold_for_sensitivity(Y, S, target)
    assert int(((S > t) & (Y == 1)).sum()) == caught
    assert binary_metrics(Y, S, t)["sensitivity"] >= target - 1e-12


def _sensitivity(threshold: float) -> float:
    return binary_metrics(Y, S, threshold)["sensitivity"]


@pytest.mark.parametrize("target,cut,next_lower", [
    (0.66, 0.6, 0.4),    # 4 of 6 positives: the 4th is 0.6; below it the negative at 0.4
    (0.5, 0.7, 0.65),    # 3 of 6: the 3rd is 0.7; below it the negative at 0.65
    (0.95, 0.2, 0.1),    # 6 of 6: the last positive is 0.2; below it 0.1
])
def test_threshold_is_the_highest_that_reaches_target(target, cut, next_lower):
    t = threshold_for_sensitivity(Y, S, target)
    assert t == (cut + next_lower) / 2  # halfway between the last film caught and the next
    assert _sensitivity(t) >= target
    # just below the cut score still reaches it; at the cut score or above it never does
    assert _sensitivity(float(np.nextafter(cut, -np.inf))) >= target
    for higher in [cut, float(np.nextafter(cut, np.inf)), *S[S > cut], 1.0]:
        assert _sensitivity(higher) < target, higher


def test_wilson_interval_by_hand():
    # p = 4/6, z = 1.96: centre (p + z^2/12) / (1 + z^2/6), half-width likewise
    z = 1.959964
    p, n = 4 / 6, 6
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    assert wilson_interval(4, 6) == pytest.approx([centre - half, centre + half])
    assert binary_metrics(Y, S, 0.5)["sensitivity_ci95"] == pytest.approx(wilson_interval(4, 6))
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and 0.65 < lo < 0.75  # 10/10 is not proof of 100%
    assert wilson_interval(0, 0) is None


def test_headline_rounds_and_says_na_for_an_undefined_metric():
    m = {"sensitivity": 0.96296, "specificity": None, "roc_auc": 0.5}
    assert headline(m) == "sensitivity 0.963, specificity n/a, roc_auc 0.500"


def test_patient_level_takes_the_max_of_each_patients_films():
    labels, scores = patient_level(np.array([0, 1, 0, 0, 0]), np.array([0.9, 0.2, 0.1, 0.3, 0.4]),
                                   np.array(["b", "b", "a", "a", "c"]))
    # sorted by patient: a (0; 0.1, 0.3), b (any positive -> 1; max 0.9), c (0; 0.4)
    assert labels.tolist() == [0, 1, 0] and scores.tolist() == [0.3, 0.9, 0.4]


@pytest.mark.parametrize("tied", [False, True])
def test_each_bootstrap_draw_equals_the_metrics_of_its_explicit_resample(tied):
    """The vectorised weights give, draw by draw, what the plain formulas give on the films
    of the drawn patients written out (each patient as often as drawn)."""
    rng = np.random.default_rng(3)
    y = (rng.random(90) < 0.6).astype(int)
    s = rng.normal(size=90) + y
    s = np.round(s, 1) if tied else s  # ties inside and across classes
    patients = rng.integers(0, 30, size=90)
    ids, counts, figures = bootstrap_replicates(y, s, 0.3, patients, resamples=20, seed=1)
    for b in range(20):
        take = np.concatenate([np.flatnonzero(patients == pid).repeat(int(k))
                               for pid, k in zip(ids, counts[b])])
        m = binary_metrics(y[take], s[take], 0.3)
        assert figures["roc_auc"][b] == pytest.approx(m["roc_auc"], abs=1e-6)
        assert figures["sensitivity"][b] == pytest.approx(m["sensitivity"], abs=1e-6)
        assert figures["specificity"][b] == pytest.approx(m["specificity"], abs=1e-6)


def _films(correlated: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 patients x 5 films; correlated: a patient's films share one score (a patient is
    right or wrong as a whole), else every film draws its own."""
    rng = np.random.default_rng(seed)
    patient_label = (np.arange(200) % 2).astype(int)
    patients = np.repeat(np.arange(200), 5)
    y = patient_label[patients]
    noise = rng.normal(size=200)[patients] if correlated else rng.normal(size=1000)
    return y, y * 1.0 + noise, patients


def test_clustered_intervals_widen_when_a_patients_films_agree():
    """Five identical films of a patient are one piece of evidence, not five: resampling
    patients gives intervals about sqrt(5) wider than for five independent films each."""
    widths = {}
    for correlated in (False, True):
        y, s, patients = _films(correlated)
        ci = clustered_bootstrap(y, s, 0.5, patients, resamples=1000, seed=2)
        widths[correlated] = {k: hi - lo for k, (lo, hi) in ci.items()}
    for key in ("roc_auc", "sensitivity", "specificity"):
        assert widths[True][key] > 1.6 * widths[False][key], (key, widths)
    # and a film-level bootstrap (each film its own cluster) would miss that
    y, s, patients = _films(True)
    naive = clustered_bootstrap(y, s, 0.5, np.arange(len(y)), resamples=1000, seed=2)
    assert naive["sensitivity"][1] - naive["sensitivity"][0] < 0.7 * widths[True]["sensitivity"]


def test_bootstrap_interval_covers_the_point_estimate_and_is_seeded():
    y, s, patients = _films(True)
    ci = clustered_bootstrap(y, s, 0.5, patients, resamples=500, seed=7)
    m = binary_metrics(y, s, 0.5)
    for key in ci:
        assert ci[key][0] <= m[key] <= ci[key][1]
    assert ci == clustered_bootstrap(y, s, 0.5, patients, resamples=500, seed=7)
    one_class = clustered_bootstrap(np.ones(4), np.arange(4.0), 0.5, np.arange(4))
    assert one_class["specificity"] is None and one_class["roc_auc"] is None


def test_operating_points_take_thresholds_from_validation_only():
    points = operating_points(Y, S, Y[::-1], S, (0.5, 0.95))
    for point in points:
        t = threshold_for_sensitivity(Y, S, point["target_sensitivity"])
        assert point["threshold"] == t
        assert point["validation"]["sensitivity"] >= point["target_sensitivity"]
        assert point["sensitivity"] == binary_metrics(Y[::-1], S, t)["sensitivity"]
    assert points[0]["threshold"] > points[1]["threshold"]
