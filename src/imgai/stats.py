"""Statistics behind the evaluation report: calibration, bootstrap intervals, paired tests.

Everything works on plain arrays computed once from the model's probabilities (no second pass
over the images):

- calibration: expected calibration error (ECE), the Brier score and the negative log-likelihood,
  plus the per-bin figures a reliability diagram draws;
- bootstrap: resample the images (with replacement) many times and recompute the headline metrics
  for every resample at once with ``np.bincount`` over an index matrix, so 1000 resamples of a few
  thousand images cost a fraction of a second;
- paired comparison of two models scored on the same images: the exact McNemar test on accuracy
  and a paired bootstrap interval of the difference of any metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

ECE_BINS = 15
ECE_VARIANT = (
    "top-1 (confidence = highest probability), 15 equal-width bins over [0, 1], "
    "bin gap |accuracy - mean confidence| weighted by the bin's share of images (Guo et al. 2017)"
)
BRIER_VARIANT = (
    "multi-class: sum over classes of (probability - one-hot label)^2, mean over images (0 best, 2 worst)"
)
NLL_VARIANT = "mean of -ln(probability of the true class), probabilities clipped at 1e-7 (the report's loss)"
NLL_EPS = 1e-7


# ------------------------------------------------------------------------------ calibration


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin ``(lo, hi]`` (the first bin includes 0): image count, mean
    confidence and accuracy (None for an empty bin)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted 'left' on the inner edges puts a confidence equal to an edge in the lower bin
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    right_sum = np.bincount(index, weights=correct, minlength=bins)
    filled = counts > 0
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(bins), where=filled)
    accuracy = np.divide(right_sum, counts, out=np.zeros(bins), where=filled)
    return {
        "edges": edges.tolist(),
        "count": counts.astype(int).tolist(),
        "confidence": [float(v) if f else None for v, f in zip(mean_conf, filled)],
        "accuracy": [float(v) if f else None for v, f in zip(accuracy, filled)],
    }


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: sum over bins of (share of images in the bin) * |accuracy - mean confidence|."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    table = reliability_bins(confidence, correct, bins)
    return float(
        sum(
            count / n * abs(acc - conf)
            for count, acc, conf in zip(table["count"], table["accuracy"], table["confidence"])
            if count
        )
    )


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: sum over classes of (p - one-hot)^2, averaged over images."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n = len(probabilities)
    if n == 0:
        return float("nan")
    squared = np.square(probabilities).sum(axis=1)
    true_p = probabilities[np.arange(n), np.asarray(labels, dtype=np.int64)]
    # sum_k (p_k - y_k)^2 = sum_k p_k^2 - 2 p_true + 1
    return float(np.mean(squared - 2.0 * true_p + 1.0))


def per_image_nll(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n = len(labels)
    true_p = np.asarray(probabilities, dtype=np.float64)[np.arange(n), np.asarray(labels, dtype=np.int64)]
    return -np.log(np.clip(true_p, NLL_EPS, 1.0))


def calibration_metrics(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE, Brier score, NLL and the reliability table, with the variant of each in words."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    confidence = probabilities.max(axis=1) if n else np.zeros(0)
    correct = probabilities.argmax(axis=1) == labels if n else np.zeros(0, bool)
    return {
        "ece": expected_calibration_error(confidence, correct, bins),
        "brier": brier_score(probabilities, labels),
        "nll": float(per_image_nll(probabilities, labels).mean()) if n else float("nan"),
        "ece_variant": ECE_VARIANT,
        "brier_variant": BRIER_VARIANT,
        "nll_variant": NLL_VARIANT,
        "reliability": reliability_bins(confidence, correct, bins),
    }


# -------------------------------------------------------------------------------- bootstrap

# Resample rows are built in blocks so the index matrix stays near this many entries (~16 MB).
_BLOCK_ENTRIES = 2_000_000


def resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap index rows (each row: ``n`` image indices drawn with replacement),
    ``resamples`` rows in all, the same for the same ``seed`` whatever the block size."""
    rng = np.random.default_rng(seed)
    per_block = max(1, _BLOCK_ENTRIES // max(n, 1))
    done = 0
    while done < resamples:
        rows = min(per_block, resamples - done)
        yield rng.integers(0, n, size=(rows, n))
        done += rows


def _per_row_counts(keys: np.ndarray, num_classes: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(rows, n) class indices -> (rows, num_classes) counts, one bincount for all rows."""
    rows = keys.shape[0]
    offset = (np.arange(rows) * num_classes)[:, None]
    flat = (keys + offset).ravel()
    counts = np.bincount(
        flat, weights=None if weights is None else weights.ravel(), minlength=rows * num_classes
    )
    return counts.reshape(rows, num_classes)


class ScoredImages:
    """Per-image facts the headline metrics are made of, from probabilities and labels."""

    def __init__(self, probabilities: np.ndarray, labels: np.ndarray, top_k: int | None = None):
        probabilities = np.asarray(probabilities)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = probabilities.shape[1]
        self.predicted = probabilities.argmax(axis=1).astype(np.int64)
        self.correct = self.predicted == self.labels
        self.nll = per_image_nll(probabilities, self.labels)
        self.top_k = top_k
        if top_k is not None:
            top = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
            self.top_k_hit = (top == self.labels[:, None]).any(axis=1)

    def __len__(self) -> int:
        return len(self.labels)

    def metrics(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every headline metric for each resample row of image indices: arrays of shape (rows,),
        ``recall_per_class`` (rows, classes) with NaN where a resample holds no image of a class.
        The definitions are :func:`imgai.evaluate.compute_metrics`'s."""
        c = self.num_classes
        labels = self.labels[rows]
        predicted = self.predicted[rows]
        correct = self.correct[rows]
        support = _per_row_counts(labels, c)
        predicted_counts = _per_row_counts(predicted, c)
        true_positive = _per_row_counts(labels, c, correct.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted_counts > 0, true_positive / predicted_counts, 0.0)
            recall = np.where(support > 0, true_positive / support, 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        present = (support > 0) | (predicted_counts > 0)
        n_present = present.sum(axis=1)
        weights = support / support.sum(axis=1, keepdims=True)
        out = {
            "accuracy": correct.mean(axis=1),
            "loss": self.nll[rows].mean(axis=1),
            "recall_per_class": np.where(support > 0, recall, np.nan),
        }
        for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            out[f"{name}_macro"] = (values * present).sum(axis=1) / np.maximum(n_present, 1)
            out[f"{name}_weighted"] = (values * weights).sum(axis=1)
        if self.top_k is not None:
            out[f"top{self.top_k}_accuracy"] = self.top_k_hit[rows].mean(axis=1)
        return out


def _stack(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}


def bootstrap(scored: ScoredImages, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Every metric of :meth:`ScoredImages.metrics` for ``resamples`` bootstrap resamples."""
    return _stack([scored.metrics(rows) for rows in resample_indices(len(scored), resamples, seed)])


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The central ``level`` share of bootstrap values (NaN ignored), or None when there are none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    top_k: int | None,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict:
    """Percentile bootstrap intervals over images for the headline metrics and each class's recall."""
    scored = ScoredImages(probabilities, labels, top_k)
    draws = bootstrap(scored, resamples, seed)
    per_class = draws.pop("recall_per_class")
    return {
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "method": "percentile bootstrap over images",
        "metrics": {name: percentile_interval(values, level) for name, values in draws.items()},
        "recall": {name: percentile_interval(per_class[:, i], level) for i, name in enumerate(class_names)},
    }


# ---------------------------------------------------------------------------- paired tests


def mcnemar_exact(baseline_correct: np.ndarray, candidate_correct: np.ndarray) -> dict:
    """Exact (binomial) McNemar test on two models' right/wrong answers for the same images.

    Only the discordant images count: ``b`` right before and wrong now, ``c`` wrong before and
    right now. Under "no difference" each is equally likely, so the two-sided p-value is that of
    ``b`` successes in ``b + c`` fair coin flips."""
    before = np.asarray(baseline_correct, dtype=bool)
    now = np.asarray(candidate_correct, dtype=bool)
    b = int(np.sum(before & ~now))
    c = int(np.sum(~before & now))
    return {"lost": b, "gained": c, "p_value": binomial_two_sided(b, b + c)}


def binomial_two_sided(successes: int, trials: int) -> float:
    """Two-sided exact binomial p-value for p = 0.5 (scipy's binomtest when present)."""
    if trials == 0:
        return 1.0
    try:
        from scipy.stats import binomtest
    except ImportError:  # scipy is not a dependency of imgai; the sum below is exact too
        return binomial_two_sided_by_hand(successes, trials)
    return float(binomtest(successes, trials, 0.5).pvalue)


def binomial_two_sided_by_hand(successes: int, trials: int) -> float:
    """Exact two-sided p-value for p = 0.5: twice the smaller tail, at most 1 (the distribution is
    symmetric, so this equals the sum over outcomes no more likely than the one seen)."""
    if trials == 0:
        return 1.0
    low = min(successes, trials - successes)
    tail = sum(math.comb(trials, i) for i in range(low + 1))
    return min(1.0, 2.0 * tail / 2.0**trials)


def paired_bootstrap(
    baseline: ScoredImages, candidate: ScoredImages, resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Per metric, the candidate-minus-baseline difference on each of ``resamples`` resamples of
    the images (the same resample for both models, which is what makes it paired)."""
    blocks = []
    for rows in resample_indices(len(candidate), resamples, seed):
        before, now = baseline.metrics(rows), candidate.metrics(rows)
        blocks.append({key: now[key] - before[key] for key in now if key in before})
    return _stack(blocks)


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value for "no difference": twice the share of resamples on the far
    side of zero (counting ties half), at most 1 and at least 1 / resamples (no resample on the
    far side says p is below that, not that it is 0)."""
    values = np.asarray(differences, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    below = np.mean(values < 0) + 0.5 * np.mean(values == 0)
    return float(min(1.0, max(2.0 * min(below, 1.0 - below), 1.0 / values.size)))
