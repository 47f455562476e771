"""Selective prediction: answer only when confident enough, and what that costs.

A classifier that may abstain ("unknown") trades coverage (the share of images it answers) for
accuracy on the images it answers. Everything here works on two per-image arrays: the top
probability (``confidence``) and whether the top class was right (``correct``).
"""

from __future__ import annotations

import numpy as np


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The risk-coverage curve: for every distinct confidence ``t`` (highest first), answering the
    images with confidence >= t gives ``coverage`` (share answered) and ``accuracy`` (on those).

    Returns ``(thresholds, coverage, accuracy)``, ordered by growing coverage.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, right_sorted = confidence[order], correct[order]
    # Ties share one threshold: keep the last index of each run of equal confidences.
    last_of_run = np.r_[conf_sorted[1:] != conf_sorted[:-1], True]
    answered = np.arange(1, confidence.size + 1)[last_of_run]
    right = np.cumsum(right_sorted)[last_of_run]
    return conf_sorted[last_of_run], answered / confidence.size, right / answered


def coverage_at(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float | None]:
    """Coverage and accuracy when images with confidence below ``threshold`` are not answered
    (accuracy is None when nothing is answered)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    answered = confidence >= threshold
    if confidence.size == 0:
        return 0.0, None
    coverage = float(answered.mean())
    accuracy = float(np.asarray(correct, dtype=bool)[answered].mean()) if answered.any() else None
    return coverage, accuracy


def threshold_for_accuracy(confidence: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """The smallest confidence threshold whose answered images reach ``target`` accuracy (so the
    largest coverage that does), or None when no threshold reaches it."""
    thresholds, _, accuracy = risk_coverage(confidence, correct)
    reaching = np.flatnonzero(accuracy >= target)
    if reaching.size == 0:
        return None
    return float(thresholds[reaching[-1]])


def accuracy_at_coverage(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float | None:
    """Accuracy on the ``coverage`` share of images the model is most confident about."""
    confidence = np.asarray(confidence, dtype=np.float64)
    count = int(round(coverage * confidence.size))
    if count == 0:
        return None
    order = np.argsort(-confidence, kind="stable")[:count]
    return float(np.asarray(correct, dtype=bool)[order].mean())
