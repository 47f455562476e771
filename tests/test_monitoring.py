"""Checkpoints chosen by the weakest class, and the warnings when validation collapses: the
selection on a hand-made history, the scores by hand, the warning from a model that answers one
class, the BatchNorm momentum rule, and tiny runs end to end."""

import csv

import numpy as np
import pytest

from imgai.config import load_config
from imgai.errors import ImgaiError
from imgai.models import batchnorm_momentum_for
from imgai.monitoring import best_epoch, make_validation_watch, per_class_scores
from imgai.resume import TrainState
from imgai.train import _make_epoch_keeper, model_metadata, train

TINY = ["model.filters=[8,16]", "model.dense_units=16", "data.image_size=[32,32]", "data.batch_size=8"]

# Epoch 2 has the best average, epoch 4 the best weakest class (a real trade-off on imbalanced data).
HISTORY = [
    {"val_accuracy": 0.70, "val_min_recall": 0.20, "val_f1_macro": 0.50},
    {"val_accuracy": 0.90, "val_min_recall": 0.40, "val_f1_macro": 0.70},
    {"val_accuracy": 0.85, "val_min_recall": 0.55, "val_f1_macro": 0.80},
    {"val_accuracy": 0.80, "val_min_recall": 0.70, "val_f1_macro": 0.75},
    {"val_accuracy": 0.88, "val_min_recall": 0.70, "val_f1_macro": 0.72},
]


def history(run_dir):
    return list(csv.DictReader((run_dir / "history.csv").open()))


def test_val_min_recall_picks_the_epoch_of_the_best_weakest_class(tmp_path):
    """The checkpoint keeper itself, fed the hand-made history: best.keras is written at the epoch
    the monitor says (the first of equal values), and early stopping counts from there."""
    import keras

    assert best_epoch([h["val_min_recall"] for h in HISTORY], "max") == 4
    assert best_epoch([h["val_accuracy"] for h in HISTORY], "max") == 2

    config = load_config([], ["train.early_stopping_patience=2", *TINY])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    for monitor, expected in (("val_min_recall", 4), ("val_f1_macro", 3), ("val_accuracy", 2)):
        run_dir = tmp_path / monitor
        run_dir.mkdir()
        state = TrainState()
        keeper = _make_epoch_keeper(
            run_dir, config.train, monitor, "max", model_metadata(config, ["a", "b"]), state, lambda _: None
        )
        keeper.set_model(model)
        written_at = []
        for epoch, logs in enumerate(HISTORY):
            before = (
                (run_dir / "best.keras").stat().st_mtime_ns if (run_dir / "best.keras").exists() else None
            )
            keeper.on_epoch_end(epoch, dict(logs))
            if (run_dir / "best.keras").stat().st_mtime_ns != before:
                written_at.append(epoch + 1)
            if model.stop_training:
                break
        model.stop_training = False
        assert state.best_epoch == expected, monitor
        assert written_at[-1] == expected, monitor


def test_per_class_scores_by_hand():
    # 3 images of class 0 (2 right), 1 of class 1 (right): recalls 2/3 and 1.
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    scores = per_class_scores(probabilities, np.array([0, 0, 0, 1]), ["a", "b"])
    assert scores["min_recall"] == pytest.approx(2 / 3)
    # F1: class a precision 1, recall 2/3 -> 0.8; class b precision 1/2, recall 1 -> 2/3.
    assert scores["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)


class OneClassModel:
    def predict_on_batch(self, x):
        return np.tile([0.1, 0.9], (len(x), 1))


def test_collapse_to_one_class_is_said_at_once():
    lines: list[str] = []
    labels = np.array([0, 0, 0, 1, 1])
    batches = [(np.zeros((3, 4)), np.eye(2)[labels[:3]]), (np.zeros((2, 4)), np.eye(2)[labels[3:]])]
    watch = make_validation_watch(batches, [3, 2], ["cats", "dogs"], False, 8, lines.append)
    watch.set_model(OneClassModel())
    watch.on_epoch_end(0, {"accuracy": 0.6, "val_accuracy": 0.4})  # = the share of dogs: checked
    assert lines == []  # a first epoch may start that way
    watch.on_epoch_end(1, {"accuracy": 0.95, "val_accuracy": 0.4})
    assert "epoch 2: the model predicts 'dogs' for every one of the 5 validation images" in lines[0]
    assert "training accuracy 95.0% but validation accuracy 40.0%" in lines[1]
    assert "best epoch (1) and last epoch (2)" in watch.summary(1, 2)
    assert watch.summary(3, 3) is None

    scores: list[str] = []
    watch = make_validation_watch(batches, [3, 2], ["cats", "dogs"], True, 8, scores.append)
    watch.set_model(OneClassModel())
    logs = {"val_accuracy": 0.4}
    watch.on_epoch_end(0, logs)
    assert logs["val_min_recall"] == 0.0 and logs["val_f1_macro"] == pytest.approx((0 + 2 * 0.4 / 1.4) / 2)


def test_batchnorm_momentum_settles_within_an_epoch():
    assert batchnorm_momentum_for(8) == pytest.approx(0.01 ** (1 / 8))
    assert batchnorm_momentum_for(8) ** 8 == pytest.approx(0.01)
    assert batchnorm_momentum_for(5000) == 0.99  # long epochs keep Keras's default


def test_per_class_monitor_without_validation_is_one_line(flat_dataset, tmp_path):
    config = load_config(
        [], [f"data.root={flat_dataset}", f"output.dir={tmp_path / 'runs'}", "train.monitor=val_min_recall"]
    )
    with pytest.raises(ImgaiError, match="train.monitor=val_min_recall needs validation data"):
        train(config, log=lambda _: None)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_tiny_run_monitored_by_val_min_recall(split_dataset, tmp_path):
    config = load_config(
        [],
        [f"data.root={split_dataset}", f"output.dir={tmp_path / 'runs'}", *TINY]
        + ["train.epochs=3", "train.monitor=val_min_recall"],
    )
    result = train(config, name="worst", log=lambda _: None)
    rows = history(result.run_dir)
    assert {"val_min_recall", "val_f1_macro"} <= set(rows[0])
    values = [float(r["val_min_recall"]) for r in rows]
    assert result.monitor == "val_min_recall"
    assert result.best_epoch == best_epoch(values, "max")
    assert result.best_value == pytest.approx(max(values))


def test_few_steps_per_epoch_give_a_working_model_or_the_warning(flat_dataset, tmp_path):
    """The small-data collapse cannot pass in silence: sepresnet with BatchNorm, 3 steps per epoch."""
    import keras

    lines: list[str] = []
    config = load_config(
        [],
        [f"data.root={flat_dataset}", f"output.dir={tmp_path / 'runs'}", "model.name=sepresnet"]
        + ["model.widths=[8,16,32]", "model.depth=1", "data.image_size=[32,32]", "data.batch_size=8"]
        + ["data.validation_split=0.3", "train.epochs=3"],
    )
    result = train(config, name="small", log=lines.append)
    momentum = batchnorm_momentum_for(3)  # 21 training images in batches of 8
    assert any(f"BatchNorm momentum {momentum:.3f}" in line for line in lines)
    model = keras.saving.load_model(result.best_model)
    momenta = [layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert momenta and all(m == pytest.approx(momentum) for m in momenta)
    from imgai.data import load_images, resolve_splits
    from imgai.modelfile import load_model

    _, info = load_model(result.best_model)
    val = load_images(resolve_splits(config.data, config.seed).val, info.decode_spec, progress=False)
    predicted = model.predict(val.images, verbose=0).argmax(axis=1)
    warned = any("predicted one class for every validation image" in line for line in lines)
    assert len(set(predicted)) > 1 or warned
