"""Training options, determinism, fine-tuning and exact resume (in-process on tiny data), and a
real SIGKILL in the middle of an epoch followed by --resume (the CLI, as a user runs it)."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_imgai
from imgai import models
from imgai.config import load_config
from imgai.errors import ImgaiError
from imgai.resume import read_state
from imgai.train import resume, train

TINY = ["model.filters=[8,16]", "model.dense_units=16", "data.image_size=[32,32]", "data.batch_size=8"]


def history(run_dir):
    return list(csv.DictReader((run_dir / "history.csv").open()))


def tiny_config(data_root, tmp_path, *overrides):
    return load_config([], [f"data.root={data_root}", f"output.dir={tmp_path / 'runs'}", *TINY, *overrides])


def weights_of(path):
    import keras

    return keras.saving.load_model(path, compile=False).get_weights()


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------ determinism, options


def test_deterministic_config_gives_identical_history_twice(split_dataset, tmp_path):
    config = tiny_config(
        split_dataset,
        tmp_path,
        "train.epochs=2",
        "deterministic=true",
        "train.schedule=cosine",
        "train.warmup_epochs=0.5",
    )
    log: list[str] = []
    first = train(config, name="one", log=log.append)
    second = train(config, name="two", log=log.append)
    one, two = (first.run_dir / "history.csv").read_text(), (second.run_dir / "history.csv").read_text()
    assert one == two
    assert len(one.splitlines()) == 3
    assert_same_weights(weights_of(first.run_dir / "last.keras"), weights_of(second.run_dir / "last.keras"))
    assert any("Deterministic mode" in line for line in log)
    assert any("cosine schedule" in line for line in log)
    # Training ends with its curves in the run folder and the commands to run next.
    assert (first.run_dir / "training_curves.png").stat().st_size > 10_000
    assert f"Training curves: {first.run_dir / 'training_curves.png'}" in log
    runs = f"--runs-dir {tmp_path / 'runs'}"
    assert any(line.startswith(f"  imgai eval --run two {runs}") for line in log[-3:])
    assert any(line.startswith(f"  imgai predict IMAGE_OR_FOLDER... --run two {runs}") for line in log[-3:])


def test_user_callbacks_see_every_epoch_of_train_and_resume(split_dataset, tmp_path):
    import keras

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begun, self.ended = [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.begun.append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            self.ended.append((epoch, sorted(logs or {})))

    first = Recorder()
    lines: list[str] = []
    result = train(
        tiny_config(split_dataset, tmp_path, "train.epochs=2"), log=lines.append, callbacks=[first]
    )
    assert first.begun == [0, 1] and [epoch for epoch, _ in first.ended] == [0, 1]
    # After imgai's own callbacks: the learning rate they log is there too.
    assert all({"loss", "val_loss", "learning_rate"} <= set(keys) for _, keys in first.ended)
    assert len(history(result.run_dir)) == 2
    # One line per epoch, under 80 columns, without the learning rate; '* best' where best.keras was written.
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"] and epochs[0].endswith("* best")
    assert all(len(line) <= 80 and "learning_rate" not in line and "val_acc " in line for line in epochs)
    assert epochs[1].endswith("* best") == (result.best_epoch == 2)
    later = Recorder()
    (result.run_dir / "training_curves.png").unlink()
    resumed: list[str] = []
    resume(result.run_dir, ["train.epochs=3"], log=resumed.append, callbacks=[later])
    assert later.begun == [2] and [epoch for epoch, _ in later.ended] == [2]
    assert any(line.startswith("Training for 1 more epoch(s), 3 to 3,") for line in resumed), resumed
    assert (result.run_dir / "training_curves.png").is_file() and "Next:" in resumed  # redrawn after a resume


def test_epoch_line_fits_80_columns():
    from imgai.train import epoch_line

    logs = {
        "loss": 0.3214,
        "accuracy": 0.8812,
        "val_loss": 0.4312,
        "val_accuracy": 0.8512,
        "learning_rate": 1e-3,
    }
    logs["top5_accuracy"] = logs["val_top5_accuracy"] = 0.97
    line = epoch_line(100, 100, 1234.4, logs, new_best=True)
    assert line == "Epoch 100/100 1234s loss 0.3214 acc 0.8812 val_loss 0.4312 val_acc 0.8512 * best"
    assert len(line) <= 80
    assert epoch_line(3, 15, 2.0, {"loss": 1.0}, new_best=False) == "Epoch 3/15 2s loss 1.0000"


def test_early_stopping_restores_best_weights_and_is_not_resumed(split_dataset, tmp_path):
    # A learning rate too small to change any prediction: val_accuracy never improves after epoch 1.
    config = tiny_config(
        split_dataset,
        tmp_path,
        "train.epochs=6",
        "train.learning_rate=1e-9",
        "train.early_stopping_patience=2",
    )
    log: list[str] = []
    result = train(config, name="es", log=log.append)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1
    assert [row["epoch"] for row in history(result.run_dir)] == ["1", "2", "3"]
    assert any(line.startswith("Early stopping at epoch 3") for line in log)
    assert any("Restored the weights of the best epoch, 1" in line for line in log)
    assert_same_weights(result.model.get_weights(), weights_of(result.run_dir / "best.keras"))
    with pytest.raises(ImgaiError, match="stopped early at epoch 3"):
        resume(result.run_dir, ["train.epochs=10"], log=log.append)


def test_plateau_class_weights_and_speed_switches(split_dataset, tmp_path):
    config = tiny_config(
        split_dataset,
        tmp_path,
        "train.epochs=3",
        "train.learning_rate=1e-9",
        "train.plateau_patience=1",
        "train.plateau_factor=0.5",
        "train.class_weight={circle: 2.0}",
        "train.jit_compile=false",
        "train.steps_per_execution=2",
        "train.optimizer=sgd",
        "train.nesterov=true",
    )
    log: list[str] = []
    result = train(config, name="opts", log=log.append)
    rates = [float(row["learning_rate"]) for row in history(result.run_dir)]
    assert rates == pytest.approx([1e-9, 1e-9, 5e-10], rel=1e-6)  # reduced after epoch 2's plateau
    assert any("learning rate x0.5 from epoch 3 on" in line for line in log)
    text = "\n".join(log)
    assert "Class weights (given)" in text and "circle" in text and "2.000" in text
    assert "sgd, momentum 0.9 (nesterov)" in text
    assert result.model.steps_per_execution == 2 and result.model.jit_compile is False


def test_tensorboard_logs_when_asked(split_dataset, tmp_path, monkeypatch):
    config = tiny_config(split_dataset, tmp_path, "train.epochs=1", "train.tensorboard=true")
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ImgaiError, match="needs the tensorboard package: pip install tensorboard"):
            train(config, name="tb", log=lambda _: None)
        assert not (tmp_path / "runs" / "tb").exists()  # refused before creating the run
        pytest.skip("tensorboard is not installed: only its clear error was checked")
    result = train(config, name="tb", log=lambda _: None)
    assert list((result.run_dir / "tensorboard").rglob("events.out.tfevents.*"))


# ------------------------------------------------------------------------------- fine-tuning


def tiny_backbone(inputs, num_classes, cfg):
    """A hand-built model that follows models.backbone_layers' contract, frozen like a
    pretrained backbone: layers named backbone_*."""
    from keras import layers

    backbone = [
        layers.Conv2D(4, 3, name="backbone_conv1"),
        layers.BatchNormalization(name="backbone_bn1"),
        layers.Conv2D(4, 3, name="backbone_conv2"),
    ]
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for layer in backbone:
        layer.trainable = False
        x = layer(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(num_classes, activation="softmax", name="predictions")(x)


@pytest.fixture()
def backbone_model(monkeypatch):
    monkeypatch.setitem(models._REGISTRY, "tiny_backbone", tiny_backbone)
    return [
        "model.name=tiny_backbone",
        "deterministic=true",
        "train.fine_tune_after=1",
        "train.fine_tune_layers=1",
    ]


def layer_weights(path, name):
    import keras

    return keras.saving.load_model(path, compile=False).get_layer(name).get_weights()


def test_fine_tune_stage_unfreezes_top_layers_at_a_lower_rate_and_survives_resume(
    split_dataset, tmp_path, backbone_model
):
    import keras

    log: list[str] = []
    whole = train(
        tiny_config(split_dataset, tmp_path, *backbone_model, "train.epochs=3"), name="whole", log=log.append
    )
    rates = [float(row["learning_rate"]) for row in history(whole.run_dir)]
    assert rates == pytest.approx([1e-3, 1e-4, 1e-4], rel=1e-6)
    assert any("unfroze the top 1 backbone layers" in line for line in log)

    # Only the top backbone layer moved; the lower one and BatchNorm kept their initial values.
    keras.utils.set_random_seed(123)
    config = tiny_config(split_dataset, tmp_path, *backbone_model)
    initial = models.create_model(config.model, (32, 32), 3, 3)
    last = whole.run_dir / "last.keras"
    for name, moved in (("backbone_conv1", False), ("backbone_bn1", False), ("backbone_conv2", True)):
        before, after = initial.get_layer(name).get_weights(), layer_weights(last, name)
        assert (not all(np.array_equal(a, b) for a, b in zip(before, after))) == moved, name

    # Stopped at the stage boundary, then extended twice: the same run as without the stops.
    parts = train(
        tiny_config(split_dataset, tmp_path, *backbone_model, "train.epochs=1"), name="parts", log=log.append
    )
    assert read_state(parts.run_dir / "last.keras").stage == "train"
    resume(parts.run_dir, ["train.epochs=2"], log=log.append)
    assert read_state(parts.run_dir / "last.keras").stage == "fine_tune"
    resume(parts.run_dir, ["train.epochs=3"], log=log.append)
    assert (parts.run_dir / "history.csv").read_text() == (whole.run_dir / "history.csv").read_text()
    assert_same_weights(weights_of(parts.run_dir / "last.keras"), weights_of(last))


def test_fine_tune_needs_a_backbone(split_dataset, tmp_path):
    with pytest.raises(ImgaiError, match="has no pretrained backbone"):
        train(
            tiny_config(split_dataset, tmp_path, "train.fine_tune_after=1"), name="nobb", log=lambda _: None
        )


# --------------------------------------------------------------------- kill -9 and --resume


@pytest.fixture(scope="module")
def slow_project(tmp_path_factory):
    """Enough single-image steps (300 per epoch, about 2 s on 2 cores), so a kill lands inside one."""
    from imgai.sample_data import make_shapes_dataset

    work = tmp_path_factory.mktemp("killproject")
    make_shapes_dataset(
        work / "data", {"train": 100, "val": 10}, shapes=("circle", "square", "triangle"), size=32, fmt="png"
    )
    (work / "slow.yaml").write_text(
        "data:\n  root: data\n  image_size: [32, 32]\n  batch_size: 1\n"
        "model:\n  filters: [8, 16]\n  dense_units: 16\n"
        "train:\n  epochs: 3\n  schedule: step\n  decay_epochs: 1\n  decay_factor: 0.5\n  warmup_epochs: 0.5\n"
        "deterministic: true\n"
    )
    return work


def start_training(work, name):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "imgai", "train", "--config", "slow.yaml", "--name", name],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def rows(path):
    return path.read_text().count("\n") - 1 if path.exists() else 0


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_and_extend(slow_project):
    work = slow_project
    reference = run_imgai("train", "--config", "slow.yaml", "--name", "ref", cwd=work)
    assert reference.returncode == 0, reference.stdout + reference.stderr

    run = work / "runs" / "r"
    proc = start_training(work, "r")
    deadline = time.time() + 240
    # Epoch 1 done: its history row and then last.keras (with epoch 1 inside) are on disk.
    while not (
        rows(run / "history.csv") >= 1 and (state := read_state(run / "last.keras")) and state.epoch == 1
    ):
        assert proc.poll() is None and time.time() < deadline, (
            "training ended before epoch 1 was checkpointed"
        )
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert rows(run / "history.csv") == 1, "the kill was meant to land inside epoch 2"

    resumed = run_imgai("train", "--resume", "runs/r", cwd=work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming run r from epoch 2 of 3" in resumed.stdout
    assert [row["epoch"] for row in history(run)] == ["1", "2", "3"]
    assert not list(run.glob(".*tmp*")), "temporary files left behind"
    best, last = weights_of(run / "best.keras"), weights_of(run / "last.keras")  # both load in plain Keras
    assert best and last
    # Deterministic, so the interrupted run is the uninterrupted one: same history, same weights.
    assert (run / "history.csv").read_text() == (work / "runs" / "ref" / "history.csv").read_text()
    assert_same_weights(last, weights_of(work / "runs" / "ref" / "last.keras"))
    assert_same_weights(
        best, weights_of(work / "runs" / "ref" / "best.keras")
    )  # best tracked across the kill

    finished = run_imgai("train", "--resume", "runs/r", cwd=work)
    assert finished.returncode == 2 and "already finished 3 of 3 epochs" in finished.stderr
    extended = run_imgai("train", "--resume", "runs/r", "train.epochs=5", cwd=work)
    assert extended.returncode == 0, extended.stdout + extended.stderr
    assert "Resuming run r from epoch 4 of 5" in extended.stdout
    assert [row["epoch"] for row in history(run)] == ["1", "2", "3", "4", "5"]
    assert "epochs: 5" in (run / "config.yaml").read_text()


def test_resume_refuses_unsafe_overrides_and_config(slow_project):
    (slow_project / "runs" / "cfgonly").mkdir(parents=True, exist_ok=True)
    (slow_project / "runs" / "cfgonly" / "config.yaml").write_text("seed: 1\n")
    bad = run_imgai("train", "--resume", "runs/cfgonly", "train.learning_rate=0.1", cwd=slow_project)
    assert (
        bad.returncode == 2 and "cannot change when resuming" in bad.stderr and "Traceback" not in bad.stderr
    )
    both = run_imgai("train", "--resume", "runs/cfgonly", "--config", "slow.yaml", cwd=slow_project)
    assert both.returncode == 2 and "drop --config" in both.stderr
    missing = run_imgai("train", "--resume", "runs/nothing", cwd=slow_project)
    assert missing.returncode == 2 and "not found" in missing.stderr
