"""Data-parallel training: simulated devices (JAX, TensorFlow) and two real processes on loopback.

The slow tests run whole trainings in subprocesses, because the device count of a backend is
fixed when it starts. Tolerance: with ``deterministic: true`` on CPU, a run on 2 devices or 2
processes gives the same history.csv as the 1-device run up to float32 rounding of the gradient
sum (measured: identical to every printed digit); the tests allow 1e-4 absolute. TensorFlow's
MirroredStrategy converges like the 1-device run but not step for step: losses within 0.05.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_imgai
from imgai.batches import ImageBatches
from imgai.config import load_config
from imgai.data import DecodedImages
from imgai.distribute import Cluster, check_batch_size, cluster_from, nearest_batch_sizes
from imgai.errors import ImgaiError
from imgai.sample_data import make_shapes_dataset

TOLERANCE = 1e-4
TF_TOLERANCE = 0.05


# ------------------------------------------------------------------------------------ quick


def test_cluster_from_flags_and_keras_variables(monkeypatch):
    monkeypatch.delenv("KERAS_DISTRIBUTION_NUM_PROCESSES", raising=False)
    assert cluster_from() == Cluster(1, 0, None)
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:2345")
    assert cluster_from() == Cluster(2, 1, "10.0.0.1:1234")  # JAX needs only the coordinator
    assert cluster_from(process_id=0).process_id == 0  # flags win


@pytest.mark.parametrize(
    "cluster, words",
    [
        ((2, 2, "h:1"), "process_id=2 is out of range for num_processes=2: use 0 to 1"),
        ((2, -1, "h:1"), "out of range"),
        ((2, 0, None), "needs the coordinator's address"),
        ((2, 0, "nohost"), "is not HOST:PORT"),
    ],
)
def test_bad_clusters_say_what_to_do(monkeypatch, cluster, words):
    for name in ("NUM_PROCESSES", "PROCESS_ID", "JOB_ADDRESSES"):
        monkeypatch.delenv(f"KERAS_DISTRIBUTION_{name}", raising=False)
    with pytest.raises(ImgaiError, match=words):
        cluster_from(*cluster)


def test_batch_size_must_divide_and_nearest_sizes_are_named():
    assert nearest_batch_sizes(30, 4) == [28, 32]
    assert nearest_batch_sizes(3, 4) == [4]
    check_batch_size(32, 4, "4 devices")
    with pytest.raises(
        ImgaiError, match=r"data.batch_size=30 is the global batch .* over 4 devices: use 28 or 32"
    ):
        check_batch_size(30, 4, "4 devices")


def test_devices_setting_is_validated():
    assert load_config(overrides=["train.devices=[0,2]"]).train.devices == [0, 2]
    assert load_config(overrides=["train.devices=3"]).train.devices == 3
    for bad in ("0", "[]", "[1,1]", "true", "some"):
        with pytest.raises(ImgaiError, match="train.devices"):
            load_config(overrides=[f"train.devices={bad}"])


def _store(images, labels) -> DecodedImages:
    return DecodedImages(images=images, labels=labels, paths=[f"{i}.png" for i in range(len(labels))])


def test_each_process_reads_its_share_of_the_same_global_batches():
    labels = np.arange(21) % 3
    images = np.arange(21, dtype=np.uint8).reshape(21, 1, 1, 1)
    whole = ImageBatches(_store(images, labels), 3, 8, shuffle=True, seed=5, epoch=2, multiple=2)
    parts = [
        ImageBatches(_store(images, labels), 3, 8, shuffle=True, seed=5, epoch=2, shard=(i, 2), multiple=2)
        for i in (0, 1)
    ]
    # 21 = 8 + 8 + 5: the last batch is cut to 4 rows, so it splits over 2 devices.
    assert len(whole) == len(parts[0]) == 3
    for index in range(3):
        served = np.concatenate([p[index][0] for p in parts]).ravel()
        assert sorted(served) == sorted(whole[index][0].ravel())
        assert len(parts[0][index][0]) == len(parts[1][index][0])
    assert sum(len(whole[i][0]) for i in range(3)) == 20  # one image sits out this epoch


def test_validation_is_padded_with_zero_weights_not_cut():
    labels = np.arange(7) % 3
    images = np.arange(7, dtype=np.uint8).reshape(7, 1, 1, 1)
    parts = [ImageBatches(_store(images, labels), 3, 4, shard=(i, 2), multiple=2, pad=True) for i in (0, 1)]
    weights = np.concatenate([p[i][2] for i in range(2) for p in parts])
    rows = np.concatenate([p[i][0].ravel()[p[i][2] > 0] for i in range(2) for p in parts])
    assert weights.sum() == 7 and len(weights) == 8  # every image once, one weight-0 copy
    assert sorted(rows) == list(range(7))


def test_cli_refuses_a_process_id_out_of_range_before_anything(tmp_path):
    result = run_imgai(
        "train", "--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: --process-id 2 is out of range for --num-processes 2: use 0 to 1"
    ]
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------- slow


def _dataset(root: Path) -> Path:
    # 48 training images = 6 global batches of 8; 15 validation images: the last batch is padded.
    make_shapes_dataset(
        root, {"train": 16, "val": 5}, shapes=("circle", "square", "triangle"), size=32, fmt="png"
    )
    return root


def _config(tmp_path: Path, dropout: float = 0.5) -> Path:
    data = _dataset(tmp_path / "data") if not (tmp_path / "data").exists() else tmp_path / "data"
    path = tmp_path / "cfg.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            seed: 7
            deterministic: true
            data: {{root: {data}, image_size: [32, 32], batch_size: 8}}
            model: {{name: cnn, filters: [8], dense_units: 16, dropout: {dropout}}}
            train: {{epochs: 2, distributed_timeout: 60}}
            output: {{dir: {tmp_path / "runs"}}}
            """
        )
    )
    return path


def _history(run: Path) -> list[dict[str, float]]:
    with (run / "history.csv").open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _max_difference(a: list[dict], b: list[dict]) -> float:
    assert len(a) == len(b) and a[0].keys() == b[0].keys()
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x)


def _script(code: str, env: dict, cwd: Path, timeout: int = 240) -> dict:
    full = {**os.environ, "PYTHONPATH": str(REPO / "src"), **env}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


TRAIN_TWICE = """
    import json
    import keras
    from imgai.config import load_config
    from imgai.errors import ImgaiError
    from imgai.train import train

    one = train(load_config(["cfg.yaml"], ["train.distribution=none", "output.name=one"]), log=lambda s: None)
    two = train(load_config(["cfg.yaml"], ["train.distribution=data_parallel", "output.name=two"]), log=print)
    errors = []
    for override in ("train.devices=3", "data.batch_size=7"):
        try:
            train(load_config(["cfg.yaml"], ["train.distribution=data_parallel", override, "output.name=bad"]))
        except ImgaiError as exc:
            errors.append(exc.message)
    # The 2-device checkpoint in plain Keras, on one device.
    model = keras.models.load_model(two.best_model)
    import numpy as np
    probabilities = model.predict(np.zeros((3, 32, 32, 3), dtype="uint8"), verbose=0)
    print(json.dumps({"errors": errors, "rows": probabilities.shape[0]}))
"""


@pytest.mark.slow
def test_jax_on_two_simulated_devices_matches_one_device(tmp_path):
    _config(tmp_path)
    out = _script(
        TRAIN_TWICE,
        {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        tmp_path,
    )
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["one", "two"]  # the refused runs wrote nothing
    assert _max_difference(_history(runs / "one"), _history(runs / "two")) <= TOLERANCE
    assert out["errors"][0].startswith("train.devices=3 but this machine has 2 CPU device(s)")
    assert (
        out["errors"][1]
        == "data.batch_size=7 is the global batch and must divide evenly over 2 devices: use 6 or 8"
    )
    assert out["rows"] == 3


@pytest.mark.slow
def test_tensorflow_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    # MirroredStrategy does not reproduce the 1-device run step for step (each replica draws its
    # own dropout masks; even without dropout epoch 1's loss differed by 0.005): it must converge
    # like it, losses within TF_TOLERANCE.
    _config(tmp_path, dropout=0.0)
    setup = """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """
    out = _script(
        textwrap.dedent(setup) + textwrap.dedent(TRAIN_TWICE),
        {"KERAS_BACKEND": "tensorflow"},
        tmp_path,
    )
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["one", "two"]
    one, two = _history(runs / "one"), _history(runs / "two")
    for key in ("loss", "val_loss"):
        assert max(abs(a[key] - b[key]) for a, b in zip(one, two)) <= TF_TOLERANCE, (one, two)
    assert two[-1]["loss"] < two[0]["loss"]
    assert out["errors"][0].startswith("train.devices=3 but this machine has 2 CPU device(s)")
    assert "use 6 or 8" in out["errors"][1]
    assert out["rows"] == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cfg: Path, process: int, port: int, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "KERAS_BACKEND": "jax"}
    env.pop("XLA_FLAGS", None)
    args = ["--num-processes", "2", "--process-id", str(process), "--coordinator", f"127.0.0.1:{port}"]
    return subprocess.Popen(
        [sys.executable, "-m", "imgai", "train", "-c", str(cfg), *args, *overrides],
        cwd=cfg.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_processes_on_loopback_match_one_process_and_write_one_run(tmp_path):
    cfg = _config(tmp_path)
    port = _free_port()
    procs = [_start(cfg, i, port, "--name", "two") for i in (0, 1)]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["two"]  # only process 0 wrote
    assert "Process 1 of 2" in outs[1][0] and "Epoch" not in outs[1][0]
    assert "each process decodes 1/2 of the files" in outs[0][0]  # the memory cache, shared
    one = run_imgai(
        "train",
        "-c",
        str(cfg),
        "--name",
        "one",
        "train.distribution=none",
        cwd=tmp_path,
        env={"KERAS_BACKEND": "jax"},
    )
    assert one.returncode == 0, one.stderr[-3000:]
    runs = tmp_path / "runs"
    assert _max_difference(_history(runs / "one"), _history(runs / "two")) <= TOLERANCE


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_with_a_message(tmp_path):
    cfg = _config(tmp_path)
    port = _free_port()
    overrides = ("train.epochs=50", "train.distributed_timeout=10")
    procs = [_start(cfg, i, port, "--name", "killed", *overrides) for i in (0, 1)]
    history = tmp_path / "runs" / "killed" / "history.csv"
    deadline = time.monotonic() + 300
    while not (history.is_file() and len(history.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].communicate()[1][-3000:]
        time.sleep(0.5)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == 1
    assert "another process of the run stopped or cannot be reached" in err
    assert time.monotonic() - killed < 60
    assert (tmp_path / "runs" / "killed" / "last.keras").is_file()  # resumable


@pytest.mark.slow
def test_unreachable_coordinator_and_tensorflow_multi_process_give_one_line(tmp_path):
    cfg = _config(tmp_path)
    args = ["train", "-c", str(cfg), "--num-processes", "2", "--process-id", "1"]
    lost = run_imgai(
        *args,
        "--coordinator",
        f"127.0.0.1:{_free_port()}",
        "train.distributed_timeout=2",
        cwd=tmp_path,
        env={"KERAS_BACKEND": "jax"},
    )
    assert lost.returncode == 2
    assert (
        lost.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: process 1 of 2 could not reach the coordinator 127.0.0.1:")
    )
    tf = run_imgai(*args, "--coordinator", "127.0.0.1:1", cwd=tmp_path, env={"KERAS_BACKEND": "tensorflow"})
    assert tf.returncode == 2
    assert tf.stderr.strip().splitlines()[-1] == (
        "Error: several processes are not supported on the TensorFlow backend (MultiWorkerMirroredStrategy "
        "with model.fit is broken under Keras 3, keras-team/keras#20585): set KERAS_BACKEND=jax"
    )
    assert not (tmp_path / "runs").exists()
