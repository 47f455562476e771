"""Speed of ``imgai data check`` and of the warnings ``imgai train`` prints.

Measured side by side in one run:

1. the flowers (3,670 photos) checked end to end, validation_split 0.2, seed 123, page cache warm;
2. the near-duplicate search over 100,000 synthetic 64-bit hashes (with planted near copies,
   all of which must be found);
3. imgai's numpy pHash against ``imagehash.phash`` (when installed): time per image from decoded
   pixels, and how well each separates edited copies (re-encoded, resized, 2 % cropped, brighter)
   from distinct photos at the default distance;
4. the warnings of ``imgai train`` (empty classes, ignored files, exact train/val copies) against
   the cold decode they follow, on the same images.

    PYTHONPATH=src python3 scripts/bench_check.py [--data ../shared/datasets/flower_photos] [--workers 2]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def warm_page_cache(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def bench_flowers(root: Path, workers: int) -> dict:
    from imgai.check import count, run_check
    from imgai.config import load_config

    config = load_config(
        [], [f"data.root={root}", "data.validation_split=0.2", f"data.workers={workers}", "seed=123"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = run_check(config, Path(tmp) / "report", log=lambda _m: None, progress=False)
        seconds = time.perf_counter() - start
    groups = report.findings["duplicates"]
    exact = [g for g in groups if g["type"] == "exact"]
    return {
        "flowers_images": sum(sum(c.values()) for c in report.counts.values()),
        "flowers_check_s": round(seconds, 2),
        "flowers_decode_and_hash_s": report.seconds["decode_and_hash"],
        "flowers_search_s": report.seconds["search"],
        "flowers_exact_groups": len(exact),
        "flowers_exact_extra_copies": sum(len(g["members"]) - 1 for g in exact),
        "flowers_near_groups": len(groups) - len(exact),
        "flowers_conflicts": count(report.findings, "conflicts"),
        "flowers_leakage": count(report.findings, "leakage"),
    }


def bench_search(n: int, distance: int) -> dict:
    from imgai.dedupe import near_pairs

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    planted = set()
    for k in range(0, n - 1, max(1, n // 1000)):  # ~1,000 near copies, 1..distance bits apart
        bits = rng.choice(64, size=int(rng.integers(1, distance + 1)), replace=False)
        hashes[k + 1] = hashes[k] ^ np.uint64(sum(1 << int(b) for b in bits))
        planted.add((k, k + 1))
    start = time.perf_counter()
    pairs = near_pairs(hashes, distance)
    seconds = time.perf_counter() - start
    found = {tuple(map(int, p)) for p in pairs}
    return {
        "search_hashes": n,
        "search_s": round(seconds, 2),
        "search_pairs_per_s": round(n * (n - 1) / 2 / seconds),
        "search_planted_found": f"{len(planted & found)}/{len(planted)}",
    }


def edited(img):
    from PIL import Image, ImageEnhance

    w, h = img.size
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=60)
    cw, ch = int(w * 0.02), int(h * 0.02)
    return [
        Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
        img.resize((w // 2, h // 2)),
        img.crop((cw, ch, w - cw, h - ch)),
        ImageEnhance.Brightness(img).enhance(1.2),
    ]


def bench_phash(root: Path, sample: int, distance: int) -> dict:
    from PIL import Image

    from imgai.data import decode_image
    from imgai.dedupe import hamming, luma, phash, small_copy

    paths = sorted(root.glob("*/*.jpg"))[:: max(1, len(sorted(root.glob("*/*.jpg"))) // sample)][:sample]
    decoded = []

    def keep(data, rgb):
        decoded.append(rgb)

    for p in paths:
        decode_image(p, (224, 224), inspect=keep)
    methods = {"numpy": lambda rgb: phash(luma(small_copy(rgb)))}
    try:
        import imagehash

        methods["imagehash"] = lambda rgb: int(str(imagehash.phash(Image.fromarray(rgb))), 16)
    except ImportError:
        pass
    out = {}
    for name, method in methods.items():
        start = time.perf_counter()
        hashes = [method(rgb) for rgb in decoded]
        per_image = (time.perf_counter() - start) / len(decoded)
        copies = [
            hamming(h, method(np.asarray(c)))
            for rgb, h in zip(decoded, hashes)
            for c in edited(Image.fromarray(rgb))
        ]
        apart = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
        out[f"phash_{name}_ms_per_image"] = round(per_image * 1000, 3)
        out[f"phash_{name}_copies_found"] = round(float(np.mean(np.asarray(copies) <= distance)), 3)
        out[f"phash_{name}_distinct_pairs_matched"] = int(np.sum(np.asarray(apart) <= distance))
    out["phash_sample_images"] = len(decoded)
    out["phash_distinct_pairs"] = len(decoded) * (len(decoded) - 1) // 2
    return out


def bench_train_warnings(root: Path, workers: int) -> dict:
    from imgai.config import load_config
    from imgai.data import load_images, resolve_splits, training_warnings

    config = load_config([], [f"data.root={root}", "data.validation_split=0.2", "seed=123"])
    splits = resolve_splits(config.data, config.seed)
    start = time.perf_counter()
    train = load_images(splits.train, (224, 224), workers=workers, progress=False)
    val = load_images(splits.val, (224, 224), workers=workers, progress=False)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    lines = training_warnings(splits, train, val)
    warn = time.perf_counter() - start
    return {
        "train_decode_s": round(decode, 2),
        "train_warnings_s": round(warn, 3),
        "train_warnings_share_of_decode": round(warn / decode, 4),
        "train_warnings": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "flower_photos"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--phash-sample", type=int, default=200)
    args = parser.parse_args()
    from imgai.config import defaults

    distance = defaults().data.near_duplicate_distance
    root = Path(args.data).expanduser()
    result: dict = {"cpus": os.cpu_count(), "workers": args.workers, "near_duplicate_distance": distance}
    result.update(bench_search(args.hashes, distance))
    print(f"search: {result['search_hashes']:,} hashes in {result['search_s']} s", flush=True)
    if root.is_dir():
        warm_page_cache(root)
        result.update(bench_flowers(root, args.workers))
        print(
            f"flowers: {result['flowers_images']} images checked in {result['flowers_check_s']} s", flush=True
        )
        result.update(bench_phash(root, args.phash_sample, distance))
        result.update(bench_train_warnings(root, args.workers))
    else:
        print(f"{root} not found: flowers, pHash and training-warning figures skipped", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
