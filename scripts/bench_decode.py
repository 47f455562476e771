#!/usr/bin/env python3
"""Decode + resize rate: imgai's decoder on one thread, N threads, N processes, and Pillow alone.

    python scripts/bench_decode.py --data ../shared/datasets/flower_photos
    python scripts/bench_decode.py --generate 2000      # 400x300 JPEGs made in /tmp

imgai decodes JPEGs with simplejpeg, other formats with Pillow, resizes with OpenCV, on threads
(imgai.data.decode_files). This script is the measurement behind those choices: threads against
processes, and imgai's decoder against Pillow alone (Pillow's decode and its antialiased bilinear
resize, imgai's decoder until 2026-11-25). It also gives the per-core decode rate for the first,
uncached epoch.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import benchlib
from benchlib import median
from imgai.data import decode_image, default_workers, scan_folder

SIZE = (224, 224)


def _decode_chunk(paths: list[str], size=SIZE, interpolation="bilinear") -> int:
    # Return only a count: workers of a real cache write their rows to the file themselves.
    for p in paths:
        decode_image(p, size, "rgb", interpolation)
    return len(paths)


def _pillow_only_chunk(paths: list[str], size=SIZE, interpolation="bilinear") -> int:
    """Pillow alone: its decode (draft for large JPEGs) and its own, antialiased resize."""
    import numpy as np
    from PIL import Image

    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "nearest": Image.Resampling.NEAREST,
        "bicubic": Image.Resampling.BICUBIC,
    }[interpolation]
    for p in paths:
        with Image.open(p) as img:
            img.draft(img.mode, (size[1], size[0]))
            img = img.convert("RGB")
            np.asarray(img.resize((size[1], size[0]), resample) if img.size != (size[1], size[0]) else img)
    return len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="folder of class sub-folders")
    parser.add_argument(
        "--generate", type=int, default=0, help="make this many 400x300 JPEGs in /tmp instead"
    )
    parser.add_argument("--limit", type=int, default=1500, help="images per measurement")
    parser.add_argument("--workers", type=int, default=0, help="threads/processes (0 = one per core)")
    parser.add_argument("--interpolation", default="bilinear", choices=["bilinear", "nearest", "bicubic"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = args.data or benchlib.make_jpegs(f"/tmp/imgai-bench-jpegs-{args.generate}", args.generate)
    paths = scan_folder(data).paths[: args.limit]
    workers = default_workers(args.workers)
    benchlib.warm_page_cache(paths)
    chunks = [paths[i : i + 32] for i in range(0, len(paths), 32)]
    rates: dict[str, list[float]] = {
        "1 thread": [],
        f"{workers} threads": [],
        f"{workers} processes": [],
        "Pillow, 1 thread": [],
        f"Pillow, {workers} threads": [],
    }
    with ThreadPoolExecutor(workers) as threads, ProcessPoolExecutor(workers) as processes:
        list(processes.map(_decode_chunk, chunks[:workers]))  # start the processes outside the timing
        for _ in range(args.repeats):
            for name, run in (
                ("1 thread", lambda: [_decode_chunk(c, SIZE, args.interpolation) for c in chunks]),
                (
                    f"{workers} threads",
                    lambda: list(threads.map(lambda c: _decode_chunk(c, SIZE, args.interpolation), chunks)),
                ),
                (
                    f"{workers} processes",
                    lambda: list(
                        processes.map(
                            _decode_chunk, chunks, [SIZE] * len(chunks), [args.interpolation] * len(chunks)
                        )
                    ),
                ),
                (
                    "Pillow, 1 thread",
                    lambda: [_pillow_only_chunk(c, SIZE, args.interpolation) for c in chunks],
                ),
                (
                    f"Pillow, {workers} threads",
                    lambda: list(
                        threads.map(lambda c: _pillow_only_chunk(c, SIZE, args.interpolation), chunks)
                    ),
                ),
            ):
                start = time.perf_counter()
                run()
                rates[name].append(len(paths) / (time.perf_counter() - start))
    best = {name: median(v) for name, v in rates.items()}
    print(
        f"Decode + resize to {SIZE[0]}x{SIZE[1]} ({args.interpolation}) "
        f"of {len(paths)} files from {data}, median of {args.repeats}:"
    )
    for name, rate in best.items():
        label = name if name.startswith("Pillow") else f"imgai, {name}"
        print(f"  {label:<22} {rate:8.0f} images/s   ({rate / best['1 thread']:.2f}x imgai on one thread)")
    figures = {
        "benchmark": "decode",
        "data": str(data),
        "images": len(paths),
        "interpolation": args.interpolation,
        "workers": workers,
        "images_per_s": {k: round(v, 1) for k, v in best.items()},
        "per_core_images_per_s": round(best[f"{workers} threads"] / workers, 1),
        "threads_over_processes": round(best[f"{workers} threads"] / best[f"{workers} processes"], 3),
        "imgai_over_pillow_one_thread": round(best["1 thread"] / best["Pillow, 1 thread"], 3),
        "imgai_over_pillow_threads": round(
            best[f"{workers} threads"] / best[f"Pillow, {workers} threads"], 3
        ),
        "machine": benchlib.machine(),
    }
    benchlib.print_json(figures)


if __name__ == "__main__":
    main()
