"""Optimization: the optimizer, the learning-rate schedule, the loss and class weights.

The schedule is plain arithmetic in :func:`learning_rate_at`, applied step by step by a callback
in :mod:`imgai.train` to the optimizer's learning-rate variable. So a saved model holds only a
built-in Keras optimizer (it loads in plain Keras), and the schedule's position is the step
counter that resume restores anyway.
"""

from __future__ import annotations

import math

import numpy as np

from imgai.errors import ImgaiError


def learning_rate_at(step: int, steps_per_epoch: int, stage_epochs: int, peak: float, train_cfg) -> float:
    """Learning rate for ``step`` (0-based, counted from the start of the training stage).

    ``stage_epochs`` is the length of the stage (the whole run, or the part before / after the
    fine-tune point), over which cosine decays. Warmup rises linearly to ``peak`` first.
    """
    warmup = int(round(train_cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return peak * (step + 1) / warmup
    t = step - warmup
    kind = train_cfg.schedule
    if kind == "constant":
        return peak
    if kind == "cosine":
        total = max(1, stage_epochs * steps_per_epoch - warmup)
        floor = min(train_cfg.min_learning_rate, peak)
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t / total, 1.0)))
    decays = t / (train_cfg.decay_epochs * steps_per_epoch)
    if kind == "step":
        decays = math.floor(decays)
    return peak * train_cfg.decay_factor**decays


def build_optimizer(train_cfg, learning_rate: float):
    """A built-in Keras optimizer from the train section (learning rate set per step later)."""
    import keras

    kwargs: dict = {"learning_rate": learning_rate}
    decay = train_cfg.weight_decay  # the config resolves empty to AdamW's default or 0
    if decay or train_cfg.optimizer == "adamw":
        kwargs["weight_decay"] = decay
    if train_cfg.gradient_clip_norm is not None:
        kwargs["global_clipnorm"] = train_cfg.gradient_clip_norm
    if train_cfg.gradient_clip_value is not None:
        kwargs["clipvalue"] = train_cfg.gradient_clip_value
    name = train_cfg.optimizer
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamw":
        return keras.optimizers.AdamW(**kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=train_cfg.momentum, nesterov=train_cfg.nesterov, **kwargs)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(momentum=train_cfg.momentum, **kwargs)
    raise ImgaiError(f"unknown optimizer '{name}': choose adam, adamw, sgd or rmsprop")


def build_loss(train_cfg):
    import keras

    return keras.losses.CategoricalCrossentropy(label_smoothing=train_cfg.label_smoothing)


def describe_optimization(train_cfg, peak: float | None = None) -> str:
    """One line saying which optimizer, schedule and regularisation are used."""
    peak = train_cfg.learning_rate if peak is None else peak
    parts = [train_cfg.optimizer]
    decay = train_cfg.weight_decay
    if decay:
        parts.append(f"weight decay {decay:g}")
    if train_cfg.optimizer in ("sgd", "rmsprop"):
        parts.append(
            f"momentum {train_cfg.momentum:g}"
            + (" (nesterov)" if train_cfg.nesterov and train_cfg.optimizer == "sgd" else "")
        )
    schedule = {
        "constant": f"constant learning rate {peak:g}",
        "cosine": f"cosine schedule from {peak:g} to {min(train_cfg.min_learning_rate, peak):g}",
        "step": f"step schedule from {peak:g}, x{train_cfg.decay_factor:g} every {train_cfg.decay_epochs:g} epochs",
        "exponential": f"exponential schedule from {peak:g}, "
        "x{train_cfg.decay_factor:g} per {train_cfg.decay_epochs:g} epochs",
    }[train_cfg.schedule]
    if train_cfg.warmup_epochs:
        schedule += f" after {train_cfg.warmup_epochs:g} warmup epoch(s)"
    parts.append(schedule)
    if train_cfg.plateau_patience:
        parts.append(
            f"x{train_cfg.plateau_factor:g} after {train_cfg.plateau_patience} epoch(s) on a plateau"
        )
    if train_cfg.label_smoothing:
        parts.append(f"label smoothing {train_cfg.label_smoothing:g}")
    if train_cfg.gradient_clip_norm is not None:
        parts.append(f"gradients clipped to global norm {train_cfg.gradient_clip_norm:g}")
    if train_cfg.gradient_clip_value is not None:
        parts.append(f"gradients clipped to +-{train_cfg.gradient_clip_value:g}")
    return ", ".join(parts)


def class_weights(setting, labels: np.ndarray, class_names: list[str]) -> dict[int, float] | None:
    """``train.class_weight`` as Keras wants it: {label index: weight}; None when unset."""
    if setting is None:
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    if setting == "balanced":
        empty = [name for name, n in zip(class_names, counts) if n == 0]
        if empty:
            raise ImgaiError(
                f"class_weight: balanced needs training images of every class; none for {', '.join(empty)}: "
                "add images or give weights by name"
            )
        total = counts.sum()
        return {i: float(total / (len(class_names) * n)) for i, n in enumerate(counts)}
    unknown = sorted(set(setting) - set(class_names))
    if unknown:
        raise ImgaiError(
            f"train.class_weight names unknown class(es) {', '.join(unknown)}: the classes are {', '.join(class_names)}"
        )
    return {i: float(setting.get(name, 1.0)) for i, name in enumerate(class_names)}


def describe_class_weights(weights: dict[int, float], labels: np.ndarray, class_names: list[str]) -> str:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    width = max(len(n) for n in class_names + ["class"])
    rows = [f"  {'class':<{width}}  {'images':>8}  {'weight':>8}"]
    rows += [f"  {name:<{width}}  {counts[i]:>8}  {weights[i]:>8.3f}" for i, name in enumerate(class_names)]
    return "\n".join(rows)
