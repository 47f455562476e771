"""Evaluation: score a saved model on labelled images and write ``metrics.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from imgai import __version__
from imgai.data import FileList, list_class_folders, load_images, scan_folder, _find_split_folder
from imgai.errors import ImgaiError
from imgai.runs import CONFIG_FILE, METRICS_FILE, atomic_write_text


def eval_files_from_folder(folder: str | Path, model_classes: list[str]) -> FileList:
    """Labelled files from ``folder`` (class sub-folders, or a root with a test/ or val/ folder),
    with labels indexing the model's classes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImgaiError(f"data folder '{folder}' does not exist: pass a folder with one sub-folder per class to --data")
    for kind in ("test", "val"):
        split = _find_split_folder(folder, kind)
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
        raise ImgaiError(f"'{model_path}' is not inside a run folder (no {CONFIG_FILE} beside it): pass --data DIR to say what to score")
    config = build_config(read_yaml(config_path))
    splits = resolve_splits(config.data, config.seed)
    chosen = splits.test or splits.val
    if chosen is None:
        raise ImgaiError(
            f"the run in '{model_path.parent}' has no test or validation split: pass --data DIR with labelled images"
        )
    if chosen.class_names != list(model_classes):
        raise ImgaiError(
            f"classes of '{chosen.source}' {chosen.class_names} differ from the model's {model_classes}: pass --data DIR"
        )
    return chosen


def compute_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str], top_k: int = 5) -> dict:
    """Loss, accuracy, top-k accuracy and per-class accuracy from probabilities and labels."""
    n = len(labels)
    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=1) if n else np.zeros(0, dtype=int)
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(n), labels], eps, 1.0)))) if n else float("nan")
    metrics: dict = {
        "num_images": int(n),
        "loss": loss,
        "accuracy": float(np.mean(predicted == labels)) if n else float("nan"),
    }
    if num_classes > 5:
        k = min(top_k, num_classes - 1)
        top = np.argsort(-probabilities, axis=1)[:, :k]
        metrics[f"top{k}_accuracy"] = float(np.mean((top == labels[:, None]).any(axis=1))) if n else float("nan")
    per_class = {}
    for i, name in enumerate(class_names):
        mask = labels == i
        support = int(mask.sum())
        per_class[name] = {
            "support": support,
            "accuracy": float(np.mean(predicted[mask] == i)) if support else None,
        }
    metrics["per_class"] = per_class
    return metrics


def evaluate(
    model_path: str | Path,
    data_dir: str | Path | None = None,
    batch_size: int = 32,
    log: Callable[[str], None] = print,
) -> dict:
    """Score ``model_path`` on ``data_dir`` (or its run's test/val split) and write metrics.json."""
    from imgai.models import load_model
    from imgai.predict import run_inference

    model_path = Path(model_path)
    model, meta = load_model(model_path)
    classes = meta["class_names"]
    files = eval_files_from_folder(data_dir, classes) if data_dir is not None else eval_files_from_run(model_path, classes)
    log(f"Scoring {model_path} on {len(files)} images from {files.source}")
    start = time.perf_counter()
    decoded = load_images(files, tuple(meta["image_size"]), meta["color_mode"], meta.get("interpolation", "bilinear"), label="decoding")
    if decoded.skipped:
        log(f"Skipped {len(decoded.skipped)} unreadable file(s): " + ", ".join(p for p, _ in decoded.skipped[:5]) + (" ..." if len(decoded.skipped) > 5 else ""))
    if len(decoded) == 0:
        raise ImgaiError(f"none of the images in '{files.source}' could be read")
    probabilities = run_inference(model, decoded, batch_size)
    metrics = compute_metrics(probabilities, decoded.labels, classes)
    metrics.update(
        {
            "num_skipped": len(decoded.skipped),
            "skipped": [p for p, _ in decoded.skipped],
            "class_names": classes,
            "model": str(model_path),
            "data": files.source,
            "imgai_version": __version__,
            "seconds": round(time.perf_counter() - start, 3),
        }
    )
    out = model_path.parent / METRICS_FILE
    atomic_write_text(out, json.dumps(metrics, indent=2) + "\n")
    log(format_metrics(metrics))
    log(f"Wrote {out}")
    return metrics


def format_metrics(metrics: dict) -> str:
    """The printed summary: overall figures, then one line per class."""
    lines = [f"  images    {metrics['num_images']}", f"  loss      {metrics['loss']:.4f}", f"  accuracy  {metrics['accuracy']:.2%}"]
    lines += [f"  {key:<9} {value:.2%}" for key, value in metrics.items() if key.startswith("top") and key.endswith("_accuracy")]
    width = max(len(name) for name in metrics["per_class"])
    lines.append(f"  {'class':<{width}}  {'accuracy':>8}  {'images':>6}")
    for name, row in metrics["per_class"].items():
        acc = "n/a" if row["accuracy"] is None else f"{row['accuracy']:.1%}"
        lines.append(f"  {name:<{width}}  {acc:>8}  {row['support']:>6}")
    return "\n".join(lines)
