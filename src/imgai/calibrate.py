"""Temperature scaling: one number that makes a classifier's probabilities mean what they say.

A network's softmax is usually over-confident. Dividing its logits by a temperature ``T`` fitted
on validation images (by minimising the negative log-likelihood; Guo et al. 2017, "On Calibration
of Modern Neural Networks") fixes most of that, and never changes which class is on top.

imgai's models end in one ``Dense(softmax)`` layer, so ``softmax((x W + b) / T)`` is the same
layer with kernel ``W / T`` and bias ``b / T``: the calibrated model is an ordinary Keras file
(no custom layer) that loads anywhere the original did. The logits are recovered from that
layer's input: the image features, computed once.

Figures reported:
- ECE: top-label expected calibration error, 15 equal-width confidence bins (0, 1/15], ...,
  each bin's |accuracy - mean confidence| weighted by its share of images.
- on the images the temperature was fitted on (the validation split) and on images it never saw:
  the test split when the run has one; otherwise the validation split is halved (per class, seeded
  by the run's seed), the temperature is fitted on one half and reported on the other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from imgai import stats
from imgai.errors import ImgaiError
from imgai.stats import ECE_BINS

CALIBRATED_MODEL = "calibrated.keras"
CALIBRATION_REPORT = "calibration.json"
# Searched on log T; metadata accepts 1e-3..1e3 (modelfile.check_metadata).
TEMPERATURE_RANGE = (1e-2, 1e2)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE of class probabilities: :func:`imgai.stats.expected_calibration_error`, the
    figure ``imgai eval`` reports."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = probabilities.argmax(axis=1) == np.asarray(labels) if len(labels) else np.zeros(0, bool)
    return stats.expected_calibration_error(probabilities.max(axis=1, initial=0.0), correct, bins)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(_log_softmax(np.asarray(logits, dtype=np.float64) / temperature))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    log_p = _log_softmax(np.asarray(logits, dtype=np.float64) / temperature)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL of ``labels`` under ``softmax(logits / T)``.

    A 1-D bounded search on log T (the NLL is convex in 1/T, and log T keeps the search
    symmetric between sharpening and softening)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(found.x))


def softmax_head(model):
    """The model's last layer when it is a ``Dense`` with a softmax that gives the model's output;
    anything else cannot be calibrated by folding and is refused."""
    import keras

    head = model.layers[-1] if model.layers else None
    ok = isinstance(head, keras.layers.Dense) and getattr(head.activation, "__name__", "") == "softmax"
    try:
        ok = ok and len(model.outputs) == 1 and head.output is model.outputs[0]
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        ok = False
    if not ok:
        name = "none" if head is None else f"{head.__class__.__name__} '{head.name}'"
        raise ImgaiError(
            f"cannot calibrate this model: its output is not one Dense layer with a softmax (last layer: "
            f"{name}); temperature scaling is folded into that layer: pass a model trained by imgai"
        )
    return head


def fold_temperature(head, temperature: float) -> None:
    """Divide the softmax layer's kernel and bias by ``temperature``, in place."""
    head.set_weights([np.asarray(w / temperature, dtype=w.dtype) for w in head.get_weights()])


@dataclass
class CalibrationResult:
    """What :func:`calibrate_model` fitted and measured, and where it wrote it."""

    model_path: Path  # the calibrated model
    report_path: Path  # calibration.json
    source_model: Path
    temperature: float  # fitted here
    total_temperature: float  # folded into the head in all (an already calibrated source's times this)
    fit_split: str
    fit_images: int
    report_split: str
    report_images: int
    ece_fit_before: float
    ece_fit_after: float
    ece_before: float  # on the report images
    ece_after: float
    nll_fit_before: float
    nll_fit_after: float
    nll_before: float
    nll_after: float
    accuracy: float  # on the report images (the same before and after)
    target_accuracy: float | None = None
    min_confidence: float | None = None
    coverage_fit: float | None = None
    accuracy_fit_at_threshold: float | None = None
    coverage: float | None = None  # on the report images at min_confidence
    accuracy_at_threshold: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["model_path"], data["report_path"] = str(self.model_path), str(self.report_path)
        data["source_model"] = str(self.source_model)
        data["ece"] = f"top-label, {ECE_BINS} equal-width bins"
        data["method"] = (
            "temperature scaling: NLL minimised on the fit images; 1/T folded into the softmax layer"
        )
        return data

    def summary(self) -> str:
        line = (
            f"Temperature {self.temperature:.3f} (fitted on {self.fit_images} {self.fit_split} images): "
            f"ECE {self.ece_before:.2%} -> {self.ece_after:.2%} on {self.report_images} {self.report_split} "
            f"images (on the fit images {self.ece_fit_before:.2%} -> {self.ece_fit_after:.2%}); "
            f"NLL {self.nll_before:.4f} -> {self.nll_after:.4f}; predicted classes unchanged."
        )
        if self.min_confidence is not None:
            line += (
                f"\nConfidence threshold {self.min_confidence:.4f} reaches {self.target_accuracy:.2%} accuracy "
                f"on the fit images ({self.accuracy_fit_at_threshold:.2%} on {self.coverage_fit:.1%} of them); "
                f"on the {self.report_split} images: "
                + (
                    "none answered"
                    if self.accuracy_at_threshold is None
                    else f"{self.accuracy_at_threshold:.2%} accuracy on {self.coverage:.1%} of them"
                )
                + ". Stored as the model's min_confidence."
            )
        return line + f"\nCalibrated model: {self.model_path} (report: {self.report_path})"


def check_target_accuracy(target: float | None) -> None:
    if target is not None and (
        isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < target <= 1.0
    ):
        raise ImgaiError(f"`target_accuracy` must be above 0 and at most 1 (e.g. 0.95), not {target!r}")


def output_paths(model_path: Path, output: str | Path | None) -> tuple[Path, Path]:
    """(calibrated model, report), checked: a .keras name in an existing folder, neither there yet."""
    out = Path(output) if output is not None else model_path.parent / CALIBRATED_MODEL
    if out.suffix != ".keras":
        raise ImgaiError(f"`output` '{out}' must end in .keras (Keras saves only that)")
    if not out.parent.is_dir():
        raise ImgaiError(f"cannot write '{out}': folder '{out.parent}' does not exist (`output`)")
    report = out.parent / CALIBRATION_REPORT
    for path in (out, report):
        if path.exists():
            raise ImgaiError(
                f"'{path}' already exists and is never overwritten: remove it, or pass another `output`"
            )
    if out.resolve() == model_path.resolve():
        raise ImgaiError("`output` is the model being calibrated: choose another file")
    return out, report


def check_run_data(model_path: str | Path) -> None:
    """The model's run has a validation split to fit on (checked before any model is loaded)."""
    _run_splits(Path(model_path), None)


def _run_splits(model_path: Path, class_names: list[str] | None):
    """(validation FileList, test FileList or None, seed, infer settings) of the model's run;
    ``class_names``: the model's, checked against the data's (None: not checked)."""
    from imgai.evaluate import run_config_and_splits

    config, splits = run_config_and_splits(
        model_path,
        "calibration fits on the run's validation split; pass a model from a run folder (`model_path` or `run`)",
    )
    if splits.val is None or len(splits.val) == 0:
        raise ImgaiError(
            f"the run in '{model_path.parent}' has no validation split (no val/ folder, data.validation_split "
            "empty): calibration fits on validation images; train with data.validation_split=0.2 or a val/ folder"
        )
    if class_names is not None and splits.class_names != list(class_names):
        raise ImgaiError(
            f"classes of the run's data {splits.class_names} differ from the model's {list(class_names)}: "
            "restore the data the model was trained on"
        )
    return splits.val, splits.test, config.seed, config.infer


def _features(feature_model, info, files, batch_size: int, workers: int):
    """(features before the softmax layer, labels) of the readable images of ``files``."""
    from imgai.predict import iter_predictions

    parts, labels = [], []
    for decoded, chunk in iter_predictions(
        feature_model, info, files, batch_size, workers, label="calibrating"
    ):
        parts.append(chunk)
        labels.append(decoded.labels)
    if not parts or sum(len(p) for p in parts) == 0:
        raise ImgaiError(f"none of the images in '{files.source}' could be read: nothing to calibrate on")
    return np.concatenate(parts).astype(np.float64), np.concatenate(labels).astype(np.int64)


def _halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves with every class split evenly (seeded)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = (len(members) + 1) // 2
        first.append(members[:cut])
        second.append(members[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def calibrate_model(
    model_path: str | Path,
    target_accuracy: float | None = None,
    output: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> CalibrationResult:
    """Fit a temperature on ``model_path``'s validation split, write the calibrated model (and
    calibration.json) beside it or to ``output``; with ``target_accuracy``, also the smallest
    confidence threshold reaching it on the fit images, stored as the model's ``min_confidence``."""
    import keras

    from imgai import selective
    from imgai.modelfile import load_model, save_model
    from imgai.runs import atomic_write_text

    model_path = Path(model_path)
    check_target_accuracy(target_accuracy)
    out, report = output_paths(model_path, output)
    model, info = load_model(model_path)
    head = softmax_head(model)
    val_files, test_files, seed, infer = _run_splits(model_path, list(info.class_names))

    weights = head.get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if len(weights) > 1 else 0.0
    feature_model = keras.Model(model.inputs, head.input)
    features, labels = _features(feature_model, info, val_files, infer.batch_size, infer.workers)
    logits = features @ kernel + bias
    if test_files is not None and len(test_files):
        test_features, test_labels = _features(
            feature_model, info, test_files, infer.batch_size, infer.workers
        )
        fit_logits, fit_labels = logits, labels
        report_logits, report_labels = test_features @ kernel + bias, test_labels
        fit_split, report_split = "validation", "test"
    else:
        if len(labels) < 4:
            raise ImgaiError(
                f"the validation split has only {len(labels)} readable image(s): too few to fit and check a "
                "temperature; use a larger data.validation_split"
            )
        fit_idx, report_idx = _halves(labels, seed)
        fit_logits, fit_labels = logits[fit_idx], labels[fit_idx]
        report_logits, report_labels = logits[report_idx], labels[report_idx]
        fit_split, report_split = "validation (half)", "held-out validation (other half)"
        log(
            "No test split: the temperature is fitted on half of the validation split and checked on the other half."
        )

    temperature = fit_temperature(fit_logits, fit_labels)
    all_right = bool((fit_logits.argmax(axis=1) == fit_labels).all())
    if all_right or not 1.01 * TEMPERATURE_RANGE[0] < temperature < 0.99 * TEMPERATURE_RANGE[1]:
        # With every fit image right, the likelihood only grows as T shrinks: T says little.
        log(
            f"Note: {'every fit image is right' if all_right else 'the temperature ran to the end of its range'} "
            f"(T = {temperature:.3g}), so these images say little about confidence; fit on more validation images."
        )
    total = temperature * (info.temperature or 1.0)
    if not 1e-3 <= total <= 1e3:
        raise ImgaiError(
            f"the fitted temperature {total:g} is outside 0.001..1000: the model's outputs are degenerate"
        )

    def measures(logits_, labels_):
        before, after = softmax(logits_), softmax(logits_, temperature)
        return (
            before,
            after,
            (
                expected_calibration_error(before, labels_),
                expected_calibration_error(after, labels_),
                negative_log_likelihood(logits_, labels_),
                negative_log_likelihood(logits_, labels_, temperature),
            ),
        )

    _, fit_after, fit_figures = measures(fit_logits, fit_labels)
    report_before, report_after, report_figures = measures(report_logits, report_labels)

    result = CalibrationResult(
        model_path=out,
        report_path=report,
        source_model=model_path,
        temperature=temperature,
        total_temperature=total,
        fit_split=fit_split,
        fit_images=len(fit_labels),
        report_split=report_split,
        report_images=len(report_labels),
        ece_fit_before=fit_figures[0],
        ece_fit_after=fit_figures[1],
        ece_before=report_figures[0],
        ece_after=report_figures[1],
        nll_fit_before=fit_figures[2],
        nll_fit_after=fit_figures[3],
        nll_before=report_figures[2],
        nll_after=report_figures[3],
        accuracy=float((report_before.argmax(axis=1) == report_labels).mean()),
    )
    if target_accuracy is not None:
        confidence, correct = fit_after.max(axis=1), fit_after.argmax(axis=1) == fit_labels
        threshold = selective.threshold_for_accuracy(confidence, correct, target_accuracy)
        if threshold is None:
            raise ImgaiError(
                f"no confidence threshold reaches accuracy {target_accuracy:g} on the {fit_split} images (even "
                f"the most confident image is wrong): lower `target_accuracy`"
            )
        coverage_fit, accuracy_fit = selective.coverage_at(confidence, correct, threshold)
        coverage, accuracy = selective.coverage_at(
            report_after.max(axis=1), report_after.argmax(axis=1) == report_labels, threshold
        )
        result = replace(
            result,
            target_accuracy=float(target_accuracy),
            min_confidence=threshold,
            coverage_fit=coverage_fit,
            accuracy_fit_at_threshold=accuracy_fit,
            coverage=coverage,
            accuracy_at_threshold=accuracy,
        )

    fold_temperature(head, temperature)
    _check_same_classes(head, features, logits)
    save_model(model, out, replace(info, temperature=total, min_confidence=result.min_confidence))
    atomic_write_text(report, json.dumps(result.to_dict(), indent=2) + "\n")
    log(result.summary())
    return result


def _check_same_classes(head, features: np.ndarray, logits: np.ndarray) -> None:
    """The folded layer, as stored (float32), must rank the classes as before on every image."""
    weights = head.get_weights()
    folded = features @ weights[0].astype(np.float64) + (
        weights[1].astype(np.float64) if len(weights) > 1 else 0.0
    )
    if not np.array_equal(folded.argmax(axis=1), logits.argmax(axis=1)):
        raise ImgaiError(
            "folding the temperature into the softmax layer changed a predicted class (classes tied to float "
            "precision): nothing was written"
        )
