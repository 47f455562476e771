#!/usr/bin/env python3
"""What imgai's per-step learning-rate schedule costs over a constant learning rate.

Trains the same config in one process with, side by side, a constant learning rate (set once
per stage) and a warmup + cosine schedule (set before every step), and prints the seconds per
epoch of each (best of --repeats, alternating) and their ratio. Epoch 1 (tracing, compilation)
is left out.

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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/cnn.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
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

    def run_seconds(out: str, name: str, epochs: int, extra: list[str]) -> float:
        config = load_config(
            [args.config], [*args.overrides, f"train.epochs={epochs}", f"output.dir={out}", *extra]
        )
        start = time.perf_counter()
        result = train(config, name=name, log=lambda _: None)
        seconds = time.perf_counter() - start
        assert len(list(csv.DictReader((result.run_dir / "history.csv").open()))) == epochs
        return seconds

    # Alternate the variants and keep each one's fastest repeat: on a shared machine the minimum is
    # the least disturbed figure. Epoch 1 (tracing, compilation) is taken out with a one-epoch run.
    best: dict[str, float] = {label: float("inf") for label in variants}
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeats):
            for label, extra in variants.items():
                slug = f"{label.replace('+', '-')}-{repeat}"
                whole = run_seconds(out, slug, args.epochs, extra)
                first = run_seconds(out, slug + "-1", 1, extra)
                best[label] = min(best[label], (whole - first) / (args.epochs - 1))
    for label, seconds in best.items():
        print(
            f"{label:>14}: {seconds:.3f} s per epoch (epochs "
            f"2..{args.epochs}, checkpoints included; best of {args.repeats})"
        )
    print(f"ratio warmup+cosine / constant: {best['warmup+cosine'] / best['constant']:.3f}")


if __name__ == "__main__":
    main()
