"""Training: config -> run folder with checkpoints, history and the resolved config.

:func:`train` starts a run, :func:`resume` continues one (see :mod:`imgai.resume` for what is
stored). Both go through :func:`_fit`, which runs up to two stages: training, then, when
``train.fine_tune_after`` is set, fine-tuning with the backbone unfrozen at a lower learning rate.

Per epoch, in this order: a row is appended to history.csv, last.keras is written (weights,
optimizer, resume state), then best.keras if the epoch improved. A kill at any point leaves files
that :func:`resume` can reconcile.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgai import __version__
from imgai.config import Config, dump_config, load_config
from imgai.data import NOT_FOLLOWED, DecodeSpec, Splits, resolve_splits, training_warnings, write_skipped
from imgai.distribute import Cluster, Plan
from imgai.errors import ImgaiError, Terminated
from imgai.lock import RunLock
from imgai.modelfile import ModelInfo
from imgai.monitoring import PER_CLASS_MONITORS, check_monitor, improves, make_validation_watch
from imgai.runs import (
    BEST_MODEL,
    CLASSES_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    LAST_MODEL,
    SKIPPED_FILE,
    atomic_write_text,
    create_run_dir,
    describe_os_error,
)


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_value: float
    monitor: str
    epochs_run: int
    seconds: float
    stopped_early: bool = False
    model: Any = field(default=None, repr=False)  # the trained model (best weights if restored)

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
    rows = [
        f"  {cls:<{width}}" + "".join(f"{counts[i]:>8}" for _, counts in columns)
        for i, cls in enumerate(names)
    ]
    total = f"  {'total':<{width}}" + "".join(f"{sum(counts):>8}" for _, counts in columns)
    return "\n".join([header, *rows, total])


def model_metadata(config: Config, class_names: list[str]) -> ModelInfo:
    """What the saved model files record beside the weights."""
    import keras

    return ModelInfo(
        class_names=tuple(class_names),
        image_size=tuple(config.data.image_size),
        color_mode=config.data.color_mode,
        interpolation=config.data.interpolation,
        model=config.model.name,
        imgai_version=__version__,
        keras_version=keras.__version__,
    )


def _decode_splits(
    splits: Splits, config: Config, run_dir: Path, log: Callable[[str], None], plan: Plan | None = None
):
    """(training images, validation images or None, skipped files): image stores held where
    ``data.cache`` says, the unreadable files listed in the run folder (by the writer). The
    processes of a JAX multi-process run share the decoding of a memory cache."""
    plan = plan or Plan()
    writes = plan.is_writer
    share = plan if plan.multi_process and plan.engine == "jax" else None
    from imgai.cache import _memory_bytes, prepare_splits
    from imgai.models import check_fits_memory

    # Before decoding anything: settings that cannot fit would otherwise fail minutes later, in an
    # out-of-memory crash with a traceback, after decoding every image at that size.
    spec = DecodeSpec.from_config(config.data)
    available = _memory_bytes()[1]
    classes, batch = len(splits.class_names), config.data.batch_size
    check_fits_memory(config.model, spec.image_size, spec.channels, classes, batch, available)
    train, val = prepare_splits(splits.train, splits.val, config.data, log, share)
    links = list(dict.fromkeys(link for _, fl in splits.items() for link in fl.not_followed))
    if links and writes:
        log(
            f"Did not follow {len(links)} directory link(s) back into folders already scanned; see {SKIPPED_FILE}."
        )
    skipped = links + train.skipped + (val.skipped if val is not None else [])
    if skipped and writes:
        write_skipped(run_dir / SKIPPED_FILE, skipped)
        log(f"Skipped {len(skipped)} unreadable file(s); listed in {run_dir / SKIPPED_FILE}")
    if len(train) == 0:
        raise ImgaiError(
            f"none of the {len(splits.train)} training images could be read: see {run_dir / SKIPPED_FILE}"
        )
    return train, val, skipped


# --------------------------------------------------------------------------------- callbacks


def _make_learning_rate_control(train_cfg, steps_per_epoch: int, state, batches):
    """Sets the learning rate before every step from the schedule (and plateau reductions),
    tells the training batches which epoch's order to serve, and logs the rate per epoch."""
    import keras

    from imgai.backend import sync_before_mid_epoch_change
    from imgai.optim import learning_rate_at

    class LearningRateControl(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.stage_start, self.stage_epochs, self.peak = 0, 1, train_cfg.learning_rate
            self.current: float | None = None
            self._epoch = 0

        def configure(self, stage_start: int, stage_epochs: int, peak: float) -> None:
            self.stage_start, self.stage_epochs, self.peak = stage_start, stage_epochs, peak
            self.current = None

        def rate(self, epoch: int, batch: int) -> float:
            step = (epoch - self.stage_start) * steps_per_epoch + batch
            lr = (
                learning_rate_at(step, steps_per_epoch, self.stage_epochs, self.peak, train_cfg)
                * state.lr_scale
            )
            if state.lr_scale < 1.0:
                lr = max(lr, train_cfg.plateau_min_learning_rate)
            return lr

        def _apply(self, lr: float, mid_epoch: bool) -> None:
            if lr == self.current:
                return
            if mid_epoch:
                sync_before_mid_epoch_change(self.model)  # so that the next step reads the new rate
            self.model.optimizer.learning_rate = lr
            self.current = lr

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch
            batches.set_epoch(epoch)  # the one writer of the batches' epoch, before Keras iterates
            self._apply(self.rate(epoch, 0), mid_epoch=False)

        def on_train_batch_begin(self, batch, logs=None):
            self._apply(self.rate(self._epoch, batch), mid_epoch=batch > 0)

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and self.current is not None:
                logs["learning_rate"] = float(self.current)

    return LearningRateControl()


def epoch_line(epoch: int, epochs: int, seconds: float, logs: dict, new_best: bool) -> str:
    """ "Epoch 3/15 2s loss 0.5123 acc 0.8120 val_loss 0.4312 val_acc 0.8512 * best": one line per
    epoch that fits 80 columns. The learning rate and top-k stay in history.csv; '* best' marks the
    epoch that wrote best.keras."""
    short = {"loss": "loss", "accuracy": "acc", "val_loss": "val_loss", "val_accuracy": "val_acc"}
    parts = [f"Epoch {epoch}/{epochs}", f"{seconds:.0f}s"]
    parts += [f"{name} {float(logs[key]):.4f}" for key, name in short.items() if key in logs]
    return " ".join(parts + (["* best"] if new_best else []))


def _make_epoch_printer(log, state, epochs: int, steps: int):
    """The epoch lines, and on a terminal a live bar with time left inside each epoch (Keras's own
    progress bar runs past 80 columns and ends in the learning rate)."""
    import keras

    from imgai.data import Progress

    class EpochPrinter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.bar = Progress(f"epoch {epoch + 1}/{epochs}", steps, unit="steps", min_total=1)

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(batch + 1)

        def on_epoch_end(self, epoch, logs=None):
            seconds = self.bar.close()
            # The epoch keeper ran before this callback: it has just saved best.keras if improved.
            log(epoch_line(epoch + 1, epochs, seconds, logs or {}, state.best_epoch == epoch + 1))

    return EpochPrinter()


def _make_history_writer(path: Path, writes: bool = True):
    import keras

    class HistoryWriter(keras.callbacks.Callback):
        """Appends one row per finished epoch to history.csv (epochs counted from 1), flushed at
        once; a resumed run keeps the file's columns."""

        def on_epoch_end(self, epoch, logs=None):
            if not writes:  # another process of the run writes
                return
            logs = {k: float(v) for k, v in (logs or {}).items()}
            header: list[str] | None = None
            if path.exists() and path.stat().st_size > 0:
                with path.open(encoding="utf-8") as fh:
                    header = fh.readline().strip().split(",")[1:]
            with path.open("a", encoding="utf-8") as fh:
                if header is None:
                    header = sorted(logs)
                    fh.write(",".join(["epoch", *header]) + "\n")
                fh.write(
                    ",".join([str(epoch + 1), *(repr(logs[k]) if k in logs else "" for k in header)]) + "\n"
                )
                fh.flush()

    return HistoryWriter()


def _make_epoch_keeper(
    run_dir: Path,
    train_cfg,
    monitor: str,
    mode: str,
    metadata: ModelInfo,
    state,
    log: Callable[[str], None],
    plan: Plan | None = None,
):
    """After each epoch: best value, early stopping and plateau bookkeeping, then last.keras
    (with the resume state inside) and best.keras, each written atomically. Every process of a
    multi-process run keeps the books (the metrics are global, so they all stop together); only
    the writer (process 0) saves."""
    plan = plan or Plan()
    import keras

    from imgai.modelfile import save_model
    from imgai.resume import RESUME_MEMBER, capture_rng, copy_atomically

    def better(value: float, reference: float | None, delta: float = 0.0) -> bool:
        return improves(value, reference, mode, delta)

    class EpochKeeper(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            value = logs.get(monitor)
            if value is None:
                raise ImgaiError(
                    f"metric '{monitor}' was not computed: set train.monitor to one of {sorted(logs)}"
                )
            value = float(value)
            improved = better(value, state.best_value)
            if improved:
                state.best_value, state.best_epoch = value, epoch + 1
            patience = train_cfg.early_stopping_patience
            if patience:
                if better(value, state.stop_best, train_cfg.early_stopping_min_delta):
                    state.stop_best, state.stop_wait = value, 0
                else:
                    state.stop_wait += 1
                    if state.stop_wait >= patience:
                        state.stopped_early = True
                        self.model.stop_training = True
            if train_cfg.plateau_patience:
                if better(value, state.plateau_best):
                    state.plateau_best, state.plateau_wait = value, 0
                else:
                    state.plateau_wait += 1
                    if state.plateau_wait >= train_cfg.plateau_patience:
                        state.lr_scale *= train_cfg.plateau_factor
                        state.plateau_wait = 0
                        log(
                            f"{monitor} has not improved for {train_cfg.plateau_patience} epoch(s): learning rate "
                            f"x{train_cfg.plateau_factor:g} from epoch {epoch + 2} on."
                        )
            state.epoch = epoch + 1
            state.rng = capture_rng(self.model)
            if not plan.is_writer:
                return
            with plan.writing():
                save_model(self.model, run_dir / LAST_MODEL, metadata, {RESUME_MEMBER: state.to_json()})
            if improved:
                copy_atomically(run_dir / LAST_MODEL, run_dir / BEST_MODEL)

    return EpochKeeper()


def _make_divergence_guard(run_dir: Path, train_cfg, lr_control):
    """Stops training the moment the loss (or, at an epoch's end, any metric or weight) is not
    finite, before history.csv, last.keras or best.keras see that epoch: the last checkpoints stay
    the last finite ones. Runs before the history writer and the epoch keeper."""
    import keras
    import numpy as np

    class DivergenceGuard(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not np.isfinite(float(loss)):
                self._fail(f"the training loss became {float(loss)} at step {batch + 1}")

        def on_epoch_end(self, epoch, logs=None):
            bad = [k for k, v in (logs or {}).items() if not np.isfinite(float(v))]
            if bad:
                self._fail(f"{bad[0]} is {float(logs[bad[0]])} at the end of the epoch")
            if not all(np.isfinite(w).all() for w in self.model.get_weights()):
                self._fail("the weights hold nan or inf at the end of the epoch")

        def _fail(self, what: str) -> None:
            from imgai.resume import read_state

            self.model.stop_training = True
            state = read_state(run_dir / LAST_MODEL) if (run_dir / LAST_MODEL).is_file() else None
            kept = (
                f"the last finite checkpoint (epoch {state.epoch}) is kept: {run_dir / LAST_MODEL}"
                if state is not None and state.epoch > 0
                else "no epoch had finished, so nothing was kept"
            )
            rate = lr_control.current if lr_control.current is not None else train_cfg.learning_rate
            raise ImgaiError(
                f"training diverged in epoch {self._epoch + 1}: {what}. Likely cause: a learning rate too "
                f"high for this model and data (it was {rate:g}); lower train.learning_rate (e.g. "
                f"{min(train_cfg.learning_rate / 10, 1e-3):g}), or set train.gradient_clip_norm=1.0 "
                "or train.warmup_epochs=1. "
                f"{kept[0].upper()}{kept[1:]}",
                exit_code=1,
            )

    return DivergenceGuard()


# ----------------------------------------------------------------------------------- helpers


def _seed_everything(config: Config, log: Callable[[str], None]) -> None:
    """``seed`` seeds Python, NumPy, the backend and Keras; ``deterministic`` also makes the
    backend's kernels deterministic."""
    import keras

    from imgai import backend

    keras.utils.set_random_seed(config.seed)
    if not config.deterministic:
        return
    note = backend.make_deterministic()
    if note:
        log(note)
    log(f"Deterministic mode: seed {config.seed}, deterministic {backend.name()} ops.")


def _stages(config: Config) -> list[tuple[str, int, int]]:
    """(stage, first epoch, end epoch) in 0-based epochs; the fine-tune stage only if it has epochs."""
    total, after = config.train.epochs, config.train.fine_tune_after
    if after is None or after >= total:
        return [("train", 0, total)]
    stages = [("train", 0, after)] if after > 0 else []
    return stages + [("fine_tune", after, total)]


def _compile(model, config: Config, stage: str, metrics: list, weighted: bool = False) -> float:
    """Compile for ``stage`` with a fresh optimizer; returns the stage's peak learning rate.
    ``weighted``: the metrics honour sample weights (validation padded for several devices)."""
    from imgai.optim import build_loss, build_optimizer

    train_cfg = config.train
    peak = train_cfg.learning_rate
    if stage == "fine_tune":
        peak = train_cfg.fine_tune_learning_rate  # the config resolves empty to learning_rate / 10
    model.compile(
        optimizer=build_optimizer(train_cfg, peak),
        loss=build_loss(train_cfg),
        metrics=None if weighted else metrics,
        weighted_metrics=metrics if weighted else None,
        jit_compile=train_cfg.jit_compile,
        steps_per_execution=train_cfg.steps_per_execution,
    )
    return peak


def _unfreeze(model, config: Config, log: Callable[[str], None]) -> None:
    from imgai.models import unfreeze_backbone

    count = unfreeze_backbone(model, config.train.fine_tune_layers)
    which = "all" if config.train.fine_tune_layers == "all" else f"the top {config.train.fine_tune_layers}"
    log(f"Fine-tuning: unfroze {which} backbone layers ({count} with weights; BatchNorm stays frozen).")


# -------------------------------------------------------------------------------- entry points


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (what `kill`, systemd and schedulers send) behaves like Ctrl-C while training: the
    write in progress is dropped by its atomic rename, and the run says how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_tensorboard(config: Config) -> None:
    """TensorBoard logging needs the tensorboard package, which TensorFlow no longer pulls in."""
    import importlib.util

    if config.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ImgaiError(
            "train.tensorboard: true needs the tensorboard package: pip install tensorboard "
            "(or pip install 'imgai[tensorboard]'), or set train.tensorboard=false"
        )


def train(
    config: Config,
    name: str | None = None,
    log: Callable[[str], None] = print,
    callbacks: list | None = None,
    cluster: Cluster | None = None,
) -> TrainResult:
    """Train ``config`` into a new run folder and return where the best model is.

    ``callbacks``: Keras callbacks passed to ``model.fit`` after imgai's own (which write the
    checkpoints and history), e.g. for MLflow or custom logging. ``cluster``: this process's place
    in a multi-process run (see :mod:`imgai.distribute`)."""
    check_tensorboard(config)
    plan, log = _plan(config, cluster, log)  # joins the other processes; fails before writing
    splits = resolve_splits(config.data, config.seed)  # fail on data problems before creating anything
    check_monitor(config.train.monitor, splits.val is not None, plan.multi_process)
    if not plan.is_writer:  # process 0 picks and writes the run folder
        placeholder = Path(config.output.dir) / "(process 0's run)"
        return _fit(config, splits, placeholder, None, log, callbacks, plan)
    run_dir = create_run_dir(config.output.dir, name or config.output.name)
    # Locked before config.yaml exists, so a --resume of this folder can never slip in between.
    lock = RunLock(run_dir).acquire()
    try:
        try:
            atomic_write_text(run_dir / CONFIG_FILE, dump_config(_resolved_for_saving(config)))
            atomic_write_text(run_dir / CLASSES_FILE, "".join(f"{c}\n" for c in splits.class_names))
        except OSError as exc:
            raise ImgaiError(f"cannot start run '{run_dir}': {describe_os_error(exc)}") from None
        log(f"Run folder: {run_dir}")
        with terminate_as_interrupt():
            result = _fit(config, splits, run_dir, None, log, callbacks, plan)
        _calibrate_at_end(config, splits, result, log)
        _after_training(result, config, log)
        return result
    except BaseException:
        # Anything that stops a run before its first checkpoint (a missing weights file, an image
        # size the model cannot take, a full disk, Ctrl-C, ...) leaves no half-made run folder
        # behind to be mistaken for a run, or to block its `name`.
        if not (run_dir / LAST_MODEL).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        lock.release()


def train_on_splits(
    config: Config, splits: Splits, run_dir: str | Path, log: Callable[[str], None] = print
) -> TrainResult:
    """Train ``config`` from epoch 1 on ``splits`` as given (no split of its own) into the existing
    folder ``run_dir``; ``result.model`` is the trained model. The same steps as :func:`train`, for
    callers that train several models on splits they made, such as the folds of
    ``imgai data check --label-issues``."""
    check_tensorboard(config)
    return _fit(config, splits, Path(run_dir), None, log)


def resume(
    run: str | Path,
    overrides: list[str] | tuple = (),
    runs_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    callbacks: list | None = None,
    cluster: Cluster | None = None,
) -> TrainResult:
    """Continue ``run`` from its last completed epoch, exactly where it stopped.

    ``overrides`` may only change :data:`imgai.resume.RESUMABLE_KEYS`; ``train.epochs=N``
    extends a finished run. ``callbacks``: as for :func:`train`. Any number of processes may
    continue a run (``cluster``): the order of the data depends on the seed and the epoch only;
    every process reads the run folder.
    """
    from imgai.resume import check_resume_overrides, find_run

    run_dir = find_run(run, runs_dir)
    check_resume_overrides(overrides)
    # One writer per run: a second resume (or a resume of a run still training) stops here.
    # Only process 0 writes, so only it holds the lock in a multi-process run.
    lock = RunLock(run_dir) if cluster is None or cluster.process_id == 0 else contextlib.nullcontext()
    with lock, terminate_as_interrupt():
        return _resume_locked(run_dir, overrides, log, callbacks, cluster)


def _resume_locked(
    run_dir: Path, overrides, log: Callable[[str], None], callbacks, cluster: Cluster | None
) -> TrainResult:
    from imgai.resume import TrainState, read_state

    config = load_config([run_dir / CONFIG_FILE], overrides)
    last = run_dir / LAST_MODEL
    check_tensorboard(config)
    plan, log = _plan(config, cluster, log)
    state = read_state(last) if last.is_file() else None
    if last.is_file() and state is None:
        raise ImgaiError(
            f"'{last}' holds no resume state (written by another imgai version?): start a new run instead"
        )
    state = state or TrainState()
    if state.stopped_early:
        raise ImgaiError(
            f"run '{run_dir.name}' stopped early at epoch {state.epoch} (no improvement for "
            f"{config.train.early_stopping_patience} epochs): nothing "
            f"to resume; its best model is {run_dir / BEST_MODEL}"
        )
    if state.epoch >= config.train.epochs:
        raise ImgaiError(
            f"run '{run_dir.name}' already finished {state.epoch} of {config.train.epochs} epochs: "
            f"to train longer pass train.epochs={state.epoch + 5} (any number above {state.epoch})"
        )
    splits = resolve_splits(config.data, config.seed)
    if splits.class_names != (run_dir / CLASSES_FILE).read_text(encoding="utf-8").split("\n")[:-1]:
        raise ImgaiError(
            f"the classes in the data folder changed since run '{run_dir.name}' started "
            f"(see {run_dir / CLASSES_FILE}): restore the data or start a new run"
        )
    if plan.is_writer:
        _reconcile_run(run_dir, config, state, log)
    log(f"Resuming run {run_dir.name} from epoch {state.epoch + 1} of {config.train.epochs}.")
    if state.best_value is not None:
        log(
            f"Best so far: {state.best_value:.4f} at epoch {state.best_epoch} (train.monitor {config.train.monitor})."
        )
    result = _fit(config, splits, run_dir, state if state.epoch > 0 else None, log, callbacks, plan)
    if plan.is_writer:
        _calibrate_at_end(config, splits, result, log)
        _after_training(result, config, log)
    return result


def _after_training(result: TrainResult, config: Config, log: Callable[[str], None]) -> None:
    """Draw the run's training curves into its folder and say what to run next."""
    import shlex

    from imgai.plots import plot_training_curves
    from imgai.report import CURVES_PNG

    run_dir = result.run_dir
    try:
        plot_training_curves(run_dir / HISTORY_FILE, run_dir / CURVES_PNG, result.monitor, run_dir.name)
        log(f"Training curves: {run_dir / CURVES_PNG}")
    except (ValueError, KeyError, OSError) as exc:  # a run is not failed by its picture
        log(f"Note: no training curves: {exc}")
    where = "" if Path(config.output.dir) == Path("runs") else f" --runs-dir {shlex.quote(config.output.dir)}"
    run = f"--run {shlex.quote(run_dir.name)}{where}"
    log("Next:")
    log(f"  imgai eval {run}                        # best.keras on the test split (else val): a full report")
    log(f"  imgai predict IMAGE_OR_FOLDER... {run}  # class names and probabilities for new images")


def _calibrate_at_end(
    config: Config, splits: Splits, result: TrainResult, log: Callable[[str], None]
) -> None:
    """train.calibrate: temperature scaling of best.keras on the validation split, as `imgai calibrate`."""
    from imgai.calibrate import CALIBRATED_MODEL, CALIBRATION_REPORT, calibrate_model

    if not config.train.calibrate:
        return
    if splits.val is None:
        log("train.calibrate: no validation split to fit a temperature on; not calibrated.")
        return
    run_dir = result.run_dir
    if (run_dir / CALIBRATED_MODEL).exists() or (run_dir / CALIBRATION_REPORT).exists():
        log(
            f"train.calibrate: {run_dir / CALIBRATED_MODEL} from before is kept (never overwritten); "
            f"calibrate the new best model with: imgai calibrate --model {run_dir} -o FILE.keras"
        )
        return
    try:
        calibrate_model(run_dir / BEST_MODEL, log=log)
    except ImgaiError as exc:  # the training itself succeeded: say why calibration did not
        log(f"train.calibrate: not calibrated: {exc.plain}")


def _plan(config: Config, cluster: Cluster | None, log: Callable[[str], None]) -> tuple[Plan, Callable]:
    """The distribution plan, and the log of this process: processes other than 0 say one line."""
    from imgai.distribute import plan

    chosen = plan(config, cluster, log)
    if chosen.is_writer:
        return chosen, log
    log(
        f"Process {chosen.process_id} of {chosen.num_processes}: training on its share of every batch; "
        "process 0 writes the run folder, checkpoints and logs."
    )
    return chosen, lambda text: None


def _reconcile_run(run_dir: Path, config: Config, state, log: Callable[[str], None]) -> None:
    """Bring an interrupted run folder back to its last checkpoint (process 0 only)."""
    from imgai.resume import reconcile_best, remove_temporaries, truncate_history

    stale = remove_temporaries(run_dir)
    if stale:
        log(f"Removed {len(stale)} half-written temporary file(s) left by the interrupted process.")
    dropped = truncate_history(run_dir / HISTORY_FILE, state.epoch)
    if dropped:
        log(
            f"Dropped {dropped} history row(s) after epoch {state.epoch}, "
            "the last checkpointed epoch; they are trained again."
        )
    if reconcile_best(run_dir, state):
        log(f"best.keras restored from last.keras (epoch {state.epoch}, its best).")
    atomic_write_text(run_dir / CONFIG_FILE, dump_config(config))  # keeps an extended train.epochs


def _monitor(config: Config, splits: Splits, log: Callable[[str], None]) -> tuple[str, str]:
    """(the metric best.keras, early stopping and plateaus follow; "min" or "max")."""
    train_cfg = config.train
    monitor = train_cfg.monitor
    if monitor.startswith("val_") and splits.val is None:
        log(
            f"Note: no validation data (no val/ folder and no data.validation_split), so best.keras, early stopping "
            f"and plateaus use training {monitor[4:]} instead of {monitor}."
        )
        monitor = monitor[4:]
    if train_cfg.monitor_mode != "auto":
        return monitor, train_cfg.monitor_mode
    return monitor, "min" if monitor.endswith("loss") else "max"


def _batchnorm_momentum(model, config: Config, steps_per_epoch: int, log: Callable[[str], None]) -> None:
    """model.batchnorm_momentum: auto lowers Keras's 0.99 for short epochs (models.batchnorm_momentum_for)."""
    from imgai.models import KERAS_BATCHNORM_MOMENTUM, batchnorm_momentum_for, set_batchnorm_momentum

    chosen = config.model.batchnorm_momentum
    momentum = batchnorm_momentum_for(steps_per_epoch) if chosen == "auto" else float(chosen)
    pretrained = getattr(config.model, "weights", None) is not None
    changed = set_batchnorm_momentum(model, momentum, pretrained)
    if changed and momentum != KERAS_BATCHNORM_MOMENTUM:
        why = ""
        if chosen == "auto":
            why = f" ({steps_per_epoch} steps per epoch: the moving statistics settle within one epoch)"
        log(f"BatchNorm momentum {momentum:.3f} in {changed} layer(s){why}.")


def _metrics(config: Config, num_classes: int) -> list:
    import keras

    metrics: list = ["accuracy"]
    if num_classes > 5:
        k = min(config.train.top_k, num_classes - 1)
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=k, name=f"top{k}_accuracy"))
    return metrics


def _build_model(config: Config, class_names: list[str]):
    """The model for ``config``, checked against the stages it will train."""
    from imgai.models import backbone_layers, create_model, precision_policy

    spec = DecodeSpec.from_config(config.data)
    with precision_policy(config.train.precision):
        model = create_model(
            config.model, spec.image_size, spec.channels, len(class_names), spec.interpolation
        )
    if config.train.fine_tune_after is not None and not backbone_layers(model):
        raise ImgaiError(
            f"train.fine_tune_after is set but model '{config.model.name}' has no pretrained backbone to unfreeze: "
            "choose a backbone model or leave train.fine_tune_after empty"
        )
    return model


def _compile_and_restore(
    model, config: Config, stage: str, metrics: list, run_dir: Path, state, log, weighted: bool = False
) -> float:
    """Compile for ``stage`` (the checkpoint's stage when resuming: its optimizer's variables must
    match), then load the checkpoint's weights, optimizer and random state if ``state`` is given.
    Returns the stage's peak learning rate."""
    from imgai.models import estimate_flops
    from imgai.optim import describe_optimization
    from imgai.resume import restore_rng

    if stage == "fine_tune":
        _unfreeze(model, config, log)
    peak = _compile(model, config, stage, metrics, weighted)
    if state is not None:
        # Weights and optimizer state (moments, step counter = the schedule's position).
        model.optimizer.build(model.trainable_variables)
        model.load_weights(run_dir / LAST_MODEL)
        restore_rng(model, state.rng)
    log(
        f"Model '{config.model.name}': {model.count_params():,} parameters, "
        f"{estimate_flops(model) / 1e6:,.0f} MFLOPs per image, precision {config.train.precision}."
    )
    log(f"Optimizer: {describe_optimization(config.train, peak)}.")
    return peak


def _class_weights(config: Config, train_images, class_names: list[str], log: Callable[[str], None]):
    from imgai.optim import class_weights, describe_class_weights

    weights = class_weights(config.train.class_weight, train_images.labels, class_names)
    if weights is not None:
        log(f"Class weights ({'balanced' if config.train.class_weight == 'balanced' else 'given'}):")
        log(describe_class_weights(weights, train_images.labels, class_names))
    return weights


def _batches(config: Config, train_images, val_images, num_classes: int, epoch: int, log, plan: Plan):
    """(training batches, augmented and at ``epoch``; validation batches or None). Each process
    serves its share of every global batch, split evenly over the devices (imgai.batches)."""
    from imgai.augment import augment_batches, describe

    batch = config.data.batch_size
    sharding = {"shard": plan.shard(), "multiple": plan.batch_multiple}
    train_batches = train_images.batches(
        num_classes, batch, shuffle=config.data.shuffle, seed=config.seed, epoch=epoch, **sharding
    )
    # Augmentation is its own compiled step on each training batch, never part of the model;
    # each process draws its own random changes for its share of the batch.
    augment_seed = config.seed + 1_000_003 * plan.process_id
    train_batches = augment_batches(
        train_batches, config.augment, DecodeSpec.from_config(config.data), augment_seed
    )
    log(f"Augmentation: {describe(config.augment)}.")
    val_batches = (
        val_images.batches(num_classes, batch, pad=True, **sharding)
        if val_images is not None and len(val_images)
        else None
    )
    return train_batches, val_batches


def _callbacks(
    config,
    run_dir,
    monitor,
    mode,
    class_names,
    state,
    lr_control,
    user_callbacks,
    log,
    plan,
    extra,
    steps_per_epoch,
) -> list:
    """imgai's callbacks (validation padding correction, learning rate, the watchdog, history.csv,
    checkpoints, TensorBoard), then the caller's."""
    import keras

    train_cfg = config.train
    callbacks = [
        *extra,
        lr_control,
        _make_divergence_guard(run_dir, train_cfg, lr_control),  # before anything writes the epoch
        _make_history_writer(run_dir / HISTORY_FILE, plan.is_writer),
        _make_epoch_keeper(
            run_dir, train_cfg, monitor, mode, model_metadata(config, class_names), state, log, plan
        ),
    ]
    if plan.is_writer:  # processes other than 0 stay quiet
        callbacks.append(_make_epoch_printer(log, state, train_cfg.epochs, steps_per_epoch))
    if train_cfg.tensorboard and plan.is_writer:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
        log(f"TensorBoard logs: tensorboard --logdir {run_dir / 'tensorboard'}")
    if train_cfg.early_stopping_patience:
        log(
            f"Early stopping: after {train_cfg.early_stopping_patience} epoch(s) without {monitor} improving by more "
            f"than {train_cfg.early_stopping_min_delta:g}."
        )
    return callbacks + list(user_callbacks or [])


def _run_stages(
    model, config, stages, compiled_stage, peak, metrics, state, lr_control, fit_args, log, plan, weighted
) -> None:
    """``model.fit`` for each remaining stage, switching to the fine-tune stage when it comes."""
    from imgai.optim import describe_optimization

    for stage, first, end in stages:
        if stage != compiled_stage:  # entering the fine-tune stage: fresh optimizer at a lower rate
            _unfreeze(model, config, log)
            peak = _compile(model, config, stage, metrics, weighted)
            compiled_stage = stage
            log(f"Fine-tune stage from epoch {first + 1}: {describe_optimization(config.train, peak)}.")
        state.stage = stage
        lr_control.configure(first, end - first, peak)
        model.fit(
            initial_epoch=max(first, state.epoch),
            epochs=end,
            verbose=0,  # imgai prints the epochs (_make_epoch_printer)
            **fit_args,
        )
        if state.stopped_early:
            break


def _finish(
    model, config, run_dir, state, monitor, seconds, train_images, val_images, skipped, log, writes=True
):
    """Restore the best weights after early stopping, list files found unreadable while training,
    and say where the best model is."""
    train_cfg = config.train
    if state.stopped_early:
        log(
            f"Early stopping at epoch {state.epoch}: {monitor} did not improve by more than "
            f"{train_cfg.early_stopping_min_delta:g} for {train_cfg.early_stopping_patience} epoch(s)."
        )
        if train_cfg.restore_best_weights and (run_dir / BEST_MODEL).is_file():
            model.load_weights(run_dir / BEST_MODEL)
            log(f"Restored the weights of the best epoch, {state.best_epoch}.")
    links = [item for item in skipped if item[1] == NOT_FOLLOWED]
    streamed_skipped = links + train_images.skipped + (val_images.skipped if val_images is not None else [])
    if len(streamed_skipped) > len(skipped) and writes:  # data.cache=none: found while training
        write_skipped(run_dir / SKIPPED_FILE, streamed_skipped)
        log(
            f"Skipped {len(streamed_skipped)} unreadable file(s) while training; listed in {run_dir / SKIPPED_FILE}"
        )
    result = TrainResult(
        run_dir=run_dir,
        best_epoch=state.best_epoch,
        best_value=state.best_value if state.best_value is not None else float("nan"),
        monitor=monitor,
        epochs_run=state.epoch,
        seconds=seconds,
        stopped_early=state.stopped_early,
        model=model,
    )
    log(
        f"Done in {seconds:.0f} s. Best epoch {result.best_epoch}/{result.epochs_run}: "
        f"{monitor} {result.best_value:.4f}. Best model: {result.best_model}"
    )
    return result


def _fit(
    config: Config,
    splits: Splits,
    run_dir: Path,
    state,
    log: Callable[[str], None],
    user_callbacks: list | None = None,
    plan: Plan | None = None,
) -> TrainResult:
    """:func:`_fit_in_scope` inside the distribution's scope, watched when several processes run."""
    from imgai.distribute import Watchdog

    plan = plan or Plan()
    with plan.scope():
        if not plan.multi_process:
            return _fit_in_scope(config, splits, run_dir, state, log, user_callbacks, plan, [])
        watchdog = Watchdog(plan)
        with watchdog.running():
            return _fit_in_scope(
                config, splits, run_dir, state, log, user_callbacks, plan, [watchdog.callback()]
            )


def _fit_in_scope(
    config: Config, splits: Splits, run_dir: Path, state, log, user_callbacks, plan: Plan, extra: list
) -> TrainResult:
    """Decode, build, (re)load, train the remaining stages. ``state`` None = from epoch 1."""
    import numpy as np

    from imgai.distribute import padding_correction
    from imgai.resume import TrainState

    class_names = splits.class_names
    check_monitor(config.train.monitor, splits.val is not None, plan.multi_process)
    monitor, mode = _monitor(config, splits, log)
    log(f"Found {len(class_names)} classes:")
    log(describe_splits(splits))
    train_images, val_images, skipped = _decode_splits(splits, config, run_dir, log, plan)
    for warning in training_warnings(splits, train_images, val_images):
        log(warning)

    resuming = state is not None
    state = state or TrainState()
    _seed_everything(config, log)
    stages = [s for s in _stages(config) if s[2] > state.epoch]
    model = _build_model(config, class_names)
    steps_per_epoch = math.ceil(len(train_images) / config.data.batch_size)
    _batchnorm_momentum(model, config, steps_per_epoch, log)
    metrics = _metrics(config, len(class_names))
    # The loop in _run_stages switches stage when needed.
    compiled_stage = state.stage if resuming else stages[0][0]
    # Validation padded to split over the devices scores the padding with weight 0; the metrics
    # must honour that (unless class weights are on: they would weigh the training metrics too).
    batch = config.data.batch_size
    weighted = (
        val_images is not None
        and (len(val_images) % batch) % plan.batch_multiple != 0
        and config.train.class_weight is None
    )
    peak = _compile_and_restore(
        model, config, compiled_stage, metrics, run_dir, state if resuming else None, log, weighted
    )
    weights = _class_weights(config, train_images, class_names, log)

    train_batches, val_batches = _batches(
        config, train_images, val_images, len(class_names), state.epoch, log, plan
    )
    correction = padding_correction(len(val_images), batch, plan.batch_multiple) if val_batches else None
    extra = [correction, *extra] if correction else extra
    lr_control = _make_learning_rate_control(config.train, len(train_batches), state, train_batches)
    watch = None
    if val_batches is not None and not plan.multi_process:
        watch = make_validation_watch(
            val_batches,
            np.bincount(np.asarray(val_images.labels), minlength=len(class_names)).tolist(),
            class_names,
            compute_scores=config.train.monitor in PER_CLASS_MONITORS,
            steps_per_epoch=len(train_batches),
            log=log,
        )
        extra = [*extra, watch]  # after the padding correction, before anything reads the logs
    callbacks = _callbacks(
        config,
        run_dir,
        monitor,
        mode,
        class_names,
        state,
        lr_control,
        user_callbacks,
        log,
        plan,
        extra,
        len(train_batches),
    )
    epochs = config.train.epochs
    remaining = (
        f"{epochs - state.epoch} more epoch(s), {state.epoch + 1} to {epochs},"
        if state.epoch
        else f"{epochs} epoch(s)"
    )
    log(
        f"Training for {remaining} on {len(train_images)} images, batch size {config.data.batch_size} "
        "(* best: the epoch wrote best.keras)."
    )
    if plan.engine != "none":
        log(f"Distribution: {plan.describe()}; {batch // plan.replicas} images per device per step.")
        cut = (len(train_images) % batch) % plan.batch_multiple
        if cut:
            log(
                f"Note: {cut} image(s) of each epoch's last, smaller batch sit out that epoch so that it "
                f"splits evenly over {plan.replicas} devices (other images each epoch)."
            )
    fit_args = {
        "x": train_batches,
        # The batches are already shuffled, by (seed, epoch) alone. Keras's own shuffle would also
        # reorder them with Python's global generator, which JAX's fit draws from once more when it
        # peeks at a batch to build the model: a resumed run would see another order than the
        # run that never stopped, and the processes of a run could disagree.
        "shuffle": False,
        "validation_data": val_batches,
        "callbacks": callbacks,
        "class_weight": weights,
    }
    start = time.perf_counter()
    try:
        _run_stages(
            model,
            config,
            stages,
            compiled_stage,
            peak,
            metrics,
            state,
            lr_control,
            fit_args,
            log,
            plan,
            weighted,
        )
    except KeyboardInterrupt as exc:
        from imgai.resume import read_state

        # What is on disk, not what the epoch counter says: Ctrl-C may land inside the first save.
        saved = read_state(run_dir / LAST_MODEL) if (run_dir / LAST_MODEL).is_file() else None
        why = "Stopped (SIGTERM)" if isinstance(exc, Terminated) else "Interrupted"
        if saved is not None and saved.epoch > 0:
            log(f"\n{why} with {saved.epoch} epoch(s) saved. Continue with: imgai train --resume {run_dir}")
        else:
            log(f"\n{why} before the first epoch was saved: nothing to resume.")
        exc.imgai_reported = True  # the CLI adds no second "Interrupted." line
        raise
    except OSError as exc:  # a full disk or a vanished folder while writing a checkpoint or history
        from imgai.resume import read_state

        saved = read_state(run_dir / LAST_MODEL) if (run_dir / LAST_MODEL).is_file() else None
        done = saved.epoch if saved is not None else 0
        after = (
            f"{done} epoch(s) are saved; free space, then continue with: imgai train --resume {run_dir}"
            if done
            else "nothing was saved"
        )
        raise ImgaiError(f"training stopped: {describe_os_error(exc)}; {after}", exit_code=1) from None
    seconds = time.perf_counter() - start
    closing = watch.summary(state.best_epoch, state.epoch) if watch is not None else None
    if closing:
        log(closing)
    return _finish(
        model,
        config,
        run_dir,
        state,
        monitor,
        seconds,
        train_images,
        val_images,
        skipped,
        log,
        plan.is_writer,
    )
