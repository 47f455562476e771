import numpy as np

from imgai.selective import accuracy_at_coverage, coverage_at, risk_coverage, threshold_for_accuracy


def test_risk_coverage_by_hand():
    confidence = np.array([0.9, 0.8, 0.8, 0.6, 0.4])
    correct = np.array([True, True, False, True, False])
    thresholds, coverage, accuracy = risk_coverage(confidence, correct)
    np.testing.assert_allclose(thresholds, [0.9, 0.8, 0.6, 0.4])  # the tie at 0.8 is one step
    np.testing.assert_allclose(coverage, [0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(accuracy, [1.0, 2 / 3, 3 / 4, 3 / 5])


def test_threshold_for_accuracy_picks_largest_coverage():
    confidence = np.array([0.9, 0.8, 0.8, 0.6, 0.4])
    correct = np.array([True, True, False, True, False])
    assert threshold_for_accuracy(confidence, correct, 0.75) == 0.6
    assert threshold_for_accuracy(confidence, correct, 1.0) == 0.9
    assert threshold_for_accuracy(np.array([0.5]), np.array([False]), 0.5) is None
    assert coverage_at(confidence, correct, 0.6) == (0.8, 0.75)
    assert coverage_at(confidence, correct, 0.95) == (0.0, None)
    assert accuracy_at_coverage(confidence, correct, 0.4) == 1.0
