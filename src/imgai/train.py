"""Training: config -> run folder with checkpoints, history and the resolved config."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imgai import __version__
from imgai.config import Config, dump_config
from imgai.data import DecodedImages, Splits, load_images, make_batches, resolve_splits, write_skipped
from imgai.errors import ImgaiError
from imgai.runs import (
    BEST_MODEL,
    CLASSES_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    LAST_MODEL,
    SKIPPED_FILE,
    atomic_write_text,
    create_run_dir,
)


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_value: float
    monitor: str
    epochs_run: int
    seconds: float

    @property
    def best_model(self) -> Path:
        return self.run_dir / BEST_MODEL


def _resolved_for_saving(config: Config) -> Config:
    """Data paths made absolute, so the saved config reproduces the run from any folder."""
    data = config.data.model_copy(
        update={
            key: str(Path(value).resolve())
            for key in ("root", "train_dir", "val_dir", "test_dir")
            if (value := getattr(config.data, key))
        }
    )
    return config.model_copy(update={"data": data})


def describe_splits(splits: Splits) -> str:
    """A small table of images per class and split, printed before training."""
    names = splits.class_names
    columns = [(name, fl.counts()) for name, fl in splits.items()]
    width = max(len(n) for n in names + ["class"])
    header = f"  {'class':<{width}}" + "".join(f"{name:>8}" for name, _ in columns)
    rows = [f"  {cls:<{width}}" + "".join(f"{counts[i]:>8}" for _, counts in columns) for i, cls in enumerate(names)]
    total = f"  {'total':<{width}}" + "".join(f"{sum(counts):>8}" for _, counts in columns)
    return "\n".join([header, *rows, total])


def model_metadata(config: Config, class_names: list[str]) -> dict:
    return {
        "class_names": list(class_names),
        "image_size": list(config.data.image_size),
        "color_mode": config.data.color_mode,
        "interpolation": config.data.interpolation,
        "model": config.model.name,
        "imgai_version": __version__,
    }


def _make_checkpointer(run_dir: Path, monitor: str, mode: str, metadata: dict, log: Callable[[str], None]):
    import keras

    from imgai.models import save_model

    class Checkpointer(keras.callbacks.Callback):
        """Writes last.keras every epoch and best.keras on improvement, each atomically."""

        def __init__(self):
            super().__init__()
            self.best_value: float | None = None
            self.best_epoch = 0

        def _improved(self, value: float) -> bool:
            if self.best_value is None:
                return True
            return value > self.best_value if mode == "max" else value < self.best_value

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            save_model(self.model, run_dir / LAST_MODEL, metadata)
            value = logs.get(monitor)
            if value is None:
                raise ImgaiError(f"metric '{monitor}' was not computed: set train.monitor to one of {sorted(logs)}")
            if self._improved(float(value)):
                self.best_value, self.best_epoch = float(value), epoch + 1
                save_model(self.model, run_dir / BEST_MODEL, metadata)

    return Checkpointer()


def _make_history_writer(path: Path):
    import keras

    class HistoryWriter(keras.callbacks.Callback):
        """Appends one row per finished epoch to history.csv (epochs counted from 1), flushed at
        once, so the file always matches the checkpoints on disk."""

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            keys = sorted(logs)
            new_file = not path.exists() or path.stat().st_size == 0
            with path.open("a", encoding="utf-8") as fh:
                if new_file:
                    fh.write(",".join(["epoch", *keys]) + "\n")
                fh.write(",".join([str(epoch + 1), *(repr(logs[k]) for k in keys)]) + "\n")
                fh.flush()

    return HistoryWriter()


def _decode_splits(splits: Splits, config: Config, log: Callable[[str], None]) -> tuple[DecodedImages, DecodedImages | None, list]:
    data = config.data
    start = time.perf_counter()
    train = load_images(splits.train, data.image_size, data.color_mode, data.interpolation, data.workers, "decoding training images")
    val = (
        load_images(splits.val, data.image_size, data.color_mode, data.interpolation, data.workers, "decoding validation images")
        if splits.val is not None
        else None
    )
    skipped = train.skipped + (val.skipped if val is not None else [])
    n = len(train) + (len(val) if val is not None else 0)
    log(f"Decoded {n} images at {data.image_size[0]}x{data.image_size[1]} in {time.perf_counter() - start:.1f} s.")
    return train, val, skipped


def train(config: Config, name: str | None = None, log: Callable[[str], None] = print) -> TrainResult:
    """Train ``config`` into a new run folder and return where the best model is."""
    splits = resolve_splits(config.data, config.seed)  # fail on data problems before creating anything
    class_names = splits.class_names
    monitor = config.train.monitor
    if monitor.startswith("val_") and splits.val is None:
        log(
            f"Note: no validation data (no val/ folder and no data.validation_split), so best.keras is "
            f"chosen by training {monitor[4:]} instead of {monitor}."
        )
        monitor = monitor[4:]
    mode = "min" if monitor.endswith("loss") else "max"

    run_dir = create_run_dir(config.output.dir, name or config.output.name)
    atomic_write_text(run_dir / CONFIG_FILE, dump_config(_resolved_for_saving(config)))
    atomic_write_text(run_dir / CLASSES_FILE, "".join(f"{c}\n" for c in class_names))
    log(f"Run folder: {run_dir}")
    log(f"Found {len(class_names)} classes:")
    log(describe_splits(splits))

    train_images, val_images, skipped = _decode_splits(splits, config, log)
    if skipped:
        write_skipped(run_dir / SKIPPED_FILE, skipped)
        log(f"Skipped {len(skipped)} unreadable file(s); listed in {run_dir / SKIPPED_FILE}")
    if len(train_images) == 0:
        raise ImgaiError(f"none of the {len(splits.train)} training images could be read: see {run_dir / SKIPPED_FILE}")

    import keras

    from imgai.augment import augment_batches, describe
    from imgai.models import create_model, estimate_flops, precision_policy

    keras.utils.set_random_seed(config.seed)
    channels = 3 if config.data.color_mode == "rgb" else 1
    with precision_policy(config.train.precision):
        model = create_model(config.model, config.data.image_size, channels, len(class_names), config.data.interpolation)
    metrics: list = ["accuracy"]
    if len(class_names) > 5:
        k = min(config.train.top_k, len(class_names) - 1)
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=k, name=f"top{k}_accuracy"))
    model.compile(
        optimizer=keras.optimizers.get({"class_name": config.train.optimizer, "config": {"learning_rate": config.train.learning_rate}}),
        loss=config.train.loss,
        metrics=metrics,
    )
    log(
        f"Model '{config.model.name}': {model.count_params():,} parameters, "
        f"{estimate_flops(model) / 1e6:,.0f} MFLOPs per image, precision {config.train.precision}."
    )

    num_classes = len(class_names)
    batch = config.data.batch_size
    train_batches = make_batches(train_images, num_classes, batch, shuffle=config.data.shuffle, seed=config.seed)
    # Augmentation is its own compiled step on each training batch, never part of the model.
    train_batches = augment_batches(train_batches, config.augment, config.data.image_size, channels, config.seed)
    log(f"Augmentation: {describe(config.augment)}.")
    val_batches = make_batches(val_images, num_classes, batch) if val_images is not None and len(val_images) else None
    checkpointer = _make_checkpointer(run_dir, monitor, mode, model_metadata(config, class_names), log)
    callbacks = [_make_history_writer(run_dir / HISTORY_FILE), checkpointer]

    log(f"Training for {config.train.epochs} epoch(s) on {len(train_images)} images, batch size {batch}.")
    start = time.perf_counter()
    history = model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=config.train.epochs,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    seconds = time.perf_counter() - start
    result = TrainResult(
        run_dir=run_dir,
        best_epoch=checkpointer.best_epoch,
        best_value=checkpointer.best_value if checkpointer.best_value is not None else float("nan"),
        monitor=monitor,
        epochs_run=len(history.epoch),
        seconds=seconds,
    )
    log(
        f"Done in {seconds:.0f} s. Best epoch {result.best_epoch}/{result.epochs_run}: "
        f"{monitor} {result.best_value:.4f}. Best model: {result.best_model}"
    )
    return result
