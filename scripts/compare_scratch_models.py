"""Accuracy per FLOP of the from-scratch models, trained side by side in one run with the same
data, image size, augmentation, optimizer and epochs.

    PYTHONPATH=src python scripts/compare_scratch_models.py --data /path/to/flower_photos \
        [--size 128] [--epochs 10] [--out /tmp/compare_scratch]

Prints, per model: parameters, MFLOPs per image, seconds per epoch, best and last validation
accuracy, and best accuracy per GFLOP. Uses a 20 % validation split with seed 123.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

MODELS = {
    "cnn": ["model.name=cnn"],
    "sepresnet": ["model.name=sepresnet", "model.dropout=0.25"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="Folder with one sub-folder per class.")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=None, help="Where the runs go (default: a temporary folder).")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()

    from imgai.quiet import import_keras

    import_keras()
    from imgai.config import load_config
    from imgai.models import create_model, estimate_flops
    from imgai.train import train

    out = Path(args.out or tempfile.mkdtemp(prefix="compare_scratch_"))
    common = [
        f"data.root={args.data}",
        "data.validation_split=0.2",
        f"data.image_size={args.size}",
        "seed=123",
        f"train.epochs={args.epochs}",
        "train.optimizer=adamw",
        "train.learning_rate=0.001",
        "augment.flip=horizontal",
        "augment.contrast=0.2",
        "augment.brightness=0.2",
        f"output.dir={out}",
    ]
    rows = []
    for name in args.models:
        config = load_config([], common + MODELS[name])
        flops = estimate_flops(create_model(config.model, config.data.image_size, 3, 5))
        result = train(config, name=name, log=lambda line: print(f"  [{name}] {line}", flush=True))
        with (result.run_dir / "history.csv").open() as fh:
            history = list(csv.DictReader(fh))
        last = float(history[-1]["val_accuracy"])
        rows.append((name, flops, result, last))

    print(f"\n{args.epochs} epochs at {args.size}x{args.size}, runs in {out}")
    print(
        f"{'model':<12}{'params':>12}{'MFLOPs':>9}{'s/epoch':>9}{'best val':>10}{'last val':>10}{'best/GFLOP':>12}"
    )
    for name, flops, result, last in rows:
        params = load_params(result.best_model)
        print(
            f"{name:<12}{params:>12,}{flops / 1e6:>9.0f}{result.seconds / result.epochs_run:>9.1f}"
            f"{result.best_value:>10.4f}{last:>10.4f}{result.best_value / (flops / 1e9):>12.2f}"
        )


def load_params(path: Path) -> int:
    from imgai.modelfile import load_model

    return load_model(path)[0].count_params()


if __name__ == "__main__":
    main()
