"""Prediction: image files -> class probabilities, through the same decoder as training.

:func:`run_inference` is the one code path from decoded images to probabilities; ``imgai eval``
uses it too, so eval and predict always agree.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from imgai.data import IMAGE_EXTENSIONS, DecodedImages, FileList, iter_image_files, load_images
from imgai.errors import ImgaiError
from imgai.names import PREDICTION_FORMATS

if TYPE_CHECKING:
    from imgai.config import InferConfig
    from imgai.modelfile import ModelInfo
from imgai.text import printable


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


_GLOB_CHARS = set("*?[")


def collect_paths(
    inputs: list[str], ignored: list[str] | None = None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand files, folders (their images, recursively, as training finds them) and glob patterns
    into a file list.

    Patterns are expanded here (``**`` included), so a quoted ``'photos/*.jpg'`` works even where
    no shell expands it. Returns ``(files, problems)``; a missing path is a problem, not a crash.
    Files that folders and patterns hold but whose extension is not an image's (``notes.txt``) are
    left out and added to ``ignored``; a file named on its own is always tried.
    """
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    ignored = [] if ignored is None else ignored
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(iter_image_files(path, ignored=ignored))  # path order, as before
            if not found:
                problems.append((item, f"folder holds no images ({', '.join(IMAGE_EXTENSIONS)})"))
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        elif _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            if not matches:
                problems.append((item, "no file matches this pattern"))
            for match in matches:
                if os.path.isdir(match):
                    files.extend(sorted(iter_image_files(match, ignored=ignored)))
                elif match.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(match)
                else:
                    ignored.append(match)
        elif path.exists():  # a FIFO, device or socket: never opened, it could block forever
            problems.append((item, "not a regular file (a FIFO, device or socket): not read"))
        elif path.is_symlink():
            problems.append((item, "a link to a file that does not exist"))
        else:
            problems.append((item, "no such file or folder"))
    return files, problems


def run_inference(model, decoded: DecodedImages, batch_size: int) -> np.ndarray:
    """Class probabilities for decoded images, in batches. The one inference path."""
    num_classes = int(model.output_shape[-1])
    if len(decoded) == 0:
        return np.zeros((0, num_classes), dtype=np.float32)
    outputs = []
    for start in range(0, len(decoded), batch_size):
        x = decoded.images[start : start + batch_size].astype(np.float32)
        outputs.append(np.asarray(model.predict_on_batch(x), dtype=np.float32))
    return np.concatenate(outputs)


def iter_predictions(
    model,
    info: ModelInfo,
    files: FileList | list[str],
    batch_size: int,
    workers: int = 0,
    chunk_batches: int = 8,
    label: str = "predicting",
    progress: bool = True,
) -> Iterator[tuple[DecodedImages, np.ndarray]]:
    """Decode and predict ``files`` a chunk at a time: yields ``(decoded chunk, probabilities)``.

    Only two chunks of ``chunk_batches * batch_size`` images are held in memory at once (the next
    one decodes in a background thread while the model works on the current one), so a million
    files need no more memory than a thousand. ``imgai eval`` and ``imgai predict`` both go
    through here, so their numbers cannot differ.
    """
    from concurrent.futures import ThreadPoolExecutor

    from imgai.data import Progress

    chunk = max(1, chunk_batches) * batch_size
    total = len(files)
    starts = list(range(0, total, chunk))

    def decode(start: int) -> DecodedImages:
        part = (
            files.subset(np.arange(start, min(start + chunk, total)))
            if isinstance(files, FileList)
            else files[start : start + chunk]
        )
        return load_images(part, info.decode_spec, workers=workers, progress=False)

    bar = Progress(label, total, progress)
    done = 0
    with ThreadPoolExecutor(max_workers=1) as ahead:
        pending = ahead.submit(decode, starts[0]) if starts else None
        for i in range(len(starts)):
            decoded = pending.result()
            pending = ahead.submit(decode, starts[i + 1]) if i + 1 < len(starts) else None
            probabilities = run_inference(model, decoded, batch_size)
            done += len(decoded) + len(decoded.skipped)
            bar.update(done)
            yield decoded, probabilities
    bar.close()


def iter_prediction_rows(
    model,
    info: ModelInfo,
    inputs: list[str],
    batch_size: int,
    workers: int = 0,
    ignored: list[str] | None = None,
) -> Iterator[PredictionRow]:
    """One row per input file, in input order, streamed chunk by chunk; missing inputs come last.
    Non-image files found in folders and patterns go to ``ignored`` (see :func:`collect_paths`)."""
    files, problems = collect_paths(inputs, ignored)
    position = 0
    for decoded, probabilities in iter_predictions(
        model, info, files, batch_size, workers, label="predicting"
    ):
        # The chunk's decoded paths and skipped paths each keep the input order: merge them back.
        size = len(decoded) + len(decoded.skipped)
        good, bad = 0, 0
        for path in files[position : position + size]:
            if good < len(decoded) and decoded.paths[good] == path:
                if not np.isfinite(probabilities[good]).all():  # never print nan as a probability
                    yield PredictionRow(
                        path, error="the model gave non-finite probabilities (its weights are broken)"
                    )
                else:
                    yield PredictionRow(path, probabilities=probabilities[good])
                good += 1
            else:
                yield PredictionRow(path, error=f"cannot read image: {decoded.skipped[bad][1]}")
                bad += 1
        position += size
    for path, reason in problems:
        yield PredictionRow(path, error=reason)


FORMATS = PREDICTION_FORMATS


def ignored_note(ignored: list[str]) -> str | None:
    """ "Skipped 2 file(s) that are not images (.txt 2): notes.txt, ...": one line for stderr."""
    if not ignored:
        return None
    from collections import Counter

    by_ext = Counter(os.path.splitext(p)[1].lower() or "(none)" for p in ignored)
    names = ", ".join(printable(os.path.basename(p)) for p in ignored[:3]) + (
        ", ..." if len(ignored) > 3 else ""
    )
    kinds = ", ".join(f"{e} {n}" for e, n in by_ext.most_common())
    return f"Skipped {len(ignored)} file(s) that are not images ({kinds}): {names}"


@dataclass(frozen=True)
class Abstain:
    """Answer ``label`` instead of a class when the top probability is below ``min_confidence``."""

    min_confidence: float
    label: str = "unknown"

    def abstains(self, row: PredictionRow) -> bool:
        return float(np.max(row.probabilities)) < self.min_confidence

    def answer(self, row: PredictionRow, class_names: list[str]) -> str:
        return self.label if self.abstains(row) else class_names[int(np.argmax(row.probabilities))]


def abstain_rule(infer: InferConfig, info: ModelInfo) -> Abstain | None:
    """The "unknown" rule predict applies: ``infer.min_confidence`` (flag or config), else the
    threshold a calibration stored in the model, else none."""
    threshold = infer.min_confidence if infer.min_confidence is not None else info.min_confidence
    if threshold is None:
        return None
    if infer.unknown_label in info.class_names:
        raise ImgaiError(
            f"`infer.unknown_label` '{infer.unknown_label}' is one of the model's classes: "
            "choose another label (e.g. infer.unknown_label=not-sure)"
        )
    return Abstain(float(threshold), infer.unknown_label)


def _as_record(row: PredictionRow, class_names: list[str], k: int, abstain: Abstain | None = None) -> dict:
    if row.error:
        return {"path": row.path, "error": row.error}
    record: dict = {"path": row.path}
    if abstain is not None:  # the answer first; the top-k stays for whoever wants to look closer
        record["answer"] = abstain.answer(row, class_names)
    record["predictions"] = [{"class": c, "probability": round(p, 6)} for c, p in row.top(class_names, k)]
    return record


def write_rows(
    rows: Iterable[PredictionRow],
    class_names: list[str],
    top_k: int,
    fmt: str,
    out: IO[str],
    abstain: Abstain | None = None,
) -> tuple[int, int]:
    """Write rows to ``out`` as they come: a table for people, or JSON / JSON lines / CSV for
    programs. With ``abstain``, every format also gives the answer (a class, or the unknown label
    below the threshold): an ``answer`` key / column, or ``unknown (...)`` in the table.
    Returns ``(rows written, rows with an error)``."""
    from imgai.plots import percent  # never "100.0%" for a share below 1

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    k = min(top_k, len(class_names))
    count = failed = 0
    writer = None
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        header = ["path"] + (["answer"] if abstain is not None else [])
        for i in range(1, k + 1):
            header += [f"class_{i}", f"probability_{i}"]
        writer.writerow(header + ["error"])
    if fmt == "json":
        out.write("[")
    for row in rows:
        if fmt == "json":
            text = json.dumps(_as_record(row, class_names, k, abstain), indent=2)
            out.write(("," if count else "") + "\n  " + text.replace("\n", "\n  "))
        elif fmt == "jsonl":
            out.write(json.dumps(_as_record(row, class_names, k, abstain)) + "\n")
        elif fmt == "csv":
            cells = [row.path]
            if abstain is not None:
                cells.append("" if row.error else abstain.answer(row, class_names))
            for c, p in row.top(class_names, k):
                cells += [c, f"{p:.6f}"]
            cells += [""] * (len(header) - len(cells))
            writer.writerow(cells + [row.error or ""])
        elif row.error:  # the table is for a terminal: names escaped, one row per file
            out.write(f"{printable(row.path)}: ERROR {printable(row.error)}\n")
        else:
            top = ", ".join(f"{printable(c)} {percent(p, 1)}" for c, p in row.top(class_names, k))
            if abstain is not None and abstain.abstains(row):
                top = f"{printable(abstain.label)} (confidence below {abstain.min_confidence:g}: {top})"
            out.write(f"{printable(row.path)}: {top}\n")
        count += 1
        failed += bool(row.error)
    if fmt == "json":
        out.write("\n]\n" if count else "]\n")
    return count, failed


def format_rows(
    rows: list[PredictionRow],
    class_names: list[str],
    top_k: int,
    fmt: str = "table",
    abstain: Abstain | None = None,
) -> str:
    """Rows rendered as one string (see :func:`write_rows`)."""
    buffer = io.StringIO()
    write_rows(rows, class_names, top_k, fmt, buffer, abstain)
    return buffer.getvalue()
