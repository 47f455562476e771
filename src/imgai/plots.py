"""PNG plots for evaluation reports and explanations (matplotlib, no display needed), and rows of
image files side by side for review galleries (Pillow).

matplotlib is imported inside each function and used without pyplot (figures render through Agg,
no display needed), so importing imgai (and ``imgai --help``) stays light and a notebook's
matplotlib settings are left alone. Every figure is written atomically.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """A matplotlib Figure and its axes, without pyplot: no global state, no display, and a
    notebook's own matplotlib backend is left alone (PNG output goes through Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None), layout=kwargs.pop("layout", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG through a temporary file and a rename, then close it."""
    from imgai.runs import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_confusion_matrix(
    matrix: list[list[int]] | np.ndarray, class_names: list[str], path: str | Path, normalize: bool = False
) -> Path:
    """The confusion matrix as a heat map with the number in each cell; rows are true classes.
    ``normalize`` divides each row by its total, so the diagonal is each class's recall."""
    counts = np.asarray(matrix, dtype=np.float64)
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    n = len(class_names)
    side = max(4.0, 0.6 * n + 2.5)
    fig, ax = new_figure(figsize=(side + 1, side))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, values.max()))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        "Confusion matrix (share of each true class)" if normalize else "Confusion matrix (image counts)"
    )
    if n <= 30:  # numbers stay readable up to about 30 classes
        threshold = (1 if normalize else max(1, values.max())) / 2
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8 if n > 10 else 10,
                    color="white" if values[i, j] > threshold else "black",
                )
    return save_figure(fig, path)


def read_history(path: str | Path) -> dict[str, list[float]]:
    """history.csv as columns of floats (empty cells become NaN)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(math.nan)
    return columns


def plot_training_curves(history_path: str | Path, path: str | Path, monitor: str = "val_accuracy") -> Path:
    """Loss and accuracy per epoch, training vs validation, with the best epoch (by ``monitor``,
    as training chose best.keras) marked."""
    history = read_history(history_path)
    if not history.get("epoch"):
        raise ValueError(f"{history_path} holds no epochs")
    epochs = np.asarray(history["epoch"])
    if epochs.min() == 0:  # files from before epochs were counted from 1
        epochs = epochs + 1
    if monitor not in history:
        monitor = next((m for m in ("val_accuracy", "val_loss", "accuracy", "loss") if m in history), None)
    best = None
    if monitor is not None:
        values = np.asarray(history[monitor], dtype=np.float64)
        if np.isfinite(values).any():
            best = int(np.nanargmin(values) if monitor.endswith("loss") else np.nanargmax(values))
    fig, axes = new_figure(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label, style in ((metric, "training", "-o"), (f"val_{metric}", "validation", "-s")):
            if key in history:
                ax.plot(epochs, history[key], style, markersize=3, label=label)
        if best is not None:
            ax.axvline(
                epochs[best],
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"best epoch {int(epochs[best])} ({monitor} {history[monitor][best]:.3f})",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric.capitalize()} per epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_reliability(calibration: dict, path: str | Path, title: str = "") -> Path:
    """Reliability diagram: per confidence bin, the share of right answers (bars) against the mean
    confidence (dots, the gap in red); a calibrated model's bars follow the diagonal. Bin counts are written on the
    bars, so a bin of 3 images is not read like a bin of 300."""
    table = calibration["reliability"]
    edges = np.asarray(table["edges"])
    counts = np.asarray(table["count"])
    width = edges[1] - edges[0]
    centres = edges[:-1] + width / 2
    filled = counts > 0
    accuracy = np.array([a if a is not None else 0.0 for a in table["accuracy"]])
    confidence = np.array([c if c is not None else np.nan for c in table["confidence"]])
    fig, ax = new_figure(figsize=(6.2, 5.4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    ax.bar(
        centres[filled],
        accuracy[filled],
        width=width * 0.9,
        color="#4C72B0",
        alpha=0.85,
        label="accuracy in the bin",
    )
    # the gap to close: from the bin's accuracy up (or down) to its mean confidence
    ax.vlines(
        centres[filled], accuracy[filled], confidence[filled], color="#C44E52", linewidth=2, label="gap"
    )
    ax.plot(
        centres[filled],
        confidence[filled],
        "o",
        color="#C44E52",
        markersize=4,
        label="mean confidence in the bin",
    )
    for x, n in zip(centres[filled], counts[filled]):  # at the foot of each bar, clear of the gaps
        ax.text(
            x,
            0.015,
            str(int(n)),
            ha="center",
            va="bottom",
            fontsize=7,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(
        (f"{title}\n" if title else "")
        + f"Reliability: ECE {calibration['ece']:.2%} (top-1, {len(counts)} equal-width bins)",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_xlabel("confidence (highest probability); the number in each bar: images in the bin")
    return save_figure(fig, path)


def plot_risk_coverage(
    confidence: np.ndarray,
    correct: np.ndarray,
    path: str | Path,
    threshold: float | None = None,
    title: str = "",
) -> Path:
    """Accuracy on the answered images against coverage (the share answered) when the least
    confident images are set aside; the chosen threshold, if any, is marked."""
    from imgai.selective import accuracy_at_coverage, coverage_at, risk_coverage

    _, coverage, accuracy = risk_coverage(confidence, correct)
    fig, ax = new_figure(figsize=(6.2, 4.6))
    ax.plot(coverage, accuracy, "-", color="#4C72B0", linewidth=1.8, label="accuracy on answered images")
    overall = float(np.mean(correct)) if len(correct) else float("nan")
    ax.axhline(overall, color="grey", linestyle=":", linewidth=1, label=f"answering all: {overall:.1%}")
    marked = False
    for share in (0.8, 0.9):  # the figures the summary prints
        at = accuracy_at_coverage(confidence, correct, share)
        if at is None:
            continue
        ax.plot(
            share,
            at,
            "o",
            color="#55A868",
            markersize=5,
            label=None if marked else "most confident 80 % / 90 %",
        )
        marked = True
        ax.annotate(
            f"{at:.1%}",
            (share, at),
            textcoords="offset points",
            xytext=(0, -15),
            ha="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
    if threshold is not None:
        cov, acc = coverage_at(confidence, correct, threshold)
        if acc is not None:
            ax.plot(
                cov,
                acc,
                "D",
                color="#C44E52",
                markersize=6,
                label=f"min confidence {threshold:g}: answers {cov:.1%}, {acc:.1%} right",
            )
    ax.set_xlim(0, 1.01)
    low = float(np.nanmin(accuracy)) if accuracy.size else 0.0
    ax.set_ylim(max(0.0, min(low, overall) - 0.05), 1.005)
    ax.set_xlabel("coverage (share of images answered, most confident first)")
    ax.set_ylabel("accuracy")
    ax.set_title((f"{title}\n" if title else "") + "Risk-coverage: answer only when confident", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path)


def plot_gallery(images: list[np.ndarray], captions: list[str], path: str | Path, title: str) -> Path:
    """A grid of images with a caption under each."""
    n = len(images)
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = new_figure(rows, cols, figsize=(3.0 * cols, 3.3 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(caption, fontsize=9)
    fig.suptitle(title)
    return save_figure(fig, path)


def thumbnail(path: str, side: int = 160) -> np.ndarray:
    """A display copy of an image file, EXIF-rotated, fit into side x side (a gray square if unreadable)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.draft("RGB", (side, side))
            img = ImageOps.exif_transpose(img).convert("RGB")
            return np.asarray(ImageOps.contain(img, (side, side)))  # small images scaled up too
    except Exception:
        return np.full((side, side, 3), 128, dtype=np.uint8)


def plot_image_rows(
    rows: list[list[tuple[str, str]]], path: str | Path, title: str, side: int = 180, max_columns: int = 6
) -> Path:
    """One row per group, its images side by side, each with its caption above; ``rows`` holds
    [(image path, caption), ...]. Drawn with Pillow: a matplotlib figure of 20 rows of images
    took ~10x longer to lay out than the check's whole duplicate search."""
    from PIL import Image, ImageDraw, ImageFont

    from imgai.runs import atomic_path

    font = ImageFont.load_default(size=11)
    bold = ImageFont.load_default(size=15)
    line = 14
    cols = max(2, min(max_columns, max(len(items) for items in rows)))
    caption_lines = max(c.count("\n") + 1 for items in rows for _p, c in items)
    cell_w, cell_h, pad = side + 16, side + caption_lines * line + 14, 10
    canvas = Image.new("RGB", (pad * 2 + cols * cell_w, 40 + len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 10), title, fill="black", font=bold)
    for r, items in enumerate(rows):
        top = 40 + r * cell_h
        if r:
            draw.line((pad, top - 6, canvas.width - pad, top - 6), fill=(200, 200, 200))
        for c, (image_path, caption) in enumerate(items[:cols]):
            left = pad + c * cell_w
            draw.multiline_text((left, top), caption, fill="black", font=font, spacing=2)
            thumb = Image.fromarray(thumbnail(image_path, side))
            canvas.paste(thumb, (left, top + caption_lines * line + 4))
    with atomic_path(path, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG")
    return path
