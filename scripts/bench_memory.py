#!/usr/bin/env python3
"""Peak resident memory of ``imgai train`` when the data set grows 10x, per ``data.cache`` mode.

    python scripts/bench_memory.py                        # 300 and 3,000 generated 400x300 JPEGs
    python scripts/bench_memory.py --small 1000 --factor 10 --image-size 224

Each training is a fresh ``python -m imgai train`` process (1 epoch, a small CNN so the run is
short; the model's size does not depend on the data set's) whose peak RSS (``ru_maxrss``) is read
with ``os.wait4``. For the disk cache, the first run builds the cache and the second reuses it;
both are reported. The in-memory mode is measured alongside for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib
from benchlib import REPO


def peak_rss_mb(args: list[str], env: dict, cwd: Path) -> float:
    """Run ``python -m imgai ARGS`` and return its peak RSS in MB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgai", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"imgai {' '.join(args)} failed:\n{output.decode(errors='replace')[-3000:]}")
    return usage.ru_maxrss / 1024  # KB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=300, help="images in the small data set")
    parser.add_argument("--factor", type=int, default=10, help="how many times larger the big one is")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--modes", default="disk,memory", help="data.cache modes to measure")
    args = parser.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sizes = {"small": args.small, "big": args.small * args.factor}
    folders = {name: benchlib.make_jpegs(f"/tmp/imgai-bench-jpegs-{n}", n) for name, n in sizes.items()}
    info = benchlib.machine()
    work = Path(tempfile.mkdtemp(prefix="imgai-bench-memory-"))
    peaks: dict[str, dict[str, float]] = {}
    try:
        for mode in args.modes.split(","):
            for name, folder in folders.items():
                common = [
                    "train",
                    f"data.root={folder}",
                    f"data.image_size={args.image_size}",
                    "train.epochs=1",
                    "data.validation_split=0.2",
                    "model.filters=[8,8]",
                    "model.dense_units=16",
                    f"data.cache={mode}",
                    f"data.cache_dir={work / 'cache'}",
                    f"output.dir={work / 'runs'}",
                ]
                runs = ["first", "again"] if mode == "disk" else ["first"]
                for run in runs:
                    peaks.setdefault(f"{mode}_{run}", {})[name] = peak_rss_mb(common, env, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    decoded_mb = {name: n * args.image_size**2 * 3 / 2**20 for name, n in sizes.items()}
    print(
        f"Peak RSS of 'imgai train' (1 epoch), {sizes['small']:,} vs {sizes['big']:,} JPEGs (400x300) at "
        f"{args.image_size} px = {decoded_mb['small']:.0f} vs {decoded_mb['big']:.0f} MB decoded:"
    )
    growth = {}
    for key, by_size in peaks.items():
        growth[key] = by_size["big"] / by_size["small"] - 1
        print(
            f"  data.cache={key:<13} {by_size['small']:8.0f} MB -> {by_size['big']:8.0f} MB   growth {growth[key]:+.1%}"
        )
    print("  target: disk cache grows < 20 % when the data grows 10x")
    benchlib.print_json(
        {
            "benchmark": "memory",
            "images": sizes,
            "image_size": args.image_size,
            "decoded_mb": {k: round(v, 1) for k, v in decoded_mb.items()},
            "peak_rss_mb": {k: {n: round(v, 1) for n, v in d.items()} for k, d in peaks.items()},
            "growth": {k: round(v, 4) for k, v in growth.items()},
            "machine": info,
        }
    )


if __name__ == "__main__":
    main()
