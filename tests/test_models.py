import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from imgai.config import load_config  # noqa: E402
from imgai.errors import ImgaiError  # noqa: E402
from imgai.models import (  # noqa: E402
    available_models,
    backbone_layers,
    create_model,
    load_model,
    read_metadata,
    save_model,
    unfreeze_backbone,
)


def model_cfg(*overrides):
    return load_config([], list(overrides)).model


def test_registry_has_the_classic_cnn():
    assert "cnn" in available_models()


def test_classic_cnn_layers_match_the_tutorial():
    model = create_model(model_cfg(), (224, 224), 3, 5)
    convs = [l for l in model.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    assert sum(l.__class__.__name__ == "MaxPooling2D" for l in model.layers) == 3
    dense = [l for l in model.layers if l.__class__.__name__ == "Dense"]
    assert dense[0].units == 512 and dense[-1].units == 5 and dense[-1].activation.__name__ == "softmax"
    assert model.get_layer("dropout").rate == 0.5
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)
    assert model.output_shape == (None, 5)


@pytest.mark.parametrize("size, classes, channels", [((32, 32), 2, 3), ((48, 64), 7, 1), ((96, 96), 3, 3)])
def test_any_size_any_class_count(size, classes, channels):
    model = create_model(model_cfg("model.dense_units=16", "model.filters=[4,8]"), size, channels, classes)
    x = np.random.default_rng(0).uniform(0, 255, (2, 50, 70, channels)).astype("float32")  # any input size
    probs = np.asarray(model.predict_on_batch(x))
    assert probs.shape == (2, classes)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_configurable_cnn():
    model = create_model(model_cfg("model.filters=[8,16]", "model.kernel_size=5", "model.dense_units=32", "model.dropout=0.1"), (64, 64), 3, 3)
    convs = [l for l in model.layers if l.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [8, 16] and convs[0].kernel_size == (5, 5)
    assert model.get_layer("dense").units == 32 and model.get_layer("dropout").rate == 0.1


def test_too_small_image_for_the_blocks_is_a_clear_error():
    with pytest.raises(ImgaiError, match="too small"):
        create_model(model_cfg("model.filters=[8,8,8,8,8,8]"), (32, 32), 3, 2)


def test_one_class_is_rejected():
    with pytest.raises(ImgaiError, match="at least 2 classes"):
        create_model(model_cfg(), (32, 32), 3, 1)


def test_save_and_load_carry_class_names(tmp_path):
    model = create_model(model_cfg("model.dense_units=8", "model.filters=[4]"), (32, 32), 3, 3)
    path = tmp_path / "m.keras"
    meta = {"class_names": ["a", "b", "c"], "image_size": [32, 32], "color_mode": "rgb"}
    save_model(model, path, meta)
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
    assert read_metadata(path)["class_names"] == ["a", "b", "c"]
    loaded, loaded_meta = load_model(path)
    assert loaded_meta["class_names"] == ["a", "b", "c"]
    x = np.full((1, 32, 32, 3), 128, "float32")
    assert np.allclose(model.predict_on_batch(x), loaded.predict_on_batch(x), atol=1e-6)


def test_saved_file_loads_in_plain_keras_without_imgai(tmp_path):
    model = create_model(model_cfg("model.dense_units=8", "model.filters=[4]"), (32, 32), 3, 3)
    path = tmp_path / "m.keras"
    save_model(model, path, {"class_names": ["a", "b", "c"]})
    code = (
        "import sys, json, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        "p = m.predict(np.zeros((1, 40, 40, 3), 'float32'), verbose=0)\n"
        "print(json.dumps({'shape': list(p.shape), 'imgai': any(k.startswith('imgai') for k in sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"shape": [1, 3], "imgai": False}


def test_plain_keras_file_gets_default_metadata(tmp_path):
    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs))
    path = tmp_path / "plain.keras"
    keras.Model(inputs, outputs).save(path)
    _, meta = load_model(path)
    assert meta["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    assert meta["image_size"] == [32, 32] and meta["color_mode"] == "grayscale"


def test_wrong_model_files_are_clear_errors(tmp_path):
    with pytest.raises(ImgaiError, match="not found"):
        load_model(tmp_path / "missing.keras")
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    with pytest.raises(ImgaiError, match="not a Keras model file"):
        load_model(text)
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ImgaiError, match="no config.json"):
        load_model(other_zip)


# --------------------------------------------------------------------- the backbone contract


def nested_backbone_model():
    """A backbone as one nested, frozen keras.Model named backbone (the keras.applications way)."""
    inner_in = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="block1_conv")(inner_in)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.Conv2D(4, 3, name="block2_conv")(x)
    backbone = keras.Model(inner_in, x, name="backbone")
    backbone.trainable = False
    inputs = keras.Input((16, 16, 3))
    y = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(y))


def test_backbone_layers_of_a_nested_backbone_and_of_a_model_without_one():
    model = nested_backbone_model()
    assert [l.name for l in backbone_layers(model)] == ["block1_conv", "block1_bn", "block2_conv"]
    assert backbone_layers(create_model(model_cfg("model.filters=[4]", "model.dense_units=4"), (32, 32), 3, 2)) == []


def test_unfreeze_top_layers_keeps_batchnorm_frozen():
    model = nested_backbone_model()
    assert len(model.trainable_weights) == 2  # only the head
    assert unfreeze_backbone(model, 2) == 1  # block1_bn (BatchNorm) and block2_conv: only the conv
    trainable = {l.name for l in backbone_layers(model) if l.trainable}
    assert trainable == {"block2_conv"}
    assert len(model.trainable_weights) == 4
    assert unfreeze_backbone(model, 99) == 2  # more than there are: all of them
    assert unfreeze_backbone(model, "all") == 2
    assert {l.name for l in backbone_layers(model) if l.trainable} == {"block1_conv", "block2_conv"}
