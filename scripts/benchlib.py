"""Helpers shared by the benchmark scripts in this folder (not part of the imgai package).

Every benchmark prints its figures measured side by side in one run and, as its last line, one
JSON object with them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# Benchmarks print figures for people: keep the frameworks' start-up log lines out of them.
from imgai.quiet import import_keras, silence_frameworks  # noqa: E402

silence_frameworks()
import_keras()  # loaded here with its start-up lines parked, before any benchmark imports it


def make_jpegs(
    out_dir: str | Path, count: int, width: int = 400, height: int = 300, classes: int = 5, seed: int = 0
) -> Path:
    """``count`` photo-like JPEGs (smooth colour fields plus noise) in ``classes`` class folders.

    Kept if ``out_dir`` already holds exactly that many, so repeated runs reuse them.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    existing = list(out_dir.glob("*/*.jpg")) if out_dir.is_dir() else []
    if len(existing) == count:
        return out_dir
    for folder in [p for p in out_dir.glob("class_*") if p.is_dir()]:
        for f in folder.iterdir():
            f.unlink()
    for c in range(classes):
        (out_dir / f"class_{c}").mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        rng = np.random.default_rng([seed, i])
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        base = np.asarray(
            Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16
        )
        noisy = np.clip(base + rng.normal(0, 12, size=base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(out_dir / f"class_{i % classes}" / f"img_{i:06d}.jpg", quality=90)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write, range(count), chunksize=64))
    return out_dir


def warm_page_cache(paths) -> None:
    """Read every file once, so each pipeline measures decoding, not the first disk read."""
    for p in paths:
        with open(p, "rb") as fh:
            fh.read()


def median(values):
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    import PIL

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
    }
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), ""
            )
    except OSError:
        pass
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            info["load_before"] = float(fh.read().split()[0])
    except OSError:
        pass
    return info


def print_json(figures: dict) -> None:
    """The last line of every benchmark: one JSON object with its figures."""
    sys.stdout.flush()
    print(json.dumps(figures, sort_keys=False))
