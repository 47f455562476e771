"""Resume state, history truncation, reconciling checkpoints, and the RNG round trip."""

import json
import random
import zipfile

import numpy as np
import pytest

from imgai.errors import ImgaiError
from imgai.resume import (
    RESUME_MEMBER,
    TrainState,
    capture_rng,
    check_resume_overrides,
    find_run,
    read_state,
    reconcile_best,
    remove_temporaries,
    restore_rng,
    truncate_history,
)


def test_state_round_trips_through_json():
    state = TrainState(epoch=3, stage="fine_tune", best_value=0.75, best_epoch=2, stop_wait=1, lr_scale=0.1)
    assert TrainState.from_json(state.to_json()) == state


def test_history_keeps_complete_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n1,0.9,1.0\n2,0.8,0.9\n3,0.7,0.8\n4,0.6")  # row 4 half-written
    assert truncate_history(path, 2) == 2
    assert path.read_text() == "epoch,loss,val_loss\n1,0.9,1.0\n2,0.8,0.9\n"
    assert truncate_history(path, 2) == 0  # nothing to drop: file untouched
    assert truncate_history(path, 0) == 2 and not path.exists()  # no checkpoint: start afresh


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".last.abc123.tmp.keras").write_bytes(b"half")
    (tmp_path / ".config.yaml.xyz.tmp").write_text("half")
    (tmp_path / "last.keras").write_bytes(b"keep")
    removed = remove_temporaries(tmp_path)
    assert len(removed) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.keras"]


def fake_checkpoint(path, epoch, best_epoch):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr(
            RESUME_MEMBER, TrainState(epoch=epoch, best_epoch=best_epoch, best_value=0.5).to_json()
        )


def test_best_is_rederived_when_the_process_died_between_last_and_best(tmp_path):
    fake_checkpoint(tmp_path / "last.keras", epoch=3, best_epoch=3)
    fake_checkpoint(tmp_path / "best.keras", epoch=2, best_epoch=2)
    state = read_state(tmp_path / "last.keras")
    assert state.epoch == 3 and state.best_epoch == 3
    assert reconcile_best(tmp_path, state) is True
    assert read_state(tmp_path / "best.keras").epoch == 3
    assert reconcile_best(tmp_path, state) is False  # consistent now
    assert not list(tmp_path.glob(".*tmp*"))


def test_best_is_left_alone_when_an_earlier_epoch_was_best(tmp_path):
    fake_checkpoint(tmp_path / "last.keras", epoch=3, best_epoch=1)
    fake_checkpoint(tmp_path / "best.keras", epoch=1, best_epoch=1)
    assert reconcile_best(tmp_path, read_state(tmp_path / "last.keras")) is False
    assert read_state(tmp_path / "best.keras").epoch == 1


def test_read_state_of_a_file_without_one(tmp_path):
    (tmp_path / "x.keras").write_bytes(b"not a zip")
    assert read_state(tmp_path / "x.keras") is None


def test_only_safe_overrides_on_resume():
    check_resume_overrides(["train.epochs=30", "data.workers=2", "train.tensorboard=true"])
    with pytest.raises(ImgaiError, match="'train.learning_rate' cannot change when resuming.*train.epochs"):
        check_resume_overrides(["train.epochs=30", "train.learning_rate=0.1"])


def test_find_run_by_folder_or_name(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    with pytest.raises(ImgaiError, match="not an imgai run folder"):
        find_run(run)
    (run / "config.yaml").write_text("seed: 1\n")
    assert find_run(run) == run
    assert find_run("r", tmp_path / "runs") == run
    with pytest.raises(ImgaiError, match="run 'nope' not found"):
        find_run("nope", tmp_path / "runs")


def test_rng_state_round_trip_includes_dropout_generators():
    import keras

    def build():
        inputs = keras.Input((4,))
        x = keras.layers.Dropout(0.5, name="drop")(inputs)
        return keras.Model(inputs, x)

    keras.utils.set_random_seed(7)
    model = build()
    model(np.ones((2, 4), "float32"), training=True)  # advances the dropout generator
    saved = capture_rng(model)
    expected = (
        random.random(),
        np.random.rand(),
        keras.ops.convert_to_numpy(model(np.ones((2, 4), "float32"), training=True)),
    )

    keras.utils.set_random_seed(99)  # everything elsewhere
    other = build()
    restore_rng(other, saved)
    got = (
        random.random(),
        np.random.rand(),
        keras.ops.convert_to_numpy(other(np.ones((2, 4), "float32"), training=True)),
    )
    assert got[0] == expected[0] and got[1] == expected[1]
    np.testing.assert_array_equal(got[2], expected[2])


# A run stopped after its first epoch (Ctrl-C) and resumed, against the run that never stopped, on
# the JAX backend: dropout, augmentation and a schedule that changes the rate within epochs. Prints
# both histories and the largest weight difference as JSON.
JAX_STOP_AND_RESUME = """
import json, sys
import keras, numpy as np
from imgai.config import load_config
from imgai.train import resume, train

root, out = sys.argv[1], sys.argv[2]
config = load_config([], [
    f"data.root={root}", f"output.dir={out}", "data.image_size=[32,32]", "data.batch_size=8",
    "model.filters=[8,16]", "model.dense_units=16", "model.dropout=0.5", "augment.flip=horizontal",
    "train.epochs=3", "train.schedule=cosine", "train.warmup_epochs=0.5",
])

class StopAtSecondEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt

whole = train(config, name="whole", log=lambda _: None)
try:
    train(config, name="parts", log=lambda _: None, callbacks=[StopAtSecondEpoch()])
except KeyboardInterrupt:
    pass
parts = resume(whole.run_dir.parent / "parts", log=lambda _: None)
def weights(run):
    return keras.saving.load_model(run / "last.keras", compile=False).get_weights()
diff = max(float(np.abs(a - b).max()) for a, b in zip(weights(whole.run_dir), weights(parts.run_dir)))
print(json.dumps({
    "whole": (whole.run_dir / "history.csv").read_text(),
    "parts": (parts.run_dir / "history.csv").read_text(),
    "weight_diff": diff,
}))
"""


@pytest.mark.slow
def test_jax_run_stopped_and_resumed_equals_the_run_that_never_stopped(split_dataset, tmp_path):
    pytest.importorskip("jax")
    from test_backend import BLOCK_TENSORFLOW, run_without_tensorflow

    out = run_without_tensorflow(
        BLOCK_TENSORFLOW + JAX_STOP_AND_RESUME, str(split_dataset), str(tmp_path / "runs"), cwd=tmp_path
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["whole"].splitlines()) == 4  # header and three epochs
    assert result["parts"] == result["whole"]
    assert result["weight_diff"] == 0.0
