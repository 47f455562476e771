"""Grad-CAM: which layer is read, where its cells sit, and whether the heat lands on the object."""

import numpy as np
import pytest
from PIL import Image

from imgai.errors import ImgaiError
from imgai.quiet import import_keras
from imgai.sample_data import draw_shape
from test_backend import BLOCK_TENSORFLOW, HAS_JAX, run_without_tensorflow

keras = import_keras()
layers = keras.layers

from imgai.config import ModelConfig  # noqa: E402
from imgai.explain import (  # noqa: E402
    HEAT_FLOOR,
    cell_geometry,
    choose_layer,
    explain_file,
    find_target_layer,
    grad_cam,
    overlay,
    place_heatmap,
)
from imgai.modelfile import ModelInfo, save_model  # noqa: E402
from imgai.models import create_model  # noqa: E402


def tiny_cnn(size=48, classes=2, filters=(16, 32, 32)):
    return create_model(
        ModelConfig(filters=list(filters), dense_units=32, dropout=0.2), (size, size), 3, classes
    )


def residual_net(size=32, classes=3):
    """Layers a registry backbone uses: BatchNormalization, SeparableConv2D, residual Add,
    'same' padding and strides, global pooling."""
    inputs = keras.Input((None, None, 3))
    x = layers.Resizing(size, size)(inputs)
    x = layers.Rescaling(1 / 255)(x)
    x = layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    shortcut = x
    y = layers.SeparableConv2D(8, 3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    x = layers.Add(name="residual")([shortcut, y])
    x = layers.Activation("relu", name="last_act")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def nested_net(size=32, classes=3):
    """A backbone used as one layer, pooling inside it (so its output is not a feature map)."""
    backbone_in = keras.Input((size, size, 3))
    b = layers.Conv2D(8, 3, padding="same", activation="relu", name="inner_conv1")(backbone_in)
    b = layers.MaxPooling2D(2)(b)
    b = layers.Conv2D(8, 3, padding="same", activation="relu", name="inner_conv2")(b)
    b = layers.GlobalAveragePooling2D()(b)
    backbone = keras.Model(backbone_in, b, name="backbone")
    inputs = keras.Input((None, None, 3))
    x = layers.Resizing(size, size)(inputs)
    x = layers.Rescaling(1 / 255)(x)
    x = backbone(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def test_layer_search_on_the_classic_cnn():
    model = tiny_cnn()
    path = find_target_layer(model)
    assert [layer.name for layer in path] == ["conv3"]  # the trailing max-pooling is skipped
    assert find_target_layer(model, "conv2")[-1].name == "conv2"
    with pytest.raises(ImgaiError, match="no layer 'dense'"):
        find_target_layer(model, "dense")
    # valid convolutions: cell i of conv3 looks at pixel 4 i + 8.5 (not a plain stretch)
    geometry = cell_geometry(path, (8, 8), (48, 48))
    assert geometry.scale == (4.0, 4.0) and geometry.offset == (8.5, 8.5)


def test_layer_search_on_residual_and_nested_models():
    residual = residual_net()
    assert find_target_layer(residual)[-1].name == "last_act"
    nested = nested_net()
    path = find_target_layer(nested)
    assert [layer.name for layer in path] == ["backbone", "inner_conv2"]
    # 'same' padding: cells are evenly spread, the geometry crosses into the sub-model
    assert cell_geometry(path, (16, 16), (32, 32)).scale == (2.0, 2.0)
    for model, side in ((residual, 16), (nested, 16)):
        x = np.random.default_rng(0).uniform(0, 255, (2, 40, 40, 3)).astype("float32")
        result = grad_cam(model, x)
        assert result.heatmaps.shape == (2, side, side)
        assert 0.0 <= result.heatmaps.min() and result.heatmaps.max() <= 1.0
        # the probabilities are the model's own
        np.testing.assert_allclose(result.probabilities, model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)


def test_model_without_feature_map_is_refused():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(ImgaiError, match="no convolutional feature map"):
        grad_cam(model, np.zeros((1, 8), "float32"))


def test_place_heatmap_follows_the_geometry():
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2] = 1.0
    geometry = cell_geometry((), (4, 4), (16, 16))  # no layers: stretch, cell centres at 4 i + 1.5
    placed = place_heatmap(heat, geometry, (16, 16), (16, 16))
    row, col = np.unravel_index(placed.argmax(), placed.shape)
    assert (row, col) in {(5, 9), (5, 10), (6, 9), (6, 10)}


def test_place_heatmap_is_smooth_and_stays_in_range():
    heat = np.zeros((3, 3), np.float32)
    heat[1, 1] = 1.0
    placed = place_heatmap(heat, cell_geometry((), (3, 3), (12, 12)), (12, 12), (120, 120))
    assert placed.min() >= 0 and placed.max() <= 1
    # bicubic, not bilinear: no crease where the slope changes at the peak's cell centre
    profile = placed[60].astype(np.float64)
    assert np.abs(np.diff(profile, 2)).max() < 0.01


def test_overlay_leaves_cool_regions_as_they_are():
    photo = np.full((4, 4, 3), (40, 60, 200), np.uint8)  # a blue object
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0], heat[0, 1] = 1.0, HEAT_FLOOR / 2
    mixed = overlay(photo, heat)
    assert (mixed[1:] == photo[1:]).all() and (mixed[0, 1] == photo[0, 1]).all()  # below the floor: untouched
    assert (mixed[0, 0] != photo[0, 0]).any()


def test_coarse_last_map_reads_a_finer_layer_and_says_so():
    model = tiny_cnn(size=32, filters=(8, 8, 8))  # conv3 is 4x4 on a 32-px image
    path, note = choose_layer(model)
    assert path[-1].name == "conv2"
    assert "'conv3' gives only a 4x4 map" in note and "--layer" in note and "conv2 13x13" in note
    result = grad_cam(model, np.zeros((1, 32, 32, 3), np.float32))
    assert result.layer == "conv2" and result.heatmaps.shape[1:] == (13, 13) and result.note == note
    path, note = choose_layer(model, "conv3")  # asked for: read, and said to be coarse
    assert path[-1].name == "conv3" and "too coarse" in note and "--layer" in note
    assert choose_layer(tiny_cnn(size=48, filters=(8, 8, 8)))[1] is None  # 8x8: fine as it is


def _shapes(rng, count, size, shapes=("circle", "cross")):
    images, labels, boxes = [], [], []
    for i in range(count):
        img, box = draw_shape(rng, shapes[i % 2], size)
        images.append(np.asarray(img))
        labels.append(i % 2)
        boxes.append(box)
    return np.stack(images).astype("float32"), np.array(labels), boxes


@pytest.fixture(scope="module")
def shapes_model():
    """Circle vs cross, 48 px: about 97 % accurate after a few seconds of training."""
    size = 48
    x, y, _ = _shapes(np.random.default_rng(4), 600, size)
    keras.utils.set_random_seed(4)
    model = tiny_cnn(size)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, keras.utils.to_categorical(y, 2), epochs=10, batch_size=32, verbose=0)
    return model, size


def test_heatmap_peak_lies_on_the_object(shapes_model):
    model, size = shapes_model
    x, y, boxes = _shapes(np.random.default_rng(104), 60, size)
    result = grad_cam(model, x)
    assert (result.probabilities.argmax(1) == y).mean() >= 0.8, "the tiny model did not learn the shapes"
    peak_on_object, hotter_inside = 0, 0
    for heat, (x0, y0, x1, y1) in zip(result.heatmaps, boxes):
        placed = place_heatmap(heat, result.geometry, (size, size), (size, size))
        row, col = np.unravel_index(placed.argmax(), placed.shape)
        peak_on_object += (x0 <= col + 0.5 <= x1) and (y0 <= row + 0.5 <= y1)
        inside = np.zeros(placed.shape, bool)
        inside[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
        hotter_inside += placed[inside].mean() > placed[~inside].mean()
    # measured 0.73-0.88 (peak) and 0.87-0.97 (hotter inside) over six training seeds
    assert peak_on_object / len(boxes) >= 0.6
    assert hotter_inside / len(boxes) >= 0.7


def test_explain_file_writes_an_overlay(shapes_model, tmp_path):
    model, size = shapes_model
    img, _ = draw_shape(np.random.default_rng(7), "cross", 120)  # any size: the model resizes
    path = tmp_path / "cross.png"
    img.save(path)
    meta = ModelInfo(("circle", "cross"), (size, size), "rgb")
    out = tmp_path / "why.png"
    result = explain_file(model, meta, path, out, class_name="circle")
    assert result["explained"] == "circle" and result["layer"] == "conv3" and result["note"] is None
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] > 300
    with pytest.raises(ImgaiError, match="unknown class 'square'"):
        explain_file(model, meta, path, out, class_name="square")
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(ImgaiError, match="cannot read image"):
        explain_file(model, meta, tmp_path / "bad.jpg", out)


def test_saved_model_explains_the_same(shapes_model, tmp_path):
    """A model loaded back from .keras (how the CLI gets it) gives the same heat map."""
    from imgai.modelfile import load_model

    model, size = shapes_model
    save_model(
        model,
        tmp_path / "m.keras",
        ModelInfo(("circle", "cross"), (size, size), "rgb"),
    )
    loaded, _ = load_model(tmp_path / "m.keras")
    x, _, _ = _shapes(np.random.default_rng(9), 4, size)
    np.testing.assert_allclose(grad_cam(loaded, x).heatmaps, grad_cam(model, x).heatmaps, atol=1e-4)


@pytest.mark.parametrize("nested", [True, False])
def test_keras_applications_backbone(nested):
    """A pretrained-style backbone (no weights here), used as one layer or built flat."""
    inputs = keras.Input((None, None, 3))
    x = layers.Resizing(64, 64)(inputs)
    if nested:
        backbone = keras.applications.MobileNetV2(
            include_top=False, weights=None, alpha=0.35, input_shape=(64, 64, 3)
        )
        features = backbone(x)
    else:
        features = keras.applications.MobileNetV2(
            include_top=False, weights=None, alpha=0.35, input_tensor=x
        ).output
    pooled = layers.GlobalAveragePooling2D()(features)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(pooled))
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3))
    last = "mobilenetv2_0.35_64" if nested else "out_relu"
    result = grad_cam(model, x, layer=last)
    assert result.heatmaps.shape == (2, 2, 2) and result.layer == last
    assert result.geometry.scale == (32.0, 32.0)  # five stride-2 stages
    assert "2x2 map, too coarse" in result.note
    # By default a 2x2 map is passed over for the last one of 8x8 (stride 8), and the note says so.
    finer = grad_cam(model, x)
    assert finer.heatmaps.shape == (2, 8, 8) and finer.geometry.scale == (8.0, 8.0)
    assert f"'{finer.layer}' (8x8) instead" in finer.note


# Grad-CAM of a saved model on the JAX backend, TensorFlow blocked; prints the heat maps as JSON.
JAX_GRAD_CAM = """
import json, sys
import numpy as np
from imgai.explain import grad_cam
from imgai.modelfile import load_model
model, _ = load_model(sys.argv[1])
result = grad_cam(model, np.load(sys.argv[2]))
print(json.dumps({"heatmaps": result.heatmaps.tolist(), "classes": result.class_indices.tolist(),
                  "probabilities": result.probabilities.tolist(), "layer": result.layer}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="needs jax (pip install -e '.[test]')")
def test_grad_cam_on_jax_gives_the_tensorflow_heat_maps(shapes_model, tmp_path):
    """The same saved model explained on JAX (jax.value_and_grad) and on TensorFlow (GradientTape)."""
    import json

    model, size = shapes_model
    meta = {"class_names": ["circle", "cross"], "image_size": [size, size], "color_mode": "rgb"}
    save_model(model, tmp_path / "m.keras", meta)
    x, _, _ = _shapes(np.random.default_rng(11), 6, size)
    np.save(tmp_path / "x.npy", x)
    out = run_without_tensorflow(
        BLOCK_TENSORFLOW + JAX_GRAD_CAM, str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), cwd=tmp_path
    )
    on_jax = json.loads(out.stdout.strip().splitlines()[-1])
    on_tf = grad_cam(model, x)
    assert on_jax["layer"] == on_tf.layer and on_jax["classes"] == on_tf.class_indices.tolist()
    np.testing.assert_allclose(on_jax["probabilities"], on_tf.probabilities, atol=1e-4)
    np.testing.assert_allclose(on_jax["heatmaps"], on_tf.heatmaps, atol=1e-3)
    assert np.asarray(on_jax["heatmaps"]).max() == 1.0  # real maps, not all zeros
