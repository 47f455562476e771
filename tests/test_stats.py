"""Calibration metrics, bootstrap intervals and paired tests, checked against hand-computed values."""

import math

import numpy as np
import pytest

from imgai import stats
from imgai.evaluate import compute_metrics

# Four images, two classes. Top-1 confidences 0.9 (right), 0.9 (wrong), 0.75 (right), 0.55 (right).
PROBS = np.array([[0.9, 0.1], [0.9, 0.1], [0.25, 0.75], [0.55, 0.45]])
LABELS = np.array([0, 1, 1, 0])


def test_calibration_by_hand():
    found = stats.calibration_metrics(PROBS, LABELS)
    # bins: {0.9, 0.9}: accuracy 1/2, confidence 0.9 -> |0.5 - 0.9| * 2/4 = 0.2
    #       {0.75}: 1 vs 0.75 -> 0.25 * 1/4;  {0.55}: 1 vs 0.55 -> 0.45 * 1/4
    assert found["ece"] == pytest.approx(0.2 + 0.0625 + 0.1125)
    # (0.1² + 0.1²) + (0.9² + 0.9²) + (0.25² + 0.25²) + (0.45² + 0.45²), over 4 images
    assert found["brier"] == pytest.approx((0.02 + 1.62 + 0.125 + 0.405) / 4)
    assert found["nll"] == pytest.approx(
        -(math.log(0.9) + math.log(0.1) + math.log(0.75) + math.log(0.55)) / 4
    )
    assert found["nll"] == pytest.approx(compute_metrics(PROBS, LABELS, ["a", "b"])["loss"])
    table = found["reliability"]
    assert sum(table["count"]) == 4 and len(table["count"]) == stats.ECE_BINS
    assert table["count"][13] == 2 and table["accuracy"][13] == 0.5  # (13/15, 14/15] holds 0.9
    assert table["accuracy"][0] is None  # empty bins say so, not 0
    assert "15 equal-width bins" in found["ece_variant"] and "0 best, 2 worst" in found["brier_variant"]


def test_bin_edges_and_perfect_calibration():
    # a confidence on an edge belongs to the bin below it ((lo, hi]); 1.0 to the last bin
    table = stats.reliability_bins(np.array([1.0, 2 / 15, 0.0]), np.array([True, True, False]))
    assert table["count"][14] == 1 and table["count"][1] == 1 and table["count"][0] == 1
    # every image right at confidence 1: no calibration error, Brier 0
    assert stats.expected_calibration_error(np.ones(5), np.ones(5, bool)) == 0.0
    assert stats.brier_score(np.eye(3), np.arange(3)) == 0.0


def test_mcnemar_on_a_hand_computed_table():
    # baseline right / candidate wrong: 1 image; baseline wrong / candidate right: 7; 12 agree.
    before = np.array([1] * 10 + [1] + [0] * 7 + [0, 0], bool)
    now = np.array([1] * 10 + [0] + [1] * 7 + [0, 0], bool)
    test = stats.mcnemar_exact(before, now)
    assert (test["lost"], test["gained"]) == (1, 7)
    # P(X <= 1) for X ~ Binomial(8, 1/2) = (1 + 8) / 256, doubled
    assert test["p_value"] == pytest.approx(18 / 256)
    assert stats.binomial_two_sided_by_hand(1, 8) == pytest.approx(18 / 256)
    assert stats.binomial_two_sided_by_hand(0, 6) == pytest.approx(2 / 64)
    assert stats.binomial_two_sided_by_hand(4, 8) == 1.0 and stats.binomial_two_sided(0, 0) == 1.0
    pytest.importorskip("scipy")  # the by-hand sum and scipy's binomtest agree
    for b, n in ((0, 1), (3, 15), (10, 21), (40, 100)):
        assert stats.binomial_two_sided(b, n) == pytest.approx(stats.binomial_two_sided_by_hand(b, n))


def _synthetic(n=300, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


def test_resampled_metrics_equal_compute_metrics():
    probs, labels = _synthetic()
    scored = stats.ScoredImages(probs, labels, top_k=2)
    rows = next(stats.resample_indices(len(labels), 3, seed=5))
    found = scored.metrics(rows)
    for r, row in enumerate(rows):
        expected = compute_metrics(probs[row], labels[row], list("abcd"), top_k=2)
        for name in ("accuracy", "loss", "top2_accuracy", "f1_macro", "precision_weighted", "recall_macro"):
            assert found[name][r] == pytest.approx(expected[name]), name
        recall = [expected["per_class"][c]["recall"] for c in "abcd"]
        assert found["recall_per_class"][r] == pytest.approx(
            [np.nan if v is None else v for v in recall], nan_ok=True
        )


def test_bootstrap_is_reproducible_from_the_seed(monkeypatch):
    probs, labels = _synthetic()
    first = stats.bootstrap_intervals(probs, labels, list("abcd"), 2, 200, seed=7)
    again = stats.bootstrap_intervals(probs, labels, list("abcd"), 2, 200, seed=7)
    other = stats.bootstrap_intervals(probs, labels, list("abcd"), 2, 200, seed=8)
    assert first == again and first["metrics"] != other["metrics"]
    monkeypatch.setattr(stats, "_BLOCK_ENTRIES", 1000)  # many small blocks: the same draws
    assert stats.bootstrap_intervals(probs, labels, list("abcd"), 2, 200, seed=7) == first
    point = compute_metrics(probs, labels, list("abcd"), 2)
    for name in ("accuracy", "top2_accuracy", "f1_macro"):
        low, high = first["metrics"][name]
        assert low < point[name] < high
    assert set(first["recall"]) == set("abcd") and first["level"] == 0.95


def test_paired_bootstrap():
    probs, labels = _synthetic()
    same = stats.ScoredImages(probs, labels, 2)
    diffs = stats.paired_bootstrap(same, same, 100, seed=0)
    assert np.all(diffs["accuracy"] == 0) and stats.bootstrap_p_value(diffs["accuracy"]) == 1.0
    worse = probs.copy()
    worse[:60] = np.roll(worse[:60], 1, axis=1)  # 60 images answered differently, mostly wrong now
    diffs = stats.paired_bootstrap(same, stats.ScoredImages(worse, labels, 2), 500, seed=0)
    # no resample on the far side of 0: p is below 1 / 500, reported as that bound, not as 0
    assert np.all(diffs["accuracy"] < 0) and stats.bootstrap_p_value(diffs["accuracy"]) == 1 / 500
