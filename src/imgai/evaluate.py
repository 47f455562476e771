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
from imgai.gate import check_bounds, check_gate, format_results, run_checks
from imgai.runs import CONFIG_FILE, HISTORY_FILE

if TYPE_CHECKING:
    from imgai.config import Config, EvalConfig


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


def eval_files_from_run(model_path: Path, model_classes: list[str]) -> FileList:
    """The test split of the run that produced ``model_path``, else its validation split."""
    from imgai.config import build_config, read_yaml
    from imgai.data import resolve_splits

    config_path = model_path.parent / CONFIG_FILE
    if not config_path.is_file():
        raise ImgaiError(
            f"'{model_path}' is not inside a run folder (no {CONFIG_FILE} "
            "beside it): pass `data_dir` (a folder of labelled images) to say what to score"
        )
    config = build_config(read_yaml(config_path))
    splits = resolve_splits(config.data, config.seed)
    chosen = splits.test or splits.val
    if chosen is None:
        raise ImgaiError(
            f"the run in '{model_path.parent}' has no test or validation split: "
            "pass `data_dir`, a folder of labelled images"
        )
    if chosen.class_names != list(model_classes):
        raise ImgaiError(
            f"classes of '{chosen.source}' {chosen.class_names} differ "
            f"from the model's {model_classes}: pass `data_dir`, a folder of the model's classes"
        )
    return chosen


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
    tta: str | None = None,
) -> Config:
    """The ``eval`` and ``infer`` settings for scoring ``model_path``: its run's config.yaml, then
    ``config_files``, then the parameters given here (bounds add to and win over those of the files).
    Validated once, baseline file included, so a mistake fails before any model is loaded."""
    from imgai.config import load_sections

    check_bounds(fail_under, fail_over, min_class_recall, max_drop)
    run_config = Path(model_path).parent / CONFIG_FILE if model_path is not None else None
    files = ([run_config] if run_config is not None and run_config.is_file() else []) + list(config_files)
    given = {
        "top_k": top_k,
        "fail_under": fail_under,
        "fail_over": fail_over,
        "min_class_recall": min_class_recall,
        "baseline": baseline,
        "max_drop": max_drop,
    }
    settings = load_sections(
        files,
        ("eval", "infer"),
        eval={k: v for k, v in given.items() if v is not None},
        infer={k: v for k, v in (("batch_size", batch_size), ("tta", tta)) if v is not None},
    )
    check_gate(settings.eval)
    return settings


def evaluate(
    model_path: str | Path,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    log: Callable[[str], None] = print,
    output_dir: str | Path | None = None,
    gate: EvalConfig | None = None,
    top_k: int | None = None,
    gallery_size: int | None = None,
    tta: str = "none",
) -> dict:
    """Score ``model_path`` on ``data_dir`` (or its run's test/val split), run the quality gate
    ``gate`` (see :func:`eval_settings`), and write the report (metrics.json, CSVs, plots,
    summary.md) beside the model or into ``output_dir``. Returns the metrics;
    ``metrics["gate"]["passed"]`` says whether it may ship. ``batch_size`` and ``top_k`` left
    empty take ``infer.batch_size`` and ``eval.top_k`` (``gate``'s, else the defaults), and
    ``gallery_size`` (images in misclassified.png) ``eval.gallery_size``. ``tta``: test-time
    augmentation (:mod:`imgai.tta`); the accuracy without it is reported beside."""
    from imgai.artifacts import load_any_model
    from imgai.config import EvalConfig, InferConfig
    from imgai.predict import iter_predictions
    from imgai.report import write_report
    from imgai.tta import with_tta

    model_path = Path(model_path)
    baseline = check_gate(gate) if gate is not None else None  # a mistake fails before the slow part
    batch_size = batch_size or InferConfig().batch_size
    top_k = top_k if top_k is not None else (gate.top_k if gate is not None else None)
    if gallery_size is None:
        gallery_size = (gate or EvalConfig()).gallery_size
    model, info = load_any_model(model_path)  # a .keras file, or an exported artifact and its runtime
    classes = list(info.class_names)
    files = (
        eval_files_from_folder(data_dir, classes)
        if data_dir is not None
        else eval_files_from_run(model_path, classes)
    )
    log(f"Scoring {model_path} on {len(files)} images from {files.source}")
    start = time.perf_counter()
    parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    scorer = with_tta(model, tta, info.interpolation)
    for decoded, chunk_probabilities in iter_predictions(scorer, info, files, batch_size, label="scoring"):
        # keep only what the metrics need; the decoded pixels of each chunk are dropped here
        parts.append(chunk_probabilities)
        label_parts.append(decoded.labels)
        paths.extend(decoded.paths)
        skipped.extend(decoded.skipped)
    probabilities = np.concatenate(parts) if parts else np.zeros((0, len(classes)), np.float32)
    labels = np.concatenate(label_parts) if label_parts else np.zeros(0, np.int32)
    if skipped:
        log(
            f"Skipped {len(skipped)} unreadable file(s): "
            + ", ".join(p for p, _ in skipped[:5])
            + (" ..." if len(skipped) > 5 else "")
        )
    if len(paths) == 0:
        raise ImgaiError(f"none of the images in '{files.source}' could be read")
    if top_k is None:  # as in training for many classes; top-2 says more than top-4 of 5
        top_k = 5 if len(classes) > 5 else 2
    metrics = compute_metrics(probabilities, labels, classes, top_k)
    if scorer is not model:
        metrics["tta"] = tta_gain(tta, scorer.plain_probabilities(), probabilities, labels)
    metrics.update(
        {
            "num_skipped": len(skipped),
            "skipped": [p for p, _ in skipped],
            "class_names": classes,
            "model": str(model_path),
            "model_sha256": file_sha256(model_path / "saved_model.pb" if model_path.is_dir() else model_path),
            "data": files.source,
            "imgai_version": __version__,
            **_runtime_fields(model),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - start, 3),
        }
    )
    results = run_checks(gate, metrics, baseline) if gate is not None and not gate.is_empty() else []
    if results:
        metrics["gate"] = {"passed": all(r.passed for r in results), "checks": [r.to_dict() for r in results]}
    out_dir = Path(output_dir) if output_dir is not None else model_path.parent
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


def format_metrics(metrics: dict) -> str:
    """The printed summary: overall figures, then one line per class."""
    lines = [
        f"  images         {metrics['num_images']}"
        + (f" ({metrics['num_skipped']} skipped)" if metrics.get("num_skipped") else ""),
        f"  loss           {metrics['loss']:.4f}",
        f"  accuracy       {metrics['accuracy']:.2%}",
    ]
    lines += [
        f"  {key.replace('_', ' '):<14} {value:.2%}"
        for key, value in metrics.items()
        if key.startswith("top") and key.endswith("_accuracy")
    ]
    for avg in ("macro", "weighted"):
        if f"f1_{avg}" in metrics:
            lines.append(
                f"  {avg:<14} precision {metrics[f'precision_{avg}']:.2%}  recall "
                f"{metrics[f'recall_{avg}']:.2%}  F1 {metrics[f'f1_{avg}']:.2%}"
            )
    width = max(len(name) for name in [*metrics["per_class"], "class"])
    lines.append(f"  {'class':<{width}}  {'precision':>9}  {'recall':>7}  {'F1':>7}  {'images':>6}")
    for name, row in metrics["per_class"].items():
        recall = row.get("recall", row.get("accuracy"))
        cells = [
            "n/a" if row.get("precision") is None else f"{row['precision']:.1%}",
            "n/a" if recall is None else f"{recall:.1%}",
            "n/a" if row.get("f1") is None else f"{row['f1']:.1%}",
        ]
        lines.append(f"  {name:<{width}}  {cells[0]:>9}  {cells[1]:>7}  {cells[2]:>7}  {row['support']:>6}")
    return "\n".join(lines)
