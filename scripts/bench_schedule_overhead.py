#!/usr/bin/env python3
"""What imgai's per-step learning-rate schedule and per-epoch resume checkpoint cost.

Trains the same config twice in one process, side by side: a constant learning rate (set once
per stage) and a warmup + cosine schedule (set before every step), and prints the seconds per
epoch of each and their ratio. Epoch 1 (tracing, compilation) is left out.

    python scripts/bench_schedule_overhead.py                       # sample shapes data, classic CNN
    python scripts/bench_schedule_overhead.py --config configs/flowers.yaml data.root=../shared/datasets/flower_photos

Extra KEY=VALUE arguments are config overrides, as for 'imgai train'.
"""

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cnn.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    from imgai.quiet import import_keras, silence_frameworks

    silence_frameworks()
    import_keras()
    from imgai.config import load_config
    from imgai.train import train

    variants = {
        "constant": ["train.schedule=constant"],
        "warmup+cosine": ["train.schedule=cosine", "train.warmup_epochs=1"],
    }
    per_epoch: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as out:
        for label, extra in variants.items():
            config = load_config([args.config], [*args.overrides, f"train.epochs={args.epochs}", f"output.dir={out}", *extra])
            start = time.perf_counter()
            result = train(config, name=label.replace("+", "-"), log=lambda _: None)
            total = time.perf_counter() - start
            rows = list(csv.DictReader((result.run_dir / "history.csv").open()))
            assert len(rows) == args.epochs
            # history.csv has no times: time the whole run, then take epoch 1 out with a one-epoch run.
            one = load_config([args.config], [*args.overrides, "train.epochs=1", f"output.dir={out}", *extra])
            start = time.perf_counter()
            train(one, name=label.replace("+", "-") + "-1", log=lambda _: None)
            first = time.perf_counter() - start
            per_epoch[label] = (total - first) / (args.epochs - 1)
            print(f"{label:>14}: {per_epoch[label]:.3f} s per epoch (epochs 2..{args.epochs}, incl. checkpoints)")
    ratio = per_epoch["warmup+cosine"] / per_epoch["constant"]
    print(f"ratio warmup+cosine / constant: {ratio:.3f}")


if __name__ == "__main__":
    main()
