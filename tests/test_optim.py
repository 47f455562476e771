"""Optimizers, schedules, loss and class weights from the train section."""

import math

import numpy as np
import pytest

from imgai.config import load_config
from imgai.errors import ImgaiError
from imgai.optim import (
    build_loss,
    build_optimizer,
    class_weights,
    describe_class_weights,
    describe_optimization,
    learning_rate_at,
)


def train_cfg(*overrides):
    return load_config([], list(overrides)).train


def test_constant_schedule_with_linear_warmup():
    cfg = train_cfg("train.schedule=constant", "train.warmup_epochs=1")
    rates = [learning_rate_at(step, 4, 3, 0.1, cfg) for step in range(8)]
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert rates[4:] == pytest.approx([0.1] * 4)


def test_cosine_decays_to_min_learning_rate_over_the_stage():
    cfg = train_cfg("train.schedule=cosine", "train.min_learning_rate=0.01")
    steps_per_epoch, epochs = 5, 4
    assert learning_rate_at(0, steps_per_epoch, epochs, 0.1, cfg) == pytest.approx(0.1)
    assert learning_rate_at(10, steps_per_epoch, epochs, 0.1, cfg) == pytest.approx(
        0.01 + 0.09 * 0.5
    )  # halfway
    assert learning_rate_at(20, steps_per_epoch, epochs, 0.1, cfg) == pytest.approx(0.01)
    assert learning_rate_at(99, steps_per_epoch, epochs, 0.1, cfg) == pytest.approx(0.01)  # never below


def test_cosine_after_warmup_starts_at_the_peak():
    cfg = train_cfg("train.schedule=cosine", "train.warmup_epochs=2")
    assert learning_rate_at(9, 5, 10, 1.0, cfg) == pytest.approx(1.0)  # last warmup step
    assert learning_rate_at(10, 5, 10, 1.0, cfg) == pytest.approx(1.0)  # cosine begins at the peak
    assert learning_rate_at(30, 5, 10, 1.0, cfg) == pytest.approx(
        0.5
    )  # halfway through the remaining 40 steps


def test_step_and_exponential_schedules():
    step = train_cfg("train.schedule=step", "train.decay_epochs=2", "train.decay_factor=0.5")
    expo = train_cfg("train.schedule=exponential", "train.decay_epochs=2", "train.decay_factor=0.5")
    spe = 10
    assert learning_rate_at(19, spe, 9, 1.0, step) == pytest.approx(1.0)
    assert learning_rate_at(20, spe, 9, 1.0, step) == pytest.approx(0.5)
    assert learning_rate_at(45, spe, 9, 1.0, step) == pytest.approx(0.25)
    assert learning_rate_at(10, spe, 9, 1.0, expo) == pytest.approx(math.sqrt(0.5))
    assert learning_rate_at(40, spe, 9, 1.0, expo) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "overrides, cls, checks",
    [
        (["train.optimizer=adam"], "Adam", {"weight_decay": None}),
        (["train.optimizer=adamw"], "AdamW", {"weight_decay": 0.004}),
        (["train.optimizer=adamw", "train.weight_decay=0.05"], "AdamW", {"weight_decay": 0.05}),
        (["train.optimizer=adamw", "train.weight_decay=0"], "AdamW", {"weight_decay": 0.0}),
        (["train.optimizer=sgd", "train.weight_decay=0.01"], "SGD", {"weight_decay": 0.01}),
        (
            ["train.optimizer=sgd", "train.momentum=0.8", "train.nesterov=true"],
            "SGD",
            {"momentum": 0.8, "nesterov": True},
        ),
        (["train.optimizer=rmsprop", "train.momentum=0.5"], "RMSprop", {"momentum": 0.5}),
        (["train.gradient_clip_norm=1.5"], "Adam", {"global_clipnorm": 1.5, "clipvalue": None}),
        (["train.gradient_clip_value=0.5"], "Adam", {"clipvalue": 0.5, "global_clipnorm": None}),
    ],
)
def test_optimizers_get_their_settings(overrides, cls, checks):
    optimizer = build_optimizer(train_cfg(*overrides), 0.01)
    assert type(optimizer).__name__ == cls
    config = optimizer.get_config()
    assert config["learning_rate"] == pytest.approx(0.01)
    for key, value in checks.items():
        assert config[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_only_one_kind_of_clipping():
    with pytest.raises(ImgaiError, match="not both"):
        load_config([], ["train.gradient_clip_norm=1", "train.gradient_clip_value=1"])


def test_label_smoothing_reaches_the_loss():
    loss = build_loss(train_cfg("train.label_smoothing=0.1"))
    assert loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    y_true = np.array([[1.0, 0.0]], dtype="float32")
    y_pred = np.array([[0.95, 0.05]], dtype="float32")
    assert float(loss(y_true, y_pred)) > float(build_loss(train_cfg())(y_true, y_pred))


def test_the_summary_names_what_is_used():
    text = describe_optimization(
        train_cfg(
            "train.optimizer=adamw",
            "train.schedule=cosine",
            "train.warmup_epochs=2",
            "train.label_smoothing=0.1",
            "train.plateau_patience=3",
        )
    )
    for part in ("adamw", "weight decay 0.004", "cosine", "2 warmup", "label smoothing 0.1", "plateau"):
        assert part in text, part


def test_balanced_class_weights_follow_the_counts():
    labels = np.array([0] * 30 + [1] * 10 + [2] * 20)
    weights = class_weights("balanced", labels, ["a", "b", "c"])
    assert weights == pytest.approx({0: 60 / 90, 1: 60 / 30, 2: 60 / 60})
    table = describe_class_weights(weights, labels, ["a", "b", "c"])
    assert "30" in table and "2.000" in table


def test_class_weights_by_name_default_to_one():
    weights = class_weights({"b": 3.0}, np.array([0, 1, 2]), ["a", "b", "c"])
    assert weights == {0: 1.0, 1: 3.0, 2: 1.0}


def test_class_weight_errors_name_the_problem():
    with pytest.raises(ImgaiError, match="unknown class.*dgos.*the classes are cats, dogs"):
        class_weights({"dgos": 2.0}, np.array([0, 1]), ["cats", "dogs"])
    with pytest.raises(ImgaiError, match="none for dogs"):
        class_weights("balanced", np.array([0, 0]), ["cats", "dogs"])
    with pytest.raises(ImgaiError, match="use balanced, or a mapping"):
        load_config([], ["train.class_weight=balance"])
    with pytest.raises(ImgaiError, match="greater than 0"):
        load_config([], ["train.class_weight={cats: 0}"])
