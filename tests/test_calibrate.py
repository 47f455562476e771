"""Temperature scaling: the arithmetic on hand-made numbers, then a tiny trained model calibrated
end to end (plain Keras loads the file, every image keeps its predicted class), and bad input."""

import json

import numpy as np
import pytest

from conftest import run_imgai
from imgai.calibrate import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from imgai.config import load_config
from imgai.errors import ImgaiError
from imgai.train import train

TINY = ["model.filters=[8,16]", "model.dense_units=16", "data.image_size=[32,32]", "data.batch_size=8"]


def tiny_run(data_root, tmp_path, name, *overrides):
    config = load_config(
        [], [f"data.root={data_root}", f"output.dir={tmp_path / 'runs'}", *TINY, "train.epochs=2", *overrides]
    )
    return train(config, name=name, log=lambda _: None).run_dir


# ----------------------------------------------------------------------------- arithmetic


def test_ece_by_hand():
    # Two bins used: confidence 0.9 (2 images, 1 right: |0.5 - 0.9| = 0.4) and 0.6 (2 images, both
    # right: |1 - 0.6| = 0.4); each bin holds half the images -> ECE 0.4.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.4)
    # Perfectly calibrated in every bin -> 0.
    assert expected_calibration_error(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == 0.0


def test_fit_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(20000, 3))
    true_t = 2.5
    labels = np.array([rng.choice(3, p=p) for p in softmax(logits, true_t)])
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    assert negative_log_likelihood(logits, labels, fitted) < negative_log_likelihood(logits, labels)
    assert expected_calibration_error(softmax(logits, fitted), labels) < expected_calibration_error(
        softmax(logits), labels
    )


def test_all_right_fit_images_only_sharpen():
    # Every image right: the likelihood grows as T shrinks, until it is flat to float precision.
    logits = np.tile([5.0, 0.0], (10, 1))
    assert fit_temperature(logits, np.zeros(10, dtype=int)) < 0.2


def test_a_model_without_a_softmax_head_is_refused_in_one_line():
    import keras

    from imgai.calibrate import softmax_head

    linear = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ImgaiError, match="not one Dense layer with a softmax .*last layer: Dense"):
        softmax_head(linear)
    after = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="softmax"), keras.layers.Activation("relu")]
    )
    with pytest.raises(ImgaiError, match="last layer: Activation"):
        softmax_head(after)


# ----------------------------------------------------------------------------- end to end


def test_calibrated_file_loads_in_plain_keras_with_the_same_class_for_every_image(split_dataset, tmp_path):
    import keras

    from imgai import calibrate
    from imgai.data import load_images, scan_folder
    from imgai.modelfile import load_model

    run_dir = tiny_run(split_dataset, tmp_path, "cal")
    lines: list[str] = []
    result = calibrate(run_dir, target_accuracy=0.5, log=lines.append)
    assert result.model_path == run_dir / "calibrated.keras" and result.report_split == "test"
    assert "Temperature" in lines[-1] and "ECE" in lines[-1]

    plain = keras.saving.load_model(result.model_path)  # safe mode, no imgai, no custom layer
    original, info = load_model(run_dir / "best.keras")
    for split in ("train", "val", "test"):
        x = load_images(scan_folder(split_dataset / split), info.decode_spec, progress=False).images
        before, after = original.predict(x, verbose=0), plain.predict(x, verbose=0)
        np.testing.assert_array_equal(before.argmax(axis=1), after.argmax(axis=1))
        # softmax(z / T): the log-odds between classes shrink (T > 1) or grow by exactly 1/T.
        log_odds = np.log(before[:, 1:]) - np.log(before[:, :1])
        np.testing.assert_allclose(
            np.log(after[:, 1:]) - np.log(after[:, :1]), log_odds / result.temperature, rtol=1e-3, atol=1e-3
        )

    _, calibrated_info = load_model(result.model_path)
    assert calibrated_info.temperature == pytest.approx(result.temperature)
    assert calibrated_info.min_confidence == result.min_confidence
    report = json.loads((run_dir / "calibration.json").read_text())
    assert report["temperature"] == pytest.approx(result.temperature)
    assert {"ece_before", "ece_after", "ece_fit_before", "ece_fit_after"} <= set(report)

    with pytest.raises(ImgaiError, match="never overwritten"):
        calibrate(run_dir)
    # Calibrating the calibrated model multiplies the temperatures into the metadata.
    again = calibrate(result.model_path, output=tmp_path / "twice.keras", log=lambda _: None)
    _, twice = load_model(tmp_path / "twice.keras")
    assert twice.temperature == pytest.approx(result.temperature * again.temperature)


def test_train_calibrate_without_test_split_reports_on_a_held_out_half(flat_dataset, tmp_path):
    from imgai.modelfile import load_model

    lines: list[str] = []
    config = load_config(
        [],
        [f"data.root={flat_dataset}", f"output.dir={tmp_path / 'runs'}", *TINY, "train.epochs=1"]
        + ["data.validation_split=0.4", "train.calibrate=true"],
    )
    run_dir = train(config, name="halves", log=lines.append).run_dir
    assert any("No test split" in line for line in lines)
    report = json.loads((run_dir / "calibration.json").read_text())
    assert report["fit_images"] + report["report_images"] == 12  # 40 % of 30 images
    assert report["report_split"].startswith("held-out")
    assert load_model(run_dir / "calibrated.keras").info.temperature == pytest.approx(report["temperature"])


@pytest.mark.slow
def test_cli_calibrate_and_its_bad_input(flat_dataset, tmp_path):
    run_dir = tiny_run(flat_dataset, tmp_path, "noval", "train.calibrate=false")
    no_val = run_imgai("calibrate", "--model", str(run_dir), cwd=tmp_path)
    assert no_val.returncode == 2
    assert no_val.stderr.count("\n") == 1 and "no validation split" in no_val.stderr
    bad = run_imgai("calibrate", "--model", str(run_dir), "--target-accuracy", "1.5", cwd=tmp_path)
    assert bad.returncode == 2 and "--target-accuracy" in bad.stderr and bad.stderr.count("\n") == 1
    wrong = run_imgai("calibrate", "--model", str(run_dir), "-o", str(tmp_path / "x.h5"), cwd=tmp_path)
    assert wrong.returncode == 2 and ".keras" in wrong.stderr
    assert not (run_dir / "calibrated.keras").exists()
