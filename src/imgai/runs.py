"""Run folders: where they live, how they are named, which one is the latest, safe writes.

A run folder ``<output.dir>/<name>/`` holds everything one training produced::

    config.yaml    the resolved configuration (enough to reproduce the run)
    classes.txt    class names, one per line, in label order
    skipped.txt    files that could not be read, with the reason (only if there were any)
    best.keras     the checkpoint with the best monitored metric
    last.keras     the checkpoint after the last completed epoch
    history.csv    one row per epoch
    metrics.json   written by ``imgai eval``

Runs are never overwritten: names are auto-numbered (run1, run2, ...) or chosen with ``--name``,
and an existing name is an error. Files are written to a temporary name and renamed into place,
so a crash never leaves a half-written checkpoint or config behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from imgai.errors import ImgaiError

BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.csv"
SKIPPED_FILE = "skipped.txt"
CLASSES_FILE = "classes.txt"
METRICS_FILE = "metrics.json"

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def describe_os_error(exc: OSError) -> str:
    """ "No space left on device (runs/a/last.keras)": the reason and the path, for one error line."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return f"{exc.strerror or exc}{where}"


def create_run_dir(runs_dir: str | Path, name: str | None = None) -> Path:
    """Create and return a new, empty run folder. Never reuses an existing one."""
    if "\0" in str(runs_dir):
        raise ImgaiError("output.dir holds a NUL character: give a plain folder path")
    if Path(runs_dir).exists() and not Path(runs_dir).is_dir():
        raise ImgaiError(f"output.dir='{runs_dir}' is a file, not a folder: choose a folder for the runs")
    try:
        return _create_run_dir(Path(runs_dir), name)
    except OSError as exc:
        raise ImgaiError(
            f"cannot create a run folder under output.dir='{runs_dir}': {describe_os_error(exc)}; "
            "choose a writable folder (output.dir=...)"
        ) from None


def _create_run_dir(runs_dir: Path, name: str | None) -> Path:
    if name is not None:
        if not _NAME_OK.match(name):
            raise ImgaiError(
                f"run name '{name}' is not allowed: use letters, digits, '.', '_' or '-' (e.g. `name` flowers-v2)"
            )
        path = runs_dir / name
        runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise ImgaiError(
                f"run folder '{path}' already exists and is never overwritten: choose another `name`"
            ) from None
        return path
    runs_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in runs_dir.iterdir() if (m := re.fullmatch(r"run(\d+)", p.name))]
    number = max(taken, default=0) + 1
    while True:  # another process may have taken the number meanwhile
        path = runs_dir / f"run{number}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def default_runs_dir() -> Path:
    """``output.dir`` as the schema sets it (where runs are looked for when nothing says else)."""
    from imgai.config import OutputConfig

    return Path(OutputConfig().dir)


def latest_run(runs_dir: str | Path | None = None) -> Path:
    """The run folder whose best checkpoint was written last."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    candidates = [p for p in runs_dir.glob(f"*/{BEST_MODEL}") if p.is_file()] if runs_dir.is_dir() else []
    if not candidates:
        where = runs_dir if runs_dir.is_absolute() else f"{runs_dir}/' in '{Path.cwd()}"
        raise ImgaiError(
            f"no trained model found under '{where}': pass `model_path` (a .keras file or run folder) or "
            "`runs_dir` (the folder of the runs), or train one with 'imgai train --config FILE'"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime).parent


def resolve_model_path(
    model: str | Path | None, run: str | None = None, runs_dir: str | Path | None = None
) -> Path:
    """``model`` (a .keras file or run folder), else run ``run``'s best model (a name under
    ``runs_dir`` first, else a run folder), else the latest run's best model; ``runs_dir`` defaults
    to ``output.dir``."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if model is not None:
        path = Path(model)
        if path.is_dir() and (path / "saved_model.pb").is_file():  # an exported SavedModel
            return path
        if path.is_dir():  # a run folder is accepted in place of its best checkpoint
            path = path / BEST_MODEL
        if not path.is_file():
            raise ImgaiError(
                f"model file '{path}' not found: pass a .keras file or a run folder as `model_path`"
            )
        return path
    if run is not None:
        # A run name means the run, even when the current folder holds a data folder of that name.
        under_runs = Path(runs_dir) / run
        run_path = under_runs if under_runs.is_dir() or not Path(run).is_dir() else Path(run)
        path = run_path / BEST_MODEL
        if not path.is_file():
            raise ImgaiError(
                f"run `run` '{run}' has no {BEST_MODEL} (looked for '{path}'): check the name with 'ls {runs_dir}'"
            )
        return path
    return latest_run(runs_dir) / BEST_MODEL


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """Yield a temporary path next to ``path`` to write to; when the block ends without an error
    it is renamed onto ``path`` (atomic on one file system), otherwise it is removed. Every file
    imgai writes into a run goes through here, so a crash never leaves a half-written one."""
    path = Path(path)
    tmp = temporary_sibling(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def temporary_sibling(path: str | Path, suffix: str = "") -> Path:
    """A unique temporary path next to ``path`` (same file system, so rename is atomic)."""
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{suffix}"
        try:
            # Created as open(..., "w") would: the umask decides the mode (0644 under umask 022),
            # where mkstemp's 0600 would survive the rename and lock teammates and CI uploads out.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
