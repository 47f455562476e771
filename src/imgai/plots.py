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


def percent(share: float | None, decimals: int = 0) -> str:
    """``share`` (0..1) as a percentage for a picture's title or caption, e.g. ``"87%"``.

    Never rounds a share below 1 up to "100%" (a wrong answer at 99.985 % would read as certain)
    nor one above 0 down to "0%": it takes one more decimal, and past that says ``">99.9%"`` or
    ``"<0.1%"``. Every PNG imgai writes formats its percentages here."""
    if share is None or not math.isfinite(share):
        return "n/a"
    value = 100.0 * float(share)
    for digits in (decimals, decimals + 1):
        text = f"{value:.{digits}f}"
        if (float(text) < 100 or share >= 1) and (float(text) > 0 or share <= 0):
            return f"{text}%"
    step = 10.0 ** -(decimals + 1)
    return f">{100 - step:.{decimals + 1}f}%" if value > 50 else f"<{step:.{decimals + 1}f}%"


def confusion_matrix_figure(
    matrix: list[list[int]] | np.ndarray,
    class_names: list[str],
    normalize: bool = False,
    model: str | None = None,
    data: str | None = None,
):
    """The confusion matrix; rows are true classes, columns predicted classes.

    Cells are coloured by their share of the row (the true class), correct answers in blue on the
    diagonal and mistakes in red elsewhere, on a scale where any non-zero mistake is visibly
    tinted: two errors beside fifty correct answers must not look like none. Each cell shows its
    count (``normalize``: its share first); beside each row stand its image count and recall. A
    class without images gets a grey row of "n/a". ``model`` and ``data`` name what was scored,
    for the title. Returns the matplotlib Figure; :func:`plot_confusion_matrix` writes it."""
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    counts = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    totals = counts.sum(axis=1)
    shares = counts / np.maximum(totals, 1)[:, None]
    diagonal = np.eye(n, dtype=bool)
    empty = totals == 0
    # The lightest tint of each scale is already clearly coloured, so a share of 1 % still shows.
    blues = LinearSegmentedColormap.from_list("correct", ["#dbe9f6", "#08306b"])
    reds = LinearSegmentedColormap.from_list("mistakes", ["#fcd5c4", "#a50f15"])
    worst = shares[~diagonal & (counts > 0)].max(initial=0.0)
    # Mistakes share one scale up to the largest one (at least 10 %), so small ones stay apart.
    mistake_norm = Normalize(0, max(0.1, worst))
    correct_norm = Normalize(0, 1)
    image = np.ones((n, n, 4))
    for i in range(n):
        for j in range(n):
            if empty[i]:
                image[i, j] = (0.9, 0.9, 0.9, 1.0)
            elif counts[i, j] > 0:
                image[i, j] = (
                    blues(correct_norm(shares[i, j])) if i == j else reds(mistake_norm(shares[i, j]))
                )
    side = max(4.0, 0.6 * n + 2.5)
    fig, ax = new_figure(figsize=(side + 3.2, side + 0.4), layout="constrained")
    ax.imshow(image, interpolation="nearest")
    from matplotlib.cm import ScalarMappable

    for cmap, norm, label in (
        (reds, mistake_norm, "mistakes: share of the true class"),
        (blues, correct_norm, "correct: share of the true class (recall)"),
    ):
        bar = fig.colorbar(
            ScalarMappable(norm, cmap), ax=ax, fraction=0.035, pad=0.02, shrink=min(1.0, 8 / side)
        )
        bar.set_label(label, fontsize=9)
        bar.ax.yaxis.set_major_formatter(_percent_formatter())
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    if n <= 30:
        ax.set_yticks(range(n), class_names)
    else:  # no room for the columns of totals and recall: they go with the class names
        recalls = ["n/a" if empty[i] else percent(shares[i, i], 1) for i in range(n)]
        ax.set_yticks(
            range(n), [f"{c} ({int(t)}, recall {r})" for c, t, r in zip(class_names, totals, recalls)]
        )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    kind = "share of each true class" if normalize else "image counts"
    about = " on ".join(part for part in (model, data) if part)
    ax.set_title(
        f"Confusion matrix ({kind}), {int(counts.sum())} images" + (f"\n{about}" if about else ""),
        fontsize=10,
    )
    if n <= 30:  # numbers stay readable up to about 30 classes
        size = 8 if n > 10 else 10
        for i in range(n):
            for j in range(n):
                if empty[i]:
                    text = "n/a" if normalize else "0"
                elif counts[i, j] == 0 and i != j and n > 8:
                    text = ""  # many classes: empty cells stay blank, so the mistakes stand out
                elif normalize:
                    text = percent(shares[i, j]) if counts[i, j] else "0"
                    text += f"\n({int(counts[i, j])})" if counts[i, j] and n <= 12 else ""
                else:
                    text = f"{int(counts[i, j])}"
                dark = (
                    counts[i, j] > 0
                    and not empty[i]
                    and (shares[i, j] > 0.55 if i == j else mistake_norm(shares[i, j]) > 0.6)
                )
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=size, color="white" if dark else "black"
                )
        # Row totals and recall, in two columns right of the matrix.
        for col, header in ((n - 0.5 + 0.45, "images"), (n - 0.5 + 1.25, "recall")):
            ax.text(col, -0.7, header, ha="center", va="bottom", fontsize=size, fontweight="bold")
        for i in range(n):
            recall = "n/a" if empty[i] else percent(shares[i, i], 1)
            ax.text(n - 0.5 + 0.45, i, f"{int(totals[i])}", ha="center", va="center", fontsize=size)
            ax.text(n - 0.5 + 1.25, i, recall, ha="center", va="center", fontsize=size)
        ax.set_xlim(-0.5, n - 0.5)
    return fig


def plot_confusion_matrix(
    matrix: list[list[int]] | np.ndarray,
    class_names: list[str],
    path: str | Path,
    normalize: bool = False,
    model: str | None = None,
    data: str | None = None,
) -> Path:
    """Write :func:`confusion_matrix_figure` as a PNG to ``path``."""
    return save_figure(confusion_matrix_figure(matrix, class_names, normalize, model, data), path)


def _percent_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{100 * value:.0f}%")


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


LEARNING_RATE_COLUMN = "learning_rate"  # history.csv's column of each epoch's rate


def training_curves_figure(
    history: dict[str, list[float]], monitor: str = "val_accuracy", run_name: str | None = None
):
    """The figure of :func:`plot_training_curves` from ``history`` (:func:`read_history`'s
    columns): loss, accuracy and, when history.csv has it, the learning rate, per epoch."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if not history.get("epoch"):
        raise ValueError("the history holds no epochs")
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
    rates = np.asarray(history.get(LEARNING_RATE_COLUMN, []), dtype=np.float64)
    panels = ["loss", "accuracy"] + (["learning rate"] if np.isfinite(rates).any() else [])
    fig, axes = new_figure(1, len(panels), figsize=(5.2 * len(panels), 4.2), layout="constrained")
    for ax, panel in zip(axes, panels):
        if panel == "learning rate":
            ax.plot(epochs, rates, "-o", markersize=3, color="tab:green", label="learning rate")
            # Linear from 0: a constant rate reads as flat (not as noise around an offset), and a
            # cosine or warmup keeps its shape (a log scale would make its last steps to 0 the story).
            ax.set_ylim(0, 1.15 * np.nanmax(rates))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
            ax.set_ylabel("learning rate (last step of the epoch)")
        else:
            for key, label, style in ((panel, "training", "-o"), (f"val_{panel}", "validation", "-s")):
                if key in history:
                    ax.plot(epochs, history[key], style, markersize=3, label=label)
            if best is not None and monitor in (panel, f"val_{panel}"):
                ax.plot(epochs[best], history[monitor][best], "*", color="black", markersize=11, zorder=5)
            ax.set_ylabel(panel)
        if best is not None:
            ax.axvline(
                epochs[best],
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"best epoch {int(epochs[best])} ({monitor} {history[monitor][best]:.3f})",
            )
        ax.set_xlabel("epoch")
        ax.set_title(f"{panel.capitalize()} per epoch", fontsize=10)
        # Epochs are whole numbers: a 2-epoch run gets ticks 1 and 2, not 1.0, 1.2, ...
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        pad = 0.5 if len(epochs) < 10 else 0.02 * (epochs.max() - epochs.min())
        ax.set_xlim(epochs.min() - pad, epochs.max() + pad)
        ax.grid(alpha=0.3)
        if panel != "learning rate":  # one line there: its title says what it is
            ax.legend(fontsize=8)
    fig.suptitle(f"Training curves of run '{run_name}'" if run_name else "Training curves", fontsize=11)
    return fig


def plot_training_curves(
    history_path: str | Path, path: str | Path, monitor: str = "val_accuracy", run_name: str | None = None
) -> Path:
    """Loss, accuracy and learning rate per epoch from ``history_path`` (history.csv), training vs
    validation, with the best epoch (by ``monitor``, as training chose best.keras) marked.
    ``run_name`` defaults to the name of the folder holding history.csv."""
    history = read_history(history_path)
    if not history.get("epoch"):
        raise ValueError(f"{history_path} holds no epochs")
    name = run_name if run_name is not None else Path(history_path).resolve().parent.name
    return save_figure(training_curves_figure(history, monitor, name), path)


def plot_gallery(images: list[np.ndarray], captions: list[str], path: str | Path, title: str) -> Path:
    """A grid of images (any sizes: each is fitted into its cell) with a caption above each."""
    n = len(images)
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = new_figure(rows, cols, figsize=(3.0 * cols, 3.3 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        ax.set_title(caption, fontsize=10)
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
