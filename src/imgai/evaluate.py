"""Evaluation: score a saved model on labelled images, run the quality gate, write the report."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgai import __version__
from imgai.data import FileList, find_split_folder, list_class_folders, scan_folder
from imgai.errors import ImgaiError
from imgai.gate import (
    check_bounds,
    check_gate,
    check_open_unit,
    find_baseline,
    format_results,
    paired_comparison,
    read_baseline_predictions,
    run_checks,
)
from imgai.names import TOP_K_METRIC
from imgai.runs import CONFIG_FILE, HISTORY_FILE
from imgai.selective import accuracy_at_coverage, coverage_at, threshold_for_accuracy
from imgai.stats import bootstrap_intervals, calibration_metrics

if TYPE_CHECKING:
    from imgai.config import Config, EvalConfig, InferConfig


def eval_files_from_folder(folder: str | Path, model_classes: list[str]) -> FileList:
    """Labelled files from ``folder`` (class sub-folders, or a root with a test/ or val/ folder),
    with labels indexing the model's classes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImgaiError(
            f"data folder '{folder}' does not exist: pass a folder with one sub-folder per class as `data_dir`"
        )
    for kind in ("test", "val"):
        split = find_split_folder(folder, kind)
        if split is not None and not (set(list_class_folders(folder)) <= set(model_classes)):
            folder = split
            break
    found = list_class_folders(folder)
    unknown = sorted(set(found) - set(model_classes))
    if unknown or not found:
        raise ImgaiError(
            f"classes in '{folder}' {found} differ from the model's classes {model_classes} "
            f"(not in the model: {unknown}): pass a folder whose sub-folders are the model's classes"
        )
    files = scan_folder(folder, found)
    index = {name: model_classes.index(name) for name in found}
    labels = np.asarray([index[found[i]] for i in files.labels], dtype=np.int32)
    return FileList(files.paths, labels, list(model_classes), str(folder))


def run_config_and_splits(model_path: Path, fix: str):
    """(config, splits) of the run that produced ``model_path``; ``fix`` finishes the error line
    when the model is not inside a run folder."""
    from imgai.config import build_config, read_yaml
    from imgai.data import resolve_splits

    config_path = model_path.parent / CONFIG_FILE
    if not config_path.is_file():
        raise ImgaiError(f"'{model_path}' is not inside a run folder (no {CONFIG_FILE} beside it): {fix}")
    config = build_config(read_yaml(config_path))
    return config, resolve_splits(config.data, config.seed)


def run_splits(model_path: Path, model_classes: list[str]):
    """The data splits of the run that produced ``model_path`` (checked against its classes)."""
    _, splits = run_config_and_splits(
        model_path, "pass `data_dir` (a folder of labelled images) to say what to score"
    )
    for chosen in (splits.test, splits.val):
        if chosen is not None and chosen.class_names != list(model_classes):
            raise ImgaiError(
                f"classes of '{chosen.source}' {chosen.class_names} differ "
                f"from the model's {model_classes}: pass `data_dir`, a folder of the model's classes"
            )
    return splits


def eval_split_from_run(model_path: Path, model_classes: list[str]) -> tuple[FileList, str]:
    """The test split of the run that produced ``model_path``, else its validation split, and
    which of the two it is ("test" or "val")."""
    splits = run_splits(model_path, model_classes)
    if splits.test is not None:
        return splits.test, "test"
    if splits.val is None:
        raise ImgaiError(
            f"the run in '{model_path.parent}' has no test or validation split: "
            "pass `data_dir`, a folder of labelled images"
        )
    return splits.val, "val"


def eval_files_from_run(model_path: Path, model_classes: list[str]) -> FileList:
    """The test split of the run that produced ``model_path``, else its validation split."""
    return eval_split_from_run(model_path, model_classes)[0]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0 where the denominator is 0 (no predictions / no images of a class), as scikit-learn does.
    return np.divide(
        numerator, denominator, out=np.zeros(len(numerator), dtype=np.float64), where=denominator > 0
    )


def compute_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str], top_k: int = 5
) -> dict:
    """Loss, accuracy, top-k accuracy, precision / recall / F1 (per class, macro, weighted) and
    the confusion matrix, from probabilities and integer labels.

    Averages follow scikit-learn's definitions: macro is the plain mean over the classes that
    occur among the labels or the predictions, weighted is the mean weighted by support, and a
    ratio with a zero denominator counts as 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    eps = 1e-7
    loss = (
        float(-np.mean(np.log(np.clip(probabilities[np.arange(n), labels], eps, 1.0)))) if n else float("nan")
    )
    metrics: dict = {
        "num_images": int(n),
        "loss": loss,
        "accuracy": float(np.mean(predicted == labels)) if n else float("nan"),
    }
    if num_classes > 2:
        k = min(top_k, num_classes - 1)
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        metrics[f"top{k}_accuracy"] = (
            float(np.mean((top == labels[:, None]).any(axis=1))) if n else float("nan")
        )

    matrix = confusion_matrix(labels, predicted, num_classes)
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted_counts = matrix.sum(axis=0)
    precision = _ratio(true_positives, predicted_counts)
    recall = _ratio(true_positives, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support > 0) | (predicted_counts > 0)
    weights = support / support.sum() if n else np.zeros(num_classes)
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        metrics[f"{name}_macro"] = float(values[present].mean()) if present.any() else float("nan")
        metrics[f"{name}_weighted"] = float((values * weights).sum()) if n else float("nan")

    metrics["per_class"] = {
        name: {
            "support": int(support[i]),
            # accuracy within a class is its recall; kept under both names for older readers
            "accuracy": float(recall[i]) if support[i] else None,
            "precision": float(precision[i]),
            "recall": float(recall[i]) if support[i] else None,
            "f1": float(f1[i]),
            "predicted": int(predicted_counts[i]),
        }
        for i, name in enumerate(class_names)
    }
    metrics["confusion_matrix"] = matrix.tolist()
    return metrics


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_monitor(run_dir: Path) -> str:
    """The metric that chose best.keras in this run (to mark the best epoch on the curves)."""
    from imgai.config import read_yaml

    try:
        return str(read_yaml(run_dir / CONFIG_FILE).get("train", {}).get("monitor") or "val_accuracy")
    except (ImgaiError, AttributeError):
        return "val_accuracy"


def eval_settings(
    model_path: str | Path | None = None,
    config_files: list[str | Path] | tuple = (),
    *,
    batch_size: int | None = None,
    top_k: int | None = None,
    fail_under: dict[str, float] | None = None,
    fail_over: dict[str, float] | None = None,
    min_class_recall: float | None = None,
    baseline: str | None = None,
    max_drop: dict[str, float] | None = None,
    significance: float | None = None,
    target_accuracy: float | None = None,
    min_confidence: float | None = None,
    tta: str | None = None,
) -> Config:
    """The ``eval`` and ``infer`` settings for scoring ``model_path``: its run's config.yaml, then
    ``config_files``, then the parameters given here (bounds add to and win over those of the files).
    Validated once, baseline file included, so a mistake fails before any model is loaded."""
    from imgai.config import load_sections

    check_bounds(fail_under, fail_over, min_class_recall, max_drop)
    check_open_unit(significance, "eval.significance")
    check_open_unit(target_accuracy, "eval.target_accuracy")
    check_open_unit(min_confidence, "infer.min_confidence")
    run_config = Path(model_path).parent / CONFIG_FILE if model_path is not None else None
    files = ([run_config] if run_config is not None and run_config.is_file() else []) + list(config_files)
    given = {
        "top_k": top_k,
        "fail_under": fail_under,
        "fail_over": fail_over,
        "min_class_recall": min_class_recall,
        "baseline": baseline,
        "max_drop": max_drop,
        "significance": significance,
        "target_accuracy": target_accuracy,
    }
    infer = {"batch_size": batch_size, "min_confidence": min_confidence, "tta": tta}
    settings = load_sections(
        files,
        ("eval", "infer"),
        eval={k: v for k, v in given.items() if v is not None},
        infer={k: v for k, v in infer.items() if v is not None},
    )
    check_gate(settings.eval)
    return settings


def _score(model, info, files: FileList, batch_size: int, label: str):
    """One inference pass: probabilities, labels and paths of the images that could be read."""
    from imgai.predict import iter_predictions

    parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    for decoded, chunk_probabilities in iter_predictions(model, info, files, batch_size, label=label):
        # keep only what the metrics need; the decoded pixels of each chunk are dropped here
        parts.append(chunk_probabilities)
        label_parts.append(decoded.labels)
        paths.extend(decoded.paths)
        skipped.extend(decoded.skipped)
    probabilities = np.concatenate(parts) if parts else np.zeros((0, info.num_classes), np.float32)
    labels = np.concatenate(label_parts) if label_parts else np.zeros(0, np.int32)
    return probabilities, labels, paths, skipped


def evaluate(
    model_path: str | Path,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    log: Callable[[str], None] = print,
    output_dir: str | Path | None = None,
    gate: EvalConfig | None = None,
    top_k: int | None = None,
    gallery_size: int | None = None,
    infer: InferConfig | None = None,
    tta: str = "none",
) -> dict:
    """Score ``model_path`` on ``data_dir`` (or its run's test/val split), run the quality gate
    ``gate`` (see :func:`eval_settings`), and write the report (metrics.json, CSVs, plots,
    summary.md) into a new folder ``eval/<split>/`` beside the model (``eval/<split>-2/``, ... when
    that split was scored before; ``eval/latest`` names the newest) or into ``output_dir``.
    Returns the metrics; ``metrics["gate"]["passed"]`` says whether it may ship and
    ``metrics["report_dir"]`` where the report went. ``batch_size`` and ``top_k`` left empty take
    ``infer.batch_size`` and ``eval.top_k`` (``gate``'s, else the defaults), and ``gallery_size``
    (images in misclassified.png) ``eval.gallery_size``; ``infer``'s ``min_confidence`` (else the
    model's calibrated one) is the threshold whose coverage and accuracy are reported. ``tta``:
    test-time augmentation (:mod:`imgai.tta`); the accuracy without it is reported beside."""
    from imgai.artifacts import load_any_model
    from imgai.config import EvalConfig, InferConfig
    from imgai.report import write_report
    from imgai.runs import create_eval_dir
    from imgai.tta import with_tta

    model_path = Path(model_path)
    baseline = check_gate(gate) if gate is not None else None  # a mistake fails before the slow part
    settings = gate if gate is not None else EvalConfig()
    infer = infer if infer is not None else InferConfig()
    batch_size = batch_size or infer.batch_size
    top_k = top_k if top_k is not None else (gate.top_k if gate is not None else None)
    if gallery_size is None:
        gallery_size = (gate or EvalConfig()).gallery_size
    model, info = load_any_model(model_path)  # a .keras file, or an exported artifact and its runtime
    classes = list(info.class_names)
    notes: list[str] = []
    if data_dir is not None:
        files = eval_files_from_folder(data_dir, classes)
        split = Path(files.source).name
    else:
        files, split = eval_split_from_run(model_path, classes)
        if split == "val":
            notes.append(
                "the run has no test split, so this scores the validation split that chose "
                "best.keras: the figures are optimistic (score held-out images for an honest one)."
            )
    val_files = _validation_files(model_path, classes) if settings.target_accuracy else None
    log(f"Scoring {model_path} on {len(files)} images from {files.source}")
    start = time.perf_counter()
    scorer = with_tta(model, tta, info.interpolation)
    probabilities, labels, paths, skipped = _score(scorer, info, files, batch_size, "scoring")
    if skipped:
        log(
            f"Skipped {len(skipped)} unreadable file(s): "
            + ", ".join(p for p, _ in skipped[:5])
            + (" ..." if len(skipped) > 5 else "")
        )
    if len(paths) == 0:
        raise ImgaiError(f"none of the images in '{files.source}' could be read")
    seconds = time.perf_counter() - start
    if top_k is None:  # as in training for many classes; top-2 says more than top-4 of 5
        top_k = 5 if len(classes) > 5 else 2
    metrics = compute_metrics(probabilities, labels, classes, top_k)
    if scorer is not model:  # before any other pass through the scorer adds to what it kept
        metrics["tta"] = tta_gain(tta, scorer.plain_probabilities(), probabilities, labels)
    metrics["calibration"] = calibration_metrics(probabilities, labels)
    metrics.update({key: metrics["calibration"][key] for key in ("ece", "brier", "nll")})
    k_used = _top_k_used(metrics)
    if settings.bootstrap_resamples:
        intervals = bootstrap_intervals(
            probabilities, labels, classes, k_used, settings.bootstrap_resamples, settings.bootstrap_seed
        )
        metrics["intervals"] = intervals
        for name, row in metrics["per_class"].items():
            row["recall_interval"] = intervals["recall"][name]
    metrics["selective"] = selective_figures(probabilities, labels, infer, info)
    if val_files is not None:
        if split == "val" and data_dir is None:
            val_probabilities, val_labels = probabilities, labels
        else:
            log(f"Scoring the validation split ({len(val_files)} images) to choose a threshold")
            val_probabilities, val_labels, _, _ = _score(scorer, info, val_files, batch_size, "validation")
        metrics["selective"]["target"] = _target(
            settings.target_accuracy, val_probabilities, val_labels, probabilities, labels, split
        )
    metrics.update(
        {
            "num_skipped": len(skipped),
            "skipped": [p for p, _ in skipped],
            "class_names": classes,
            "model": str(model_path),
            "model_sha256": file_sha256(model_path / "saved_model.pb" if model_path.is_dir() else model_path),
            "data": files.source,
            "split": split,
            "imgai_version": __version__,
            **_runtime_fields(model),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "notes": notes,
        }
    )
    paired = None
    if baseline is not None:
        baseline = find_baseline(gate.baseline, split)  # the run's report of this same split
        if baseline.predictions is not None:
            before = read_baseline_predictions(baseline, paths, labels, classes)
            paired = paired_comparison(
                before,
                probabilities,
                labels,
                k_used,
                list(gate.max_drop),
                settings.bootstrap_resamples,
                settings.bootstrap_seed,
                1.0 - settings.significance,
            )
            metrics["baseline"] = {"source": str(baseline.predictions), "comparison": paired}
        else:
            metrics["baseline"] = {"source": str(baseline.source), "comparison": None}
    results = run_checks(gate, metrics, baseline, paired) if gate is not None and not gate.is_empty() else []
    if results:
        metrics["gate"] = {"passed": all(r.passed for r in results), "checks": [r.to_dict() for r in results]}
    out_dir = Path(output_dir) if output_dir is not None else create_eval_dir(model_path.parent, split)
    metrics["report_dir"] = str(out_dir)
    written = write_report(
        out_dir,
        metrics,
        paths,
        labels,
        probabilities,
        info,
        history_path=model_path.parent / HISTORY_FILE,
        monitor=_run_monitor(model_path.parent),
        gallery_size=gallery_size,
        log=log,
    )
    log(format_metrics(metrics))
    if "tta" in metrics:
        log(describe_tta(metrics["tta"]))
    log(f"Wrote {len(written)} report files to {out_dir}/: " + ", ".join(p.name for p in written))
    if results:
        log(format_results(results))
    return metrics


def _top_k_used(metrics: dict) -> int | None:
    """The k of the top-k accuracy compute_metrics reported (None with two classes)."""
    for key in metrics:
        match = TOP_K_METRIC.match(key)
        if match:
            return int(match.group(1))
    return None


def _validation_files(model_path: Path, classes: list[str]) -> FileList:
    """The run's validation split, on which ``eval.target_accuracy`` chooses its threshold."""
    if not (model_path.parent / CONFIG_FILE).is_file():
        raise ImgaiError(
            f"`eval.target_accuracy` chooses a threshold on the validation split of the model's run, and "
            f"'{model_path}' is not inside a run folder: pass a model trained by 'imgai train'"
        )
    splits = run_splits(model_path, classes)
    if splits.val is None:
        raise ImgaiError(
            f"`eval.target_accuracy` chooses a threshold on the validation split, and the run in "
            f"'{model_path.parent}' has none: train with a validation split (data.validation_split)"
        )
    return splits.val


def selective_figures(probabilities: np.ndarray, labels: np.ndarray, infer: InferConfig, info) -> dict:
    """Coverage and accuracy when only confident answers count: at the threshold in use (flag,
    config or the model's calibration), and the accuracy at 80 % and 90 % coverage."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    out: dict = {
        "accuracy_at_coverage": {
            f"{c:.2f}": accuracy_at_coverage(confidence, correct, c) for c in (0.5, 0.8, 0.9, 1.0)
        }
    }
    threshold, source = infer.min_confidence, "infer.min_confidence"
    if threshold is None and info.min_confidence is not None:
        threshold, source = info.min_confidence, "the model's calibration"
    if threshold is not None:
        coverage, accuracy = coverage_at(confidence, correct, threshold)
        out.update(
            min_confidence=float(threshold), threshold_source=source, coverage=coverage, accuracy=accuracy
        )
    return out


def _target(target, val_probabilities, val_labels, probabilities, labels, split) -> dict:
    """The smallest threshold whose answered validation images reach ``target`` accuracy, and what
    it gives on the images scored here."""
    val_conf = val_probabilities.max(axis=1)
    val_correct = val_probabilities.argmax(axis=1) == val_labels
    threshold = threshold_for_accuracy(val_conf, val_correct, target)
    out: dict = {"target_accuracy": target, "threshold": threshold, "chosen_on": "val"}
    if threshold is not None:
        out["val_coverage"], out["val_accuracy"] = coverage_at(val_conf, val_correct, threshold)
        conf, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
        out["coverage"], out["accuracy"] = coverage_at(conf, correct, threshold)
        out["split"] = split
    return out


def tta_gain(mode: str, plain: np.ndarray, augmented: np.ndarray, labels: np.ndarray) -> dict:
    """What test-time augmentation changed: accuracy with and without it, on the same images."""
    from imgai.tta import view_count

    with_views = float(np.mean(augmented.argmax(axis=1) == labels))
    without = float(np.mean(plain.argmax(axis=1) == labels))
    return {
        "mode": mode,
        "views": view_count(mode),
        "accuracy": with_views,
        "accuracy_without": without,
        "gain": with_views - without,
    }


def describe_tta(tta: dict) -> str:
    return (
        f"Test-time augmentation {tta['mode']} ({tta['views']} views per image): accuracy "
        f"{tta['accuracy']:.2%}, without it {tta['accuracy_without']:.2%} "
        f"({100 * tta['gain']:+.2f} points)."
    )


def _runtime_fields(model) -> dict:
    """Which Keras and backend scored the model; for an exported artifact, its runtime."""
    runtime = getattr(model, "runtime", None)
    if runtime is not None:
        return {"keras_version": "not used", "backend": runtime}
    import keras

    return {"keras_version": keras.__version__, "backend": keras.backend.backend()}


def _interval(metrics: dict, name: str, fmt: str = ".1%") -> str:
    """ "  [87.0%, 93.5%]": the metric's bootstrap interval, or nothing when there is none."""
    bounds = metrics.get("intervals", {}).get("metrics", {}).get(name)
    return f"  [{bounds[0]:{fmt}}, {bounds[1]:{fmt}}]" if bounds else ""


def format_metrics(metrics: dict) -> str:
    """The printed summary: overall figures (with their bootstrap intervals), calibration,
    selective prediction, then one line per class."""
    intervals = metrics.get("intervals")
    lines = [
        f"  images         {metrics['num_images']}"
        + (f" ({metrics['num_skipped']} skipped)" if metrics.get("num_skipped") else ""),
        f"  loss           {metrics['loss']:.4f}",
        f"  accuracy       {metrics['accuracy']:.2%}{_interval(metrics, 'accuracy')}",
    ]
    lines += [
        f"  {key.replace('_', ' '):<14} {value:.2%}{_interval(metrics, key)}"
        for key, value in metrics.items()
        if key.startswith("top") and key.endswith("_accuracy")
    ]
    for avg in ("macro", "weighted"):
        if f"f1_{avg}" in metrics:
            lines.append(
                f"  {avg:<14} precision {metrics[f'precision_{avg}']:.2%}  recall "
                f"{metrics[f'recall_{avg}']:.2%}  F1 {metrics[f'f1_{avg}']:.2%}{_interval(metrics, f'f1_{avg}')}"
            )
    if intervals:
        lines.append(
            f"  [..] = {intervals['level']:.0%} bootstrap interval over images "
            f"({intervals['resamples']} resamples, seed {intervals['seed']})"
        )
    if "ece" in metrics:
        lines += [
            f"  ECE            {metrics['ece']:.2%}  (top-1 confidence, 15 equal-width bins)",
            f"  Brier          {metrics['brier']:.4f}  (multi-class, summed over classes: 0 best, 2 worst)",
            f"  NLL            {metrics['nll']:.4f}",
        ]
    selective = metrics.get("selective", {})
    at = selective.get("accuracy_at_coverage", {})
    if at.get("0.80") is not None and at.get("0.90") is not None:
        lines.append(f"  most confident 80% of images: {at['0.80']:.1%} right; 90%: {at['0.90']:.1%} right")
    if "min_confidence" in selective:
        accuracy = "n/a" if selective["accuracy"] is None else f"{selective['accuracy']:.1%}"
        lines.append(
            f"  min confidence {selective['min_confidence']:g} ({selective['threshold_source']}): answers "
            f"{selective['coverage']:.1%} of images, {accuracy} of them right"
        )
    target = selective.get("target")
    if target:
        lines.append(_target_line(target))
    width = max(len(name) for name in [*metrics["per_class"], "class"])
    lines.append(
        f"  {'class':<{width}}  {'precision':>9}  {'recall':>7}  {'F1':>7}  {'images':>6}"
        + ("  recall interval" if intervals else "")
    )
    for name, row in metrics["per_class"].items():
        recall = row.get("recall", row.get("accuracy"))
        cells = [
            "n/a" if row.get("precision") is None else f"{row['precision']:.1%}",
            "n/a" if recall is None else f"{recall:.1%}",
            "n/a" if row.get("f1") is None else f"{row['f1']:.1%}",
        ]
        bounds = row.get("recall_interval")
        lines.append(
            f"  {name:<{width}}  {cells[0]:>9}  {cells[1]:>7}  {cells[2]:>7}  {row['support']:>6}"
            + (f"  [{bounds[0]:.1%}, {bounds[1]:.1%}]" if bounds else "")
        )
    lines += [f"Note: {note}" for note in metrics.get("notes", [])]
    return "\n".join(lines)


def _target_line(target: dict) -> str:
    if target["threshold"] is None:
        return (
            f"  target accuracy {target['target_accuracy']:.1%}: no confidence threshold reaches it "
            "on the validation split"
        )
    line = (
        f"  target accuracy {target['target_accuracy']:.1%}: min confidence {target['threshold']:.4f} "
        f"(validation split: answers {target['val_coverage']:.1%}, {target['val_accuracy']:.1%} right)"
    )
    if target.get("split") != "val":
        accuracy = "n/a" if target["accuracy"] is None else f"{target['accuracy']:.1%}"
        line += (
            f"\n    on the images scored here it answers {target['coverage']:.1%}, {accuracy} of them right"
        )
    return line + f"\n    use it: imgai predict ... --min-confidence {target['threshold']:.4f}"
