"""Prediction: image files -> class probabilities, through the same decoder as training.

:func:`run_inference` is the one code path from decoded images to probabilities; ``imgai eval``
uses it too, so eval and predict always agree.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgai.data import DecodedImages, load_images


@dataclass
class PredictionRow:
    path: str
    probabilities: np.ndarray | None = None
    error: str | None = None

    def top(self, class_names: list[str], k: int) -> list[tuple[str, float]]:
        if self.probabilities is None:
            return []
        order = np.argsort(-self.probabilities, kind="stable")[: max(1, k)]
        return [(class_names[i], float(self.probabilities[i])) for i in order]


def collect_paths(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files and folders (recursively, hidden entries skipped) into a file list.

    Returns ``(files, problems)``; a missing path is a problem, not a crash.
    """
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = []
            for root, dirs, names in os.walk(path, followlinks=True):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
            if not found:
                problems.append((item, "folder holds no files"))
            files.extend(sorted(found))
        elif path.is_file():
            files.append(str(path))
        else:
            problems.append((item, "no such file or folder"))
    return files, problems


def run_inference(model, decoded: DecodedImages, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for decoded images, in batches. The one inference path."""
    num_classes = int(model.output_shape[-1])
    if len(decoded) == 0:
        return np.zeros((0, num_classes), dtype=np.float32)
    outputs = []
    for start in range(0, len(decoded), batch_size):
        x = decoded.images[start : start + batch_size].astype(np.float32)
        outputs.append(np.asarray(model.predict_on_batch(x), dtype=np.float32))
    return np.concatenate(outputs)


def predict_files(model, metadata: dict, inputs: list[str], batch_size: int = 32, workers: int = 0) -> list[PredictionRow]:
    """Predict every image in ``inputs`` (files or folders). Rows keep the input order."""
    files, problems = collect_paths(inputs)
    decoded = load_images(
        files,
        tuple(metadata["image_size"]),
        metadata["color_mode"],
        metadata.get("interpolation", "bilinear"),
        workers,
        label="decoding images",
    )
    probabilities = run_inference(model, decoded, batch_size)
    by_path: dict[str, PredictionRow] = {p: PredictionRow(p, probabilities=probabilities[i]) for i, p in enumerate(decoded.paths)}
    for path, reason in decoded.skipped:
        by_path[path] = PredictionRow(path, error=f"cannot read image: {reason}")
    rows = [by_path[p] for p in files]
    rows.extend(PredictionRow(p, error=reason) for p, reason in problems)
    return rows


def format_rows(rows: list[PredictionRow], class_names: list[str], top_k: int, fmt: str = "table") -> str:
    """Render prediction rows as a table for people, or JSON / CSV for programs."""
    k = min(top_k, len(class_names))
    if fmt == "json":
        payload = [
            {"path": r.path, "error": r.error}
            if r.error
            else {"path": r.path, "predictions": [{"class": c, "probability": round(p, 6)} for c, p in r.top(class_names, k)]}
            for r in rows
        ]
        return json.dumps(payload, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header = ["path"]
        for i in range(1, k + 1):
            header += [f"class_{i}", f"probability_{i}"]
        writer.writerow(header + ["error"])
        for r in rows:
            cells = [r.path]
            for c, p in r.top(class_names, k):
                cells += [c, f"{p:.6f}"]
            cells += [""] * (len(header) - len(cells))
            cells.append(r.error or "")
            writer.writerow(cells)
        return buffer.getvalue()
    lines = []
    for r in rows:
        if r.error:
            lines.append(f"{r.path}: ERROR {r.error}")
        else:
            lines.append(f"{r.path}: " + ", ".join(f"{c} {p:.1%}" for c, p in r.top(class_names, k)))
    return "\n".join(lines) + ("\n" if lines else "")
