"""Exact resume: the state a run needs to continue as if it had never stopped.

The state lives inside ``last.keras`` (archive member ``imgai_resume.json``), written in the same
atomic save as the weights and the optimizer, so the two can never disagree. It holds the number
of completed epochs, the training stage, the best monitored value so far, early-stopping and
plateau counters, and the random-number generators' states. The shuffling order needs no state:
it is derived from ``(seed, epoch)`` (see :mod:`imgai.batches`; ``model.fit`` gets
``shuffle=False``, as Keras would reorder the batches with Python's generator, which JAX's ``fit``
also draws from at its start), and the learning-rate schedule's
position is the optimizer's step counter, saved with the optimizer.

On resume, ``history.csv`` loses any row beyond the checkpoint's epoch (an epoch that finished
after the last checkpoint was written is trained again), and ``best.keras`` is re-derived from
``last.keras`` when the process died between writing the two.
"""

from __future__ import annotations

import json
import random
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgai.backend import global_seed_generator
from imgai.errors import ImgaiError
from imgai.runs import BEST_MODEL, CONFIG_FILE, LAST_MODEL, atomic_path, atomic_write_text, default_runs_dir

RESUME_MEMBER = "imgai_resume.json"

# Overrides that do not change what the finished epochs mean.
RESUMABLE_KEYS = ("train.epochs", "train.tensorboard", "data.workers")


@dataclass
class TrainState:
    """Everything beyond weights and optimizer that a run carries from epoch to epoch."""

    epoch: int = 0  # completed epochs
    stage: str = "train"  # "train", or "fine_tune" once the backbone is unfrozen
    best_value: float | None = None
    best_epoch: int = 0
    stop_best: float | None = None  # early stopping: best value (min_delta-aware) and epochs since
    stop_wait: int = 0
    stopped_early: bool = False
    plateau_best: float | None = None
    plateau_wait: int = 0
    lr_scale: float = 1.0  # product of plateau reductions
    rng: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainState:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def read_state(path: str | Path) -> TrainState | None:
    """The resume state stored in a checkpoint, or None if it has none (or is unreadable)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if RESUME_MEMBER in archive.namelist():
                return TrainState.from_json(archive.read(RESUME_MEMBER).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, TypeError):
        pass
    return None


def describe_model(path: str | Path) -> str:
    """ "Using runs/run3/best.keras (run run3, best val_accuracy 0.9100 at epoch 14)": which model a
    command answers with, so two experiments are never confused. Reads only the checkpoint's
    small members and the run's config.yaml (no framework import)."""
    path = Path(path)
    line = f"Using {path}"
    run_dir = path.parent
    state = read_state(path) if path.is_file() and path.suffix == ".keras" else None
    if not (run_dir / CONFIG_FILE).is_file() or state is None:
        return line
    monitor = _monitor_of(run_dir)
    about = [f"run {run_dir.name}"]
    if state.best_value is not None:
        best = f"best {monitor} {state.best_value:.4f} at epoch {state.best_epoch}"
        about.append(best if path.name == BEST_MODEL else f"epoch {state.epoch}; {best}")
    return f"{line} ({', '.join(about)})"


def _monitor_of(run_dir: Path) -> str:
    from imgai.config import TrainConfig, read_yaml

    try:
        train = read_yaml(run_dir / CONFIG_FILE).get("train") or {}
        monitor = train.get("monitor") if isinstance(train, dict) else None
    except ImgaiError:
        monitor = None
    return monitor if isinstance(monitor, str) else TrainConfig().monitor


def copy_atomically(source: Path, target: Path) -> None:
    with atomic_path(target, suffix=target.suffix) as tmp:
        shutil.copyfile(source, tmp)


# ----------------------------------------------------------------------------- the run folder


def find_run(run: str | Path, runs_dir: str | Path | None = None) -> Path:
    """``--resume`` accepts a run folder or a run name under ``runs_dir``."""
    path = Path(run)
    if not path.is_dir() and len(path.parts) == 1:  # a bare name: look under runs_dir
        path = Path(runs_dir if runs_dir is not None else default_runs_dir()) / run
    if not path.is_dir():
        raise ImgaiError(
            f"run '{run}' not found (looked for folder '{path}'): pass a run folder such as runs/run1"
        )
    if not (path / CONFIG_FILE).is_file():
        raise ImgaiError(
            f"'{path}' is not an imgai run folder (no {CONFIG_FILE}): pass the folder 'imgai train' created"
        )
    return path


def check_resume_overrides(overrides: list[str] | tuple) -> None:
    """Only settings that keep the finished epochs valid may change on resume."""
    from imgai.config import parse_override

    for text in overrides:
        path, _ = parse_override(text)
        key = ".".join(path)
        if key not in RESUMABLE_KEYS:
            raise ImgaiError(
                f"'{key}' cannot change when resuming (allowed: {', '.join(RESUMABLE_KEYS)}): to train with "
                f"other settings start a new run, e.g. from `config` RUN/config.yaml with {text}"
            )


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete half-written files (``.<name>.<random>.tmp*``) a killed process left behind."""
    stale = [p for p in run_dir.glob(".*.tmp*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def truncate_history(path: Path, epochs: int) -> int:
    """Keep the header and the rows of epochs 1..``epochs`` (complete rows only); returns how
    many rows were dropped. With ``epochs`` = 0 the file is removed."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    if epochs <= 0 or not lines:
        path.unlink()
        return max(0, len(lines) - 1)
    header, rows = lines[0], lines[1:]
    width = len(header.split(","))
    kept = []
    for row in rows:
        parts = row.split(",")
        if len(parts) == width and parts[0].isdigit() and 1 <= int(parts[0]) <= epochs:
            kept.append(row)
    if len(kept) != len(rows):
        atomic_write_text(path, "\n".join([header, *kept]) + "\n")
    return len(rows) - len(kept)


def reconcile_best(run_dir: Path, state: TrainState) -> bool:
    """``best.keras`` is written right after ``last.keras``; if the process died in between,
    the best epoch is the checkpointed one, so copy it. Returns whether a copy was made."""
    last, best = run_dir / LAST_MODEL, run_dir / BEST_MODEL
    if state.best_epoch != state.epoch or state.epoch == 0:
        return False
    best_state = read_state(best) if best.is_file() else None
    if best_state is not None and best_state.epoch == state.epoch:
        return False
    copy_atomically(last, best)
    return True


# ------------------------------------------------------------------------------- random state


def _seed_generator_variables(model) -> list:
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def capture_rng(model) -> dict[str, Any]:
    """Python's, NumPy's and Keras' generators (the model's dropout and augmentation layers and
    the global one), as JSON-friendly lists."""
    import keras

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "seed_generators": [
            keras.ops.convert_to_numpy(v.value).tolist() for v in _seed_generator_variables(model)
        ],
    }
    generator = global_seed_generator()
    if generator is not None:
        state["keras_global"] = keras.ops.convert_to_numpy(generator.state.value).tolist()
    return state


def restore_rng(model, state: dict[str, Any]) -> None:
    if not state:
        return
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    variables = _seed_generator_variables(model)
    saved = state.get("seed_generators", [])
    if len(saved) == len(variables):  # same architecture, so the same generators in the same order
        for variable, value in zip(variables, saved):
            variable.assign(np.asarray(value, dtype=variable.dtype))
    if "keras_global" in state:
        generator = global_seed_generator(create=True)
        generator.state.assign(np.asarray(state["keras_global"], dtype=generator.state.dtype))
