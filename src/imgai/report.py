"""Evaluation report files: numbers for programs, plots and a markdown summary for people.

:func:`write_report` writes into one folder (the run folder by default)::

    metrics.json              every figure, plus where it came from (model sha256, versions, time)
    per_class.csv             precision, recall, F1 and support per class
    confusion_matrix.csv      counts; rows are true classes, columns predicted classes
    predictions.csv           every image: true class, predicted class, probability of each class
    confusion_matrix.png      counts, coloured by share of the true class so small mistakes show
    confusion_matrix_normalized.png   each row's shares (the diagonal is recall)
    training_curves.png       loss, accuracy and learning rate per epoch from the run's history.csv
                              (if there is one; training draws it too)
    misclassified.png         the most confidently wrong images (eval.gallery_size of them), from
                              their files, with the true class's and the predicted class's probability
    summary.md                a short report a CI job can append to its job summary

Every file is written to a temporary name and renamed, so a crash never leaves half a report.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgai.runs import METRICS_FILE, atomic_write_text

if TYPE_CHECKING:
    from imgai.modelfile import ModelInfo

PER_CLASS_FILE = "per_class.csv"
CONFUSION_FILE = "confusion_matrix.csv"
PREDICTIONS_FILE = "predictions.csv"
CONFUSION_PNG = "confusion_matrix.png"
CONFUSION_NORMALIZED_PNG = "confusion_matrix_normalized.png"
CURVES_PNG = "training_curves.png"
GALLERY_PNG = "misclassified.png"
SUMMARY_FILE = "summary.md"
GALLERY_SIDE = 240  # longest side, in pixels, of each picture in misclassified.png


def _short_path(path: str | None) -> str | None:
    """The last two parts of a path, for a picture's title: 'flowers/best.keras', 'shapes/test'."""
    if not path:
        return None
    parts = Path(path).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else str(path)


def _csv_text(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def per_class_csv(metrics: dict) -> str:
    rows = [["class", "precision", "recall", "f1", "support", "predicted"]]
    for name, row in metrics["per_class"].items():
        recall = "" if row["recall"] is None else f"{row['recall']:.6f}"
        rows.append(
            [name, f"{row['precision']:.6f}", recall, f"{row['f1']:.6f}", row["support"], row["predicted"]]
        )
    return _csv_text(rows)


def confusion_csv(metrics: dict) -> str:
    names = metrics["class_names"]
    rows = [["true \\ predicted", *names]]
    rows += [[name, *counts] for name, counts in zip(names, metrics["confusion_matrix"])]
    return _csv_text(rows)


def predictions_csv(
    paths: list[str], labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> str:
    rows = [["path", "true_class", "predicted_class", "confidence", *(f"p_{c}" for c in class_names)]]
    for path, label, p in zip(paths, labels, probabilities):
        best = int(np.argmax(p))
        rows.append([path, class_names[label], class_names[best], f"{p[best]:.6f}", *(f"{v:.6f}" for v in p)])
    return _csv_text(rows)


def most_confidently_wrong(labels: np.ndarray, probabilities: np.ndarray, limit: int) -> list[int]:
    """Indices of wrong predictions, most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:limit].tolist()


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.1%}"


def summary_markdown(metrics: dict, written: list[str], notes: list[str]) -> str:
    """A short report in GitHub-flavoured markdown."""
    top = [k for k in metrics if k.startswith("top") and k.endswith("_accuracy")]
    extra = f", {top[0].replace('_', ' ')} {_pct(metrics[top[0]])}" if top else ""
    lines = [
        f"## imgai eval: `{metrics['model']}`",
        "",
        f"Accuracy **{_pct(metrics['accuracy'])}** on {metrics['num_images']} images from `{metrics['data']}` "
        f"(loss {metrics['loss']:.4f}{extra}"
        + (f"; {metrics['num_skipped']} unreadable file(s) skipped" if metrics.get("num_skipped") else "")
        + ").",
        "",
        "| | precision | recall | F1 |",
        "|---|---|---|---|",
        *(
            f"| {avg} | {_pct(metrics[f'precision_{avg}'])} | "
            f"{_pct(metrics[f'recall_{avg}'])} | {_pct(metrics[f'f1_{avg}'])} |"
            for avg in ("macro", "weighted")
        ),
        "",
        "| class | precision | recall | F1 | images |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} | {row['support']} |"
            for name, row in metrics["per_class"].items()
        ),
    ]
    gate = metrics.get("gate")
    if gate:
        checks = gate["checks"]
        passed = sum(c["passed"] for c in checks)
        lines += [
            "",
            f"### Quality gate: {'PASSED' if gate['passed'] else 'FAILED'} ({passed} of {len(checks)} checks passed)",
            "",
            "| result | metric | measured | bound | check |",
            "|---|---|---|---|---|",
            *(
                f"| {'PASSED' if c['passed'] else '**FAILED**'} | {c['metric']} | "
                f"{c['measured']:.4f} | {c['op']} {c['bound']:.4f} | {c['detail']} |"
                for c in checks
            ),
        ]
    lines += [
        "",
        f"Model sha256 `{metrics['model_sha256'][:16]}…`, imgai {metrics['imgai_version']}, "
        f"Keras {metrics['keras_version']} ({metrics['backend']}), {metrics['timestamp']}.",
    ]
    pictures = [name for name in written if name.endswith(".png")]
    if pictures:
        lines += ["", "Plots: " + ", ".join(f"[{name}]({name})" for name in pictures) + "."]
    lines += [f"Note: {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: str | Path,
    metrics: dict,
    paths: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    info: ModelInfo,
    history_path: str | Path | None = None,
    monitor: str = "val_accuracy",
    gallery_size: int = 16,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write every report file into ``out_dir``; returns the paths written."""
    from imgai import plots
    from imgai.data import decode_for_display
    from imgai.text import printable

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    class_names = metrics["class_names"]
    written: list[Path] = []
    notes: list[str] = []

    def text(name: str, content: str) -> None:
        atomic_write_text(out_dir / name, content)
        written.append(out_dir / name)

    text(PER_CLASS_FILE, per_class_csv(metrics))
    text(CONFUSION_FILE, confusion_csv(metrics))
    text(PREDICTIONS_FILE, predictions_csv(paths, labels, probabilities, class_names))
    model_label, data_label = _short_path(metrics.get("model")), _short_path(metrics.get("data"))
    for name, normalize in ((CONFUSION_PNG, False), (CONFUSION_NORMALIZED_PNG, True)):
        written.append(
            plots.plot_confusion_matrix(
                metrics["confusion_matrix"],
                class_names,
                out_dir / name,
                normalize=normalize,
                model=model_label,
                data=data_label,
            )
        )

    if history_path is not None and Path(history_path).is_file():
        try:
            written.append(plots.plot_training_curves(history_path, out_dir / CURVES_PNG, monitor))
        except (ValueError, KeyError, OSError) as exc:
            notes.append(f"no training curves: {history_path} could not be read ({exc}).")
    else:
        notes.append("no training curves: there is no history.csv beside the model.")

    wrong = most_confidently_wrong(labels, probabilities, gallery_size)
    total_wrong = int((probabilities.argmax(1) != labels).sum())
    if wrong:
        images, captions = [], []
        for i in wrong:
            try:  # the original file, EXIF-oriented, not the small picture the model saw
                images.append(decode_for_display(paths[i], GALLERY_SIDE, info.decode_spec.max_pixels))
            except Exception:  # the file changed since it was scored: leave it out of the picture
                continue
            p = probabilities[i]
            guess = int(p.argmax())
            name = Path(paths[i]).name
            name = name if len(name) <= 26 else f"{name[:12]}…{name[-12:]}"
            captions.append(
                f"{printable(name)}\n"
                f"true: {printable(class_names[labels[i]])} {plots.percent(p[labels[i]])}\n"
                f"predicted: {printable(class_names[guess])} {plots.percent(p[guess])}"
            )
        if images:
            written.append(
                plots.plot_gallery(
                    images,
                    captions,
                    out_dir / GALLERY_PNG,
                    f"Most confidently wrong: {len(images)} of {total_wrong} wrong images"
                    + (" (more with eval.gallery_size)" if total_wrong > gallery_size else "")
                    + (f"\n{model_label} on {data_label}" if model_label and data_label else ""),
                )
            )
    elif total_wrong:
        notes.append(f"no gallery of the {total_wrong} wrong images: eval.gallery_size is 0.")
    else:
        notes.append("no misclassified images, so no gallery.")

    for stale in (CURVES_PNG, GALLERY_PNG):  # from an earlier eval into the same folder
        if out_dir / stale not in written:
            (out_dir / stale).unlink(missing_ok=True)
    text(METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    names = [p.name for p in written]
    text(SUMMARY_FILE, summary_markdown(metrics, names + [METRICS_FILE], notes))
    for note in notes:
        log(f"Note: {note}")
    return written
