"""Metric math against confusion matrices computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.report.metrics import (binary_metrics, headline, pr_auc, roc_auc, threshold_for_sensitivity,
                              wilson_interval)

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
