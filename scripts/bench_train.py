#!/usr/bin/env python3
"""The "fed fraction": imgai's end-to-end training speed against the same model trained on the
same images already in memory as float32 tensors, in the same run.

    python scripts/bench_train.py --data ../shared/datasets/flower_photos --model cnn --limit 640
    KERAS_BACKEND=jax python scripts/bench_train.py --generate 10000 --model cnn --limit 0 --epochs 4

(1) imgai: ``imgai.train.train`` on the folder (data.cache as given, disk by default, starting from
    an empty cache), exactly as ``imgai train`` runs it, with a timer added to ``model.fit``;
(2) baseline: the model imgai builds for that config, compiled the same way, ``model.fit(x, y)``
    on the same images decoded beforehand into one float32 array (no augmentation).

Images/s per epoch for both; the fed fraction is imgai's median over epochs after the first divided
by the baseline's. Epoch 1 of imgai includes nothing of the cache build (that is timed apart).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import benchlib
from benchlib import median

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _subset_folder(files, out: Path) -> Path:
    """Symlinks to ``files`` in class folders, so ``imgai train`` sees exactly that subset."""
    for path, label in zip(files.paths, files.labels):
        folder = out / files.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / Path(path).name
        if not link.exists():
            link.symlink_to(os.path.abspath(path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="folder of class sub-folders")
    parser.add_argument(
        "--generate", type=int, default=0, help="make this many 400x300 JPEGs in /tmp instead of --data"
    )
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--limit", type=int, default=640, help="images used (0 = all); CPU training at 224 px is slow"
    )
    parser.add_argument("--repeats", type=int, default=2, help="interleaved imgai / in-memory pairs")
    parser.add_argument("--cache", default="disk", choices=["auto", "memory", "disk", "none"])
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra imgai config override",
    )
    args = parser.parse_args()
    if not args.data and not args.generate:
        parser.error("give --data DIR or --generate N")
    data = str(args.data or benchlib.make_jpegs(f"/tmp/imgai-bench-jpegs-{args.generate}", args.generate))

    from imgai.config import load_config
    from imgai.data import load_images, scan_folder
    from imgai.quiet import import_keras, silence_frameworks

    silence_frameworks()
    keras = import_keras()
    from imgai.models import create_model
    from imgai.train import train

    files = scan_folder(data)
    if args.limit and args.limit < len(files):
        rng = np.random.default_rng(0)
        files = files.subset(np.sort(rng.permutation(len(files))[: args.limit]))
    benchlib.warm_page_cache(files.paths)
    info = benchlib.machine()
    work = Path(tempfile.mkdtemp(prefix="imgai-bench-train-"))
    try:
        root = _subset_folder(files, work / "data")
        config = load_config(
            [],
            [
                f"data.root={root}",
                f"data.image_size={args.image_size}",
                f"data.batch_size={args.batch_size}",
                f"data.cache={args.cache}",
                f"data.cache_dir={work / 'cache'}",
                f"model.name={args.model}",
                f"train.epochs={args.epochs}",
                f"output.dir={work / 'runs'}",
                *args.overrides,
            ],
        )

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self, seconds: list):
                super().__init__()
                self.seconds = seconds

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        decoded = load_images(files, config.data.image_size, progress=False)
        x = decoded.images.astype(np.float32)
        y = np.eye(len(files.class_names), dtype=np.float32)[decoded.labels]
        original_fit = keras.Model.fit
        imgai_runs: list[list[float]] = []
        memory_runs: list[list[float]] = []
        walls: list[float] = []
        log: list[str] = []
        for rep in range(args.repeats):  # interleaved, so a change in machine load hits both
            # (1) imgai end to end from an empty cache, with a timer slipped into model.fit.
            imgai_runs.append([])
            timer = EpochTimer(imgai_runs[-1])

            def timed_fit(self, *a, callbacks=None, **kw):
                # First in line, so an epoch's time ends before imgai's checkpoints are written:
                # the fraction compares feeding + computing; the wall time includes everything.
                return original_fit(self, *a, callbacks=[timer, *(callbacks or [])], **kw)

            keras.Model.fit = timed_fit
            run_config = config.model_copy(
                update={"data": config.data.model_copy(update={"cache_dir": str(work / f"cache{rep}")})}
            )
            start = time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    train(run_config, name=f"bench{rep}", log=log.append)
            finally:
                keras.Model.fit = original_fit
            walls.append(time.perf_counter() - start)

            # (2) the same model on the same images, already in memory as float32 tensors.
            keras.utils.set_random_seed(config.seed)
            model = create_model(
                config.model, config.data.image_size, 3, len(files.class_names), config.data.interpolation
            )
            model.compile(
                optimizer=keras.optimizers.get(
                    {
                        "class_name": config.train.optimizer,
                        "config": {"learning_rate": config.train.learning_rate},
                    }
                ),
                loss=config.train.loss,
                metrics=["accuracy"],
            )
            memory_runs.append([])
            model.fit(
                x,
                y,
                batch_size=args.batch_size,
                epochs=args.epochs,
                shuffle=True,
                callbacks=[EpochTimer(memory_runs[-1])],
                verbose=0,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(decoded)
    imgai_rates = [[n / s for s in run] for run in imgai_runs]
    memory_rates = [[n / s for s in run] for run in memory_runs]
    later = slice(1, None) if args.epochs > 1 else slice(0, None)
    later_imgai = median([r for run in imgai_rates for r in run[later]])
    later_memory = median([r for run in memory_rates for r in run[later]])
    first_imgai = median([run[0] for run in imgai_rates])
    first_memory = median([run[0] for run in memory_rates])
    imgai_wall = median(walls)
    cache_lines = [line for line in log if "cache" in line.lower() or line.startswith("Decoded")]
    print(
        f"{n} images from {data} at {args.image_size} px, model {args.model}, batch {args.batch_size}, "
        f"{args.epochs} epochs, backend {keras.backend.backend()}, data.cache={args.cache}:"
    )
    for line in cache_lines:
        print(f"  imgai: {line}")
    for rep in range(args.repeats):
        print(
            f"  run {rep + 1}: imgai end to end   epochs: "
            f"{', '.join(f'{r:.1f}' for r in imgai_rates[rep])} images/s; wall {walls[rep]:.1f} s in all"
        )
        print(
            f"  run {rep + 1}: in-memory tensors  epochs: {', '.join(f'{r:.1f}' for r in memory_rates[rep])} images/s"
        )
    print(
        f"  medians, epochs after the first: imgai {later_imgai:.1f}, in-memory {later_memory:.1f} images/s"
    )
    print(
        f"  fed fraction (epochs after the first): {later_imgai / later_memory:.1%}; "
        f"first epoch: {first_imgai / first_memory:.1%}"
    )
    benchlib.print_json(
        {
            "benchmark": "train",
            "data": data,
            "images": len(decoded),
            "model": args.model,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "cache": args.cache,
            "backend": keras.backend.backend(),
            "repeats": args.repeats,
            "imgai_images_per_s": [[round(r, 2) for r in run] for run in imgai_rates],
            "memory_images_per_s": [[round(r, 2) for r in run] for run in memory_rates],
            "imgai_later_epochs_images_per_s": round(later_imgai, 2),
            "memory_later_epochs_images_per_s": round(later_memory, 2),
            "imgai_wall_s_median": round(imgai_wall, 2),
            "fed_fraction_later_epochs": round(later_imgai / later_memory, 4),
            "fed_fraction_first_epoch": round(first_imgai / first_memory, 4),
            "machine": info,
        }
    )


if __name__ == "__main__":
    main()
