"""Test-time augmentation: the views, the average, and eval / predict using the one wrapper."""

import numpy as np
import pytest

from imgai.errors import ImgaiError
from imgai.tta import TestTimeAugmentation, views


def test_views_are_the_image_its_mirror_and_corner_crops():
    images = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
    flip = views(images, "flip")
    assert len(flip) == 2
    np.testing.assert_array_equal(flip[0], images)
    np.testing.assert_array_equal(flip[1], images[:, :, ::-1])
    crops = views(images, "flip+crops")
    assert len(crops) == 10 and all(v.shape == images.shape for v in crops)
    # Each crop comes with its mirror.
    for crop, mirror in zip(crops[2::2], crops[3::2]):
        np.testing.assert_array_equal(mirror, crop[:, :, ::-1])
    # The top-left crop starts at the image's top-left pixel; the bottom-right at its last one.
    assert crops[2][0, 0, 0, 0] == images[0, 0, 0, 0]
    assert crops[8][0, -1, -1, 0] == images[0, -1, -1, 0]
    gray = views(np.zeros((1, 8, 8, 1), np.float32), "flip+crops")
    assert all(v.shape == (1, 8, 8, 1) for v in gray)


class LeftRightModel:
    """Probability of class 0 = the left column's share of the brightness: a mirror swaps it."""

    output_shape = (None, 2)

    def predict_on_batch(self, x):
        left, right = x[:, :, 0].sum(axis=(1, 2)), x[:, :, -1].sum(axis=(1, 2))
        p = left / (left + right)
        return np.stack([p, 1 - p], axis=1)


def test_the_probabilities_are_averaged_over_the_views():
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[:, :, 0], x[:, :, -1] = 3.0, 1.0
    tta = TestTimeAugmentation(LeftRightModel(), "flip")
    np.testing.assert_allclose(tta.predict_on_batch(x), [[0.5, 0.5]])  # (0.75 + 0.25) / 2
    np.testing.assert_allclose(tta.plain_probabilities(), [[0.75, 0.25]])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny untrained model of the shapes' classes that is not mirror-symmetric."""
    import keras

    from imgai.modelfile import ModelInfo, save_model

    keras.utils.set_random_seed(1)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Rescaling(1 / 255),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ]
    )
    path = tmp_path_factory.mktemp("tta") / "tiny.keras"
    save_model(model, path, ModelInfo(("circle", "square", "triangle"), (32, 32)))
    return path


def test_eval_reports_the_gain_and_predict_averages(split_dataset, tiny_model, tmp_path):
    import keras
    from PIL import Image

    from imgai import evaluate, predict

    plain = evaluate(tiny_model, split_dataset / "test", output_dir=tmp_path / "a", log=lambda _: None)
    lines: list[str] = []
    flipped = evaluate(
        tiny_model, split_dataset / "test", output_dir=tmp_path / "b", tta="flip", log=lines.append
    )
    tta = flipped.metrics["tta"]
    assert tta["accuracy_without"] == plain.accuracy and tta["accuracy"] == flipped.accuracy
    assert tta["gain"] == pytest.approx(flipped.accuracy - plain.accuracy)
    assert any(line.startswith("Test-time augmentation flip (2 views per image)") for line in lines)

    image = sorted((split_dataset / "test" / "circle").iterdir())[0]
    [row] = predict(image, tiny_model, tta="flip")
    model = keras.saving.load_model(tiny_model)
    x = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32)[None]
    expected = (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(
        [row.probabilities[c] for c in ("circle", "square", "triangle")], expected[0], atol=1e-5
    )

    with pytest.raises(ImgaiError, match="`tta` must be one of none, flip, flip\\+crops"):
        predict(image, tiny_model, tta="rotate")
