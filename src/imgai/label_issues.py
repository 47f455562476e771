"""Likely label errors: K-fold cross-validated training, ranked by confident learning.

Every readable image gets a predicted probability from a model that never saw it: the files are
split into K folds (stratified by class, seeded), and for each fold imgai's own training
(:func:`imgai.train.train_on_splits`, the steps ``imgai train`` runs, with the same config) learns the other
K-1 folds in a temporary run folder; the held-out fold is then decoded and scored with
:func:`imgai.predict.run_inference`. ``cleanlab.filter.find_label_issues`` ranks the files whose
given label disagrees with these out-of-fold probabilities (Northcutt et al., confident learning).

Cost: K trainings on (K-1)/K of the data each, about K-1 full trainings; printed before it starts.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgai.errors import ImgaiError

ISSUES_FILE = "label_issues.csv"
GALLERY_FILE = "gallery_label_issues.png"
GALLERY_ISSUES = 24


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per item, each class dealt round-robin over the folds after a seeded shuffle."""
    rng = np.random.RandomState(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # classes smaller than K do not all start at fold 0
    return fold


def out_of_fold_probabilities(
    config,
    paths: list[str],
    labels: np.ndarray,
    class_names: list[str],
    folds: int,
    log: Callable[[str], None] = print,
) -> np.ndarray:
    """(n, classes) probabilities, each row from the fold model that did not train on it."""
    from imgai.data import DecodeSpec, FileList, Splits, load_images
    from imgai.predict import run_inference
    from imgai.runs import create_run_dir
    from imgai.train import train_on_splits

    fold = stratified_folds(labels, folds, config.seed)
    files = FileList(list(paths), np.asarray(labels, dtype=np.int32), class_names)
    spec = DecodeSpec.from_config(config.data)
    probs = np.zeros((len(paths), len(class_names)), dtype=np.float32)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="imgai-folds-") as tmp:
        for k in range(folds):
            held = np.flatnonzero(fold == k)
            train = files.subset(np.flatnonzero(fold != k), f"folds other than {k + 1}")
            run_dir = create_run_dir(tmp, f"fold{k + 1}")
            with contextlib.redirect_stdout(io.StringIO()):  # Keras's per-epoch lines
                result = train_on_splits(
                    config, Splits(train, None, None), run_dir, log=lambda _message: None
                )
            decoded = load_images(files.subset(held), spec, workers=config.data.workers, progress=False)
            if decoded.skipped:
                raise ImgaiError(
                    f"'{decoded.skipped[0][0]}' could not be read a second time: {decoded.skipped[0][1]}"
                )
            probs[held] = run_inference(result.model, decoded, config.data.batch_size)
            accuracy = float(np.mean(probs[held].argmax(1) == labels[held]))
            elapsed = time.perf_counter() - started
            left = elapsed / (k + 1) * (folds - k - 1)
            log(
                f"  fold {k + 1}/{folds}: trained on {len(train)}, held-out accuracy {accuracy:.1%}; "
                f"{elapsed:.0f} s so far, about {left:.0f} s left"
            )
            del result
    return probs


def find_label_issues(
    config,
    scan_result,
    out: Path,
    log: Callable[[str], None] = print,
    folds: int = 5,
    epochs: int | None = None,
) -> list[dict]:
    """Rank likely label errors among ``scan_result``'s readable files; write label_issues.csv
    and a gallery into ``out``; return the issues, most likely first."""
    try:
        import cleanlab.filter
    except ImportError:
        raise ImgaiError("`label_issues` needs cleanlab: pip install 'imgai[check]'") from None
    records = [r for r in scan_result.records if r.ok]
    names = scan_result.class_names
    present = sorted({r.label for r in records})
    if len(present) < 2:
        raise ImgaiError("`label_issues` needs readable images of at least 2 classes")
    counts = np.bincount([r.label for r in records], minlength=len(names))
    if counts[present].min() < folds:
        small = names[present[int(np.argmin(counts[present]))]]
        raise ImgaiError(
            f"class '{small}' has {counts[present].min()} readable images, fewer than `folds` {folds}: "
            "lower `folds` or add images"
        )
    if epochs is not None:
        config = config.model_copy(update={"train": config.train.model_copy(update={"epochs": epochs})})
    # Only classes with images take part (an empty class folder would be a column nobody holds).
    remap = {label: i for i, label in enumerate(present)}
    labels = np.asarray([remap[r.label] for r in records], dtype=np.int64)
    fold_size = len(records) * (folds - 1) // folds
    log(
        f"Label issues: {folds}-fold cross-validation = {folds} trainings of {config.train.epochs} epoch(s) on "
        f"~{fold_size} images each, about {folds - 1} times one full training of the {len(records)} images."
    )
    probs = out_of_fold_probabilities(
        config, [r.path for r in records], labels, [names[p] for p in present], folds, log
    )
    ranked = cleanlab.filter.find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    issues = []
    for rank, i in enumerate(ranked, 1):
        suggested = int(np.argmax(probs[i]))
        issues.append(
            {
                "rank": rank,
                "split": records[i].split,
                "path": records[i].path,
                "given": names[present[labels[i]]],
                "suggested": names[present[suggested]],
                "given_probability": round(float(probs[i, labels[i]]), 4),
                "suggested_probability": round(float(probs[i, suggested]), 4),
            }
        )
    write_issues_csv(out / ISSUES_FILE, issues)
    if issues:
        write_gallery(out / GALLERY_FILE, issues[:GALLERY_ISSUES], len(issues))
    log(f"  {len(issues)} likely label error(s) in {len(records)} images; ranked in {out / ISSUES_FILE}")
    return issues


def write_issues_csv(path: Path, issues: list[dict]) -> None:
    from imgai.runs import atomic_path

    columns = ["rank", "split", "path", "given", "suggested", "given_probability", "suggested_probability"]
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(issues)


def write_gallery(path: Path, issues: list[dict], total: int) -> Path:
    from imgai.plots import percent, plot_image_rows

    items = [
        (
            i["path"],
            f"#{i['rank']} {i['split']}: {Path(i['path']).name[:24]}\n"
            f"given {i['given']} ({percent(i['given_probability'])})\n"
            f"suggested {i['suggested']} ({percent(i['suggested_probability'])})",
        )
        for i in issues
    ]
    rows = [items[k : k + 4] for k in range(0, len(items), 4)]
    shown = f" (first {len(issues)} of {total})" if total > len(issues) else ""
    return plot_image_rows(rows, path, f"Likely label errors, most likely first{shown}")
