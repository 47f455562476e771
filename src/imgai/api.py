"""The Python API: what ``from imgai import ...`` gives, for notebooks and scripts.

Each function takes the same settings as the command of the same name, in the library's words
(``model``, ``data``, ``train={"epochs": 3}``), keeps framework logs quiet (``IMGAI_VERBOSE=1``
shows them), and returns a dataclass rather than printing only. Mistakes raise
:class:`imgai.errors.ImgaiError` with one line naming the parameter or config key.

Config overrides come as keyword sections, dotted strings, or both::

    train("configs/cnn.yaml", train={"epochs": 3}, data={"root": "photos"})
    train("configs/cnn.yaml", overrides=["train.epochs=3"])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgai.config import Config, apply_overrides, build_config, deep_merge, read_yaml
from imgai.errors import ImgaiError
from imgai.modelfile import LoadedModel, ModelInfo
from imgai.train import TrainResult

PathLike = str | Path
ConfigLike = PathLike | Iterable[PathLike] | dict | Config | None


def _keras():
    """Keras, imported with framework start-up noise hidden (as the CLI does)."""
    from imgai.quiet import import_keras, silence_frameworks

    silence_frameworks()
    return import_keras()


def load_config(config: ConfigLike = None, overrides: Iterable[str] = (), **sections: Any) -> Config:
    """A validated :class:`Config` from a YAML file (or several, later ones win), a mapping or a
    Config, with ``sections`` (``train={"epochs": 3}``, ``seed=1``) and dotted ``overrides``
    (``"train.epochs=3"``) applied in that order. With nothing given: every default."""
    if isinstance(config, Config):
        data = config.to_dict()
    elif isinstance(config, dict):
        data = copy.deepcopy(config)
    else:
        files = [] if config is None else [config] if isinstance(config, (str, Path)) else list(config)
        data = {}
        for path in files:
            data = deep_merge(data, read_yaml(path))
    data = deep_merge(data, sections)
    return build_config(apply_overrides(data, list(overrides)))


def train(
    config: ConfigLike = None,
    *,
    name: str | None = None,
    callbacks: list | None = None,
    overrides: Iterable[str] = (),
    log: Callable[[str], None] = print,
    **sections: Any,
) -> TrainResult:
    """Train into a new run folder under ``output.dir``; ``callbacks`` (Keras callbacks) are passed
    to ``model.fit``. Returns where the best model is, its epoch and value, and the model."""
    settings = load_config(config, overrides, **sections)  # config mistakes before the heavy import
    _keras()
    from imgai.train import train as run_training

    return run_training(settings, name=name, log=log, callbacks=callbacks)


def resume(
    run: PathLike,
    *,
    epochs: int | None = None,
    overrides: Iterable[str] = (),
    callbacks: list | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Continue ``run`` (a run folder, or a name under ``output.dir``) from its last completed epoch;
    ``epochs`` extends a finished run."""
    from imgai.resume import check_resume_overrides, find_run

    overrides = list(overrides) + ([f"train.epochs={epochs}"] if epochs is not None else [])
    run_dir = find_run(run)
    check_resume_overrides(overrides)
    _keras()
    from imgai.train import resume as run_resume

    return run_resume(run_dir, overrides, log=log, callbacks=callbacks)


def load_model(model: PathLike | None = None, *, run: str | None = None, runs_dir: PathLike | None = None):
    """``(model, info)`` from a .keras file or run folder, else run ``run``'s best model, else the
    latest run's (see :class:`imgai.modelfile.ModelInfo`)."""
    from imgai.modelfile import load_model as load
    from imgai.runs import resolve_model_path

    path = resolve_model_path(model, run, runs_dir)
    _keras()
    return load(path)


def _loaded(model, run, runs_dir) -> LoadedModel:
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[1], ModelInfo):
        return LoadedModel(*model)
    return load_model(model, run=run, runs_dir=runs_dir)


@dataclass
class EvalResult:
    """What :func:`evaluate` measured, and where the report went."""

    metrics: dict = field(repr=False)
    report_dir: Path
    passed: bool | None  # the quality gate's verdict; None without a gate

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    @property
    def loss(self) -> float:
        return self.metrics["loss"]

    @property
    def per_class(self) -> dict:
        return self.metrics["per_class"]

    @property
    def checks(self) -> list[dict]:
        return self.metrics.get("gate", {}).get("checks", [])


def evaluate(
    model: PathLike | None = None,
    data: PathLike | None = None,
    *,
    run: str | None = None,
    runs_dir: PathLike | None = None,
    config: PathLike | Iterable[PathLike] = (),
    output_dir: PathLike | None = None,
    batch_size: int | None = None,
    top_k: int | None = None,
    fail_under: dict[str, float] | None = None,
    fail_over: dict[str, float] | None = None,
    min_class_recall: float | None = None,
    baseline: PathLike | None = None,
    max_drop: dict[str, float] | None = None,
    tta: str | None = None,
    log: Callable[[str], None] = print,
) -> EvalResult:
    """Score a model (a .keras file or run folder; default: the latest run's best) on ``data`` (a
    folder of class sub-folders; default: its run's test split, else validation split), write the
    report beside it (or into ``output_dir``) and run the quality gate: the run's and ``config``'s
    ``eval`` sections, then the bounds given here. ``tta``: test-time augmentation (none, flip,
    flip+crops; default ``infer.tta``), with the accuracy without it in ``metrics["tta"]``."""
    from imgai.evaluate import eval_settings
    from imgai.evaluate import evaluate as score
    from imgai.runs import resolve_model_path

    files = [config] if isinstance(config, (str, Path)) else list(config)
    path = resolve_model_path(model, run, runs_dir)
    settings = eval_settings(
        path,
        files,
        batch_size=batch_size,
        top_k=top_k,
        fail_under=fail_under,
        fail_over=fail_over,
        min_class_recall=min_class_recall,
        baseline=None if baseline is None else str(baseline),
        max_drop=max_drop,
        tta=tta,
    )
    _keras()
    metrics = score(
        path,
        data,
        batch_size=settings.infer.batch_size,
        log=log,
        output_dir=output_dir,
        gate=settings.eval,
        tta=settings.infer.tta,
    )
    gate = metrics.get("gate")
    report_dir = Path(output_dir) if output_dir is not None else path.parent
    return EvalResult(metrics, report_dir, None if gate is None else gate["passed"])


def calibrate(
    model: PathLike | None = None,
    *,
    run: str | None = None,
    runs_dir: PathLike | None = None,
    target_accuracy: float | None = None,
    output: PathLike | None = None,
    log: Callable[[str], None] = print,
):
    """Fit a temperature on the validation split of ``model``'s run (a .keras file or run folder;
    default: the latest run's best) and write a calibrated copy, ``calibrated.keras`` beside it (or
    ``output``), with ``calibration.json``. ``target_accuracy``: also store the smallest confidence
    threshold that reaches it on validation as the model's ``min_confidence``. Returns a
    :class:`imgai.calibrate.CalibrationResult` (temperature, ECE before and after, ...)."""
    from imgai.calibrate import calibrate_model, check_run_data, check_target_accuracy, output_paths
    from imgai.runs import resolve_model_path

    path = resolve_model_path(model, run, runs_dir)
    check_target_accuracy(target_accuracy)
    output_paths(path, output)  # mistakes before the heavy import
    check_run_data(path)
    _keras()
    return calibrate_model(path, target_accuracy=target_accuracy, output=output, log=log)


@dataclass
class Prediction:
    """One image's classes, most likely first (``top``), or why it could not be read (``error``)."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict, repr=False)
    error: str | None = None

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None


def predict(
    images: PathLike | Iterable[PathLike],
    model=None,
    *,
    run: str | None = None,
    runs_dir: PathLike | None = None,
    top_k: int | None = None,
    batch_size: int | None = None,
    tta: str | None = None,
) -> list[Prediction]:
    """Predict image files, folders (recursively) or glob patterns with ``model`` (a path, or what
    :func:`load_model` returned, to load it once for many calls). One Prediction per file, in order.
    ``tta``: test-time augmentation, none (default), flip or flip+crops (:mod:`imgai.tta`)."""
    from imgai.config import InferConfig
    from imgai.predict import iter_prediction_rows
    from imgai.tta import TTA_MODES, with_tta

    if tta is not None and tta not in TTA_MODES:
        raise ImgaiError(f"`tta` must be one of {', '.join(TTA_MODES)}, not {tta!r}")
    infer = InferConfig() if tta is None else InferConfig(tta=tta)
    model, info = _loaded(model, run, runs_dir)
    model = with_tta(model, infer.tta, info.interpolation)
    inputs = [str(images)] if isinstance(images, (str, Path)) else [str(i) for i in images]
    k = top_k or infer.top_k
    names = list(info.class_names)
    return [
        Prediction(
            row.path,
            row.top(names, k),
            {} if row.probabilities is None else dict(zip(names, map(float, row.probabilities))),
            row.error,
        )
        for row in iter_prediction_rows(model, info, inputs, batch_size or infer.batch_size, infer.workers)
    ]


@dataclass
class ExplainResult:
    """A Grad-CAM explanation written to ``output``."""

    image: str
    output: str
    predicted: str
    probability: float
    explained: str
    explained_probability: float
    layer: str
    note: str | None = None  # e.g. the last feature map was coarse and a finer layer was read


def explain(
    image: PathLike,
    model=None,
    *,
    output: PathLike | None = None,
    class_name: str | None = None,
    layer: str | None = None,
    run: str | None = None,
    runs_dir: PathLike | None = None,
) -> ExplainResult:
    """Write a Grad-CAM heat map of ``image`` for the predicted class (or ``class_name``) to
    ``output`` (default: IMAGE-NAME_gradcam.png in ``explain.output_dir``)."""
    from imgai.config import ExplainConfig
    from imgai.explain import explain_file

    settings = ExplainConfig()
    target = (
        Path(output) if output is not None else Path(settings.output_dir) / f"{Path(image).stem}_gradcam.png"
    )
    if not target.parent.is_dir():
        raise ImgaiError(f"cannot write '{target}': folder '{target.parent}' does not exist (`output`)")
    model, info = _loaded(model, run, runs_dir)
    result = explain_file(model, info, image, target, class_name=class_name, layer=layer or settings.layer)
    return ExplainResult(**result)


__all__ = [
    "Config",
    "EvalResult",
    "ExplainResult",
    "ImgaiError",
    "LoadedModel",
    "ModelInfo",
    "Prediction",
    "TrainResult",
    "calibrate",
    "evaluate",
    "explain",
    "load_config",
    "load_model",
    "predict",
    "resume",
    "train",
]
