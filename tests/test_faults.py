"""Faults during training: a diverging loss, Ctrl-C inside the first save, SIGTERM, a full disk.
Each stops with one line, keeps the last good checkpoints as they were and leaves no empty run."""

import importlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_imgai
from imgai.config import load_config
from imgai.errors import ImgaiError
from imgai.resume import read_state
from imgai.train import train

# imgai.train is also the public API's function; the module is wanted here.
train_module = importlib.import_module("imgai.train")

TINY = ["model.filters=[8,16]", "model.dense_units=16", "data.image_size=[32,32]", "data.batch_size=8"]


def tiny(root, tmp_path, *overrides):
    return load_config([], [f"data.root={root}", f"output.dir={tmp_path / 'runs'}", *TINY, *overrides])


def test_huge_learning_rate_stops_at_once_and_leaves_no_run(split_dataset, tmp_path):
    config = tiny(split_dataset, tmp_path, "train.epochs=3", "train.learning_rate=1000000")
    with pytest.raises(
        ImgaiError, match=r"training diverged in epoch 1: the training loss became nan"
    ) as info:
        train(config, name="nan", log=lambda _: None)
    assert info.value.exit_code == 1
    assert "lower train.learning_rate (e.g. 0.001)" in info.value.message
    assert not (tmp_path / "runs" / "nan").exists()  # nothing finite was saved: no run left behind


def test_divergence_after_a_good_epoch_keeps_its_checkpoints(split_dataset, tmp_path, monkeypatch):
    real_writer = train_module._make_history_writer

    def poisoning_writer(path, *args):
        writer = real_writer(path, *args)
        original = writer.on_epoch_begin

        def on_epoch_begin(epoch, logs=None):
            if epoch == 1:  # weights go bad after epoch 1 was written
                first = writer.model.trainable_variables[0]
                first.assign(np.full(first.shape, np.nan, dtype="float32"))
            original(epoch, logs)

        writer.on_epoch_begin = on_epoch_begin
        return writer

    monkeypatch.setattr(train_module, "_make_history_writer", poisoning_writer)
    config = tiny(split_dataset, tmp_path, "train.epochs=3")
    with pytest.raises(ImgaiError, match=r"diverged in epoch 2.*last finite checkpoint \(epoch 1\) is kept"):
        train(config, name="half", log=lambda _: None)
    run = tmp_path / "runs" / "half"
    assert read_state(run / "last.keras").epoch == 1 and read_state(run / "best.keras").epoch == 1
    assert (run / "history.csv").read_text().count("\n") == 2  # header + epoch 1 only
    import keras

    for name in ("last.keras", "best.keras"):
        weights = keras.saving.load_model(run / name, compile=False).get_weights()
        assert all(np.isfinite(w).all() for w in weights)


def test_ctrl_c_inside_the_first_save_says_nothing_was_saved(split_dataset, tmp_path, monkeypatch):
    import imgai.modelfile

    def interrupted_save(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(imgai.modelfile, "save_model", interrupted_save)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt) as info:
        train(tiny(split_dataset, tmp_path, "train.epochs=2"), name="cc", log=lines.append)
    assert info.value.imgai_reported  # so the CLI adds no second "Interrupted." line
    assert any("before the first epoch was saved: nothing to resume" in line for line in lines), lines
    assert not any("epoch(s) saved" in line for line in lines)
    assert not (tmp_path / "runs" / "cc").exists()


def test_disk_full_in_a_later_checkpoint_keeps_the_earlier_one(split_dataset, tmp_path, monkeypatch):
    import errno

    import imgai.modelfile

    real_save, calls = imgai.modelfile.save_model, []

    def save_then_fill(model, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(imgai.modelfile, "save_model", save_then_fill)
    with pytest.raises(ImgaiError, match="No space left on device") as info:
        train(tiny(split_dataset, tmp_path, "train.epochs=3"), name="full", log=lambda _: None)
    assert info.value.exit_code == 1 and "--resume" in info.value.message
    run = tmp_path / "runs" / "full"
    assert read_state(run / "last.keras").epoch == 1
    assert not list(run.glob(".*tmp*"))


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path):
    from imgai.sample_data import make_shapes_dataset

    make_shapes_dataset(tmp_path / "data", {"train": 60}, shapes=("circle", "square"), size=32, fmt="png")
    (tmp_path / "c.yaml").write_text(
        "data: {root: data, image_size: [32, 32], batch_size: 1}\n"
        "model: {filters: [4], dense_units: 4}\ntrain: {epochs: 3, monitor: loss}\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgai", "train", "-c", "c.yaml", "--name", "t"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run, deadline = tmp_path / "runs" / "t", time.time() + 240
    while not ((state := read_state(run / "last.keras")) and state.epoch >= 1):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    if proc.returncode == 0:
        pytest.skip("training finished before SIGTERM arrived")
    assert proc.returncode == 143, out
    assert "Stopped (SIGTERM) with" in out and "imgai train --resume" in out and "Traceback" not in out
    assert not list(run.glob(".*tmp*"))
    resumed = run_imgai("train", "--resume", "runs/t", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_cli_turns_a_full_disk_into_one_line(tmp_path, monkeypatch):
    import errno

    from click.testing import CliRunner

    import imgai.sample_data
    from imgai.cli import cli

    def full(out_dir, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir) + "/train/circle/0.png")

    monkeypatch.setattr(imgai.sample_data, "make_shapes_dataset", full)
    result = CliRunner().invoke(cli, ["data", "sample", str(tmp_path / "out")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        f"Error: No space left on device ({tmp_path}/out/train/circle/0.png): free some space or write elsewhere"
    ]
    readonly = CliRunner().invoke(cli, ["config", "check", "a\0b.yaml"])
    assert readonly.exit_code == 2 and "Traceback" not in readonly.output


def test_settings_that_cannot_fit_are_refused_before_building(split_dataset, tmp_path):
    from imgai.models import check_fits_memory, create_model, estimate_cnn_parameters

    for overrides in (
        ["model.filters=[8,16]", "model.dense_units=16"],
        ["model.kernel_size=5", "model.filters=[4]"],
    ):
        cfg = load_config([], overrides).model
        built = create_model(cfg, (40, 36), 1, 4)
        assert estimate_cnn_parameters(cfg, (40, 36), 1, 4) == built.count_params()
    big = load_config([], ["model.dense_units=65536"]).model
    with pytest.raises(
        ImgaiError, match=r"need about 85\.\d GiB .* more than the 16\.0 GiB of memory available"
    ):
        check_fits_memory(big, (224, 224), 3, 5, 32, 16 * 2**30)
    check_fits_memory(load_config([], []).model, (224, 224), 3, 5, 32, 16 * 2**30)  # the default fits
    config = tiny(split_dataset, tmp_path, "model.dense_units=65536", "data.image_size=8192")
    with pytest.raises(ImgaiError, match="lower data.batch_size, data.image_size"):
        train(config, name="huge", log=lambda _: None)
    assert not (tmp_path / "runs" / "huge").exists()
