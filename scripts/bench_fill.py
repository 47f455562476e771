#!/usr/bin/env python3
"""The first fill of the in-memory cache: where the decoded rows go, and how work is handed out.

    python scripts/bench_fill.py --data ../shared/datasets/flower_photos
    python scripts/bench_fill.py --generate 3000

Each measurement is a fresh process (a fresh process is what a training run is: its first fill
pays for mapping the array's memory) that decodes every file at 224 px on one thread per core
into one uint8 array, as ``imgai.data.load_images`` does:

  imgai           an anonymous memory map (``imgai.data.allocate_images``), 16 files per task
  numpy.empty     the same with ``numpy.empty``, which asks for transparent huge pages
  1 file per task the anonymous map, one task per file (imgai's hand-out before 2026-11-25)

Repetitions are interleaved; the figures are medians with the range, and ratios to "imgai".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import benchlib

VARIANTS = {"imgai": ("map", 16), "numpy.empty": ("numpy", 16), "1 file per task": ("map", 1)}


def child(data: str, allocation: str, block: int, size: int) -> None:
    import numpy as np

    from imgai.data import DecodeSpec, allocate_images, decode_files, decode_image, scan_folder

    paths = scan_folder(data).paths
    decode_image(paths[0], (size, size))  # imports the decoders outside the timing
    start = time.perf_counter()
    shape = (len(paths), size, size, 3)
    out = allocate_images(shape) if allocation == "map" else np.empty(shape, dtype=np.uint8)

    def store(index, image):
        out[index] = image

    for _ in decode_files(paths, DecodeSpec((size, size)), store=store, block=block):
        pass
    print(json.dumps({"images_per_s": len(paths) / (time.perf_counter() - start)}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="folder of class sub-folders")
    parser.add_argument(
        "--generate", type=int, default=0, help="make this many 400x300 JPEGs in /tmp instead"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("ALLOCATION", "BLOCK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.data and not args.generate:
        parser.error("give --data DIR or --generate N")
    data = str(args.data or benchlib.make_jpegs(f"/tmp/imgai-bench-jpegs-{args.generate}", args.generate))
    if args.child:
        child(data, args.child[0], int(args.child[1]), args.image_size)
        return

    from imgai.data import scan_folder

    paths = scan_folder(data).paths
    benchlib.warm_page_cache(paths)
    info = benchlib.machine()
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, (allocation, block) in VARIANTS.items():
            command = [
                sys.executable,
                __file__,
                "--data",
                data,
                "--image-size",
                str(args.image_size),
                "--child",
                allocation,
                str(block),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rates[name].append(json.loads(result.stdout.strip().splitlines()[-1])["images_per_s"])
    best = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"First fill of {len(paths)} images at {args.image_size} px from {data}, fresh processes, "
        f"median of {args.repeats} (range):"
    )
    for name, rate in best.items():
        low, high = min(rates[name]), max(rates[name])
        print(f"  {name:<16} {rate:7.0f} images/s  ({low:.0f}-{high:.0f})  {rate / best['imgai']:.2f}x")
    benchlib.print_json(
        {
            "benchmark": "fill",
            "data": data,
            "images": len(paths),
            "image_size": args.image_size,
            "repeats": args.repeats,
            "images_per_s": {k: round(v, 1) for k, v in best.items()},
            "ratio_to_imgai": {k: round(v / best["imgai"], 3) for k, v in best.items()},
            "all_runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            "machine": info,
        }
    )


if __name__ == "__main__":
    main()
