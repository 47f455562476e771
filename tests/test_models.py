import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from imgai.config import load_config  # noqa: E402
from imgai.errors import ImgaiError  # noqa: E402
from imgai.modelfile import load_model, read_metadata, save_model  # noqa: E402
from imgai.models import (  # noqa: E402
    available_models,
    backbone_layers,
    create_model,
    unfreeze_backbone,
)
from imgai.names import BUILTIN_MODELS  # noqa: E402


def model_cfg(*overrides):
    return load_config([], list(overrides)).model


def test_registry_has_the_classic_cnn():
    assert "cnn" in available_models()


def test_the_light_name_list_is_the_registry():
    # The config validates model.name against imgai.names without importing this module.
    assert sorted(BUILTIN_MODELS) == available_models()


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
    model = create_model(
        model_cfg("model.filters=[8,16]", "model.kernel_size=5", "model.dense_units=32", "model.dropout=0.1"),
        (64, 64),
        3,
        3,
    )
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
    loaded, info = load_model(path)
    assert info.class_names == ("a", "b", "c") and info.image_size == (32, 32) and info.channels == 3
    x = np.full((1, 32, 32, 3), 128, "float32")
    assert np.allclose(model.predict_on_batch(x), loaded.predict_on_batch(x), atol=1e-6)


@pytest.mark.slow
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
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"shape": [1, 3], "imgai": False}


def test_plain_keras_file_gets_default_metadata(tmp_path):
    inputs = keras.Input((32, 32, 1))
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs))
    path = tmp_path / "plain.keras"
    keras.Model(inputs, outputs).save(path)
    _, info = load_model(path)
    assert info.class_names == ("class_0", "class_1", "class_2", "class_3")
    assert info.image_size == (32, 32) and info.color_mode == "grayscale" and info.channels == 1
    assert info.interpolation == "bilinear" and info.model is None
    assert info.decode_spec.channels == 1


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
    assert (
        backbone_layers(create_model(model_cfg("model.filters=[4]", "model.dense_units=4"), (32, 32), 3, 2))
        == []
    )


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


# ------------------------------------------------------------------------------ sepresnet


def layer_kinds(model, kind):
    return [l for l in model.layers if l.__class__.__name__ == kind]


def test_sepresnet_is_configurable_in_width_and_depth():
    from imgai.models import available_models

    assert "sepresnet" in available_models()
    model = create_model(
        model_cfg(
            "model.name=sepresnet", "model.widths=[8,16,24,32,40]", "model.depth=3", "model.dropout=0.1"
        ),
        (64, 64),
        3,
        4,
    )
    assert model.get_layer("stem_conv").filters == 8
    seps = layer_kinds(model, "SeparableConv2D")
    assert len(seps) == 3 * 3 + 1  # depth x stages, plus the top conv
    assert [s.filters for s in seps[::3]] == [16, 24, 32, 40]
    assert len(layer_kinds(model, "Add")) == 3 and len(layer_kinds(model, "BatchNormalization")) == 11
    assert model.get_layer("head_dropout").rate == 0.1
    assert model.output_shape == (None, 4)


def test_sepresnet_costs_fewer_flops_than_the_classic_cnn():
    from imgai.models import estimate_flops

    cnn = create_model(model_cfg(), (128, 128), 3, 5)
    sep = create_model(model_cfg("model.name=sepresnet"), (128, 128), 3, 5)
    assert estimate_flops(sep) < 0.7 * estimate_flops(cnn)
    assert sep.count_params() < cnn.count_params() / 10


def test_flop_count_of_the_classic_cnn_by_hand():
    from imgai.models import estimate_flops

    model = create_model(model_cfg("model.filters=[4]", "model.dense_units=6"), (32, 32), 3, 2)
    conv = 30 * 30 * 4 * 3 * 3 * 3  # 30x30 outputs, 4 filters, 3x3x3 kernel
    dense = 15 * 15 * 4 * 6 + 6 * 2
    assert estimate_flops(model) == 2 * (conv + dense)


# ------------------------------------------------------------------------------ precision


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_builds_trains_and_keeps_a_float32_softmax(precision):
    from imgai.models import precision_policy

    with precision_policy(precision):
        model = create_model(model_cfg("model.name=sepresnet", "model.widths=[8,16,32]"), (32, 32), 3, 3)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert model.get_layer("stem_conv").compute_dtype == precision.split("_")[1]
    assert model.get_layer("stem_conv").variable_dtype == "float32"
    assert model.get_layer("predictions").compute_dtype == "float32"
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    loss = float(model.train_on_batch(x, np.eye(3, dtype="float32")[[0, 1, 2, 0]]))
    assert np.isfinite(loss)
    probs = model.predict_on_batch(x)
    assert probs.dtype == np.float32 and np.allclose(np.asarray(probs).sum(axis=1), 1.0, atol=1e-5)
    if precision == "mixed_float16":
        assert model.optimizer.__class__.__name__ == "LossScaleOptimizer"


def test_precision_is_validated():
    with pytest.raises(ImgaiError, match="train.precision"):
        load_config([], ["train.precision=float16"])


# ------------------------------------------------------------------------------ backbones

from imgai.models import BACKBONES  # noqa: E402


@pytest.mark.parametrize(
    "name", ["mobilenetv3small", "mobilenetv3large", "efficientnetv2b0", "resnet50", "convnexttiny"]
)
def test_backbones_build_in_one_graph_with_their_preprocessing(name):
    model = create_model(
        model_cfg(f"model.name={name}", "model.weights=null", "model.head_units=8"), (32, 32), 3, 3
    )
    names = [l.name for l in model.layers]
    assert names[:2] == ["image", "resize"] and names[-4:] == [
        "head_pool",
        "head_dense",
        "head_dropout",
        "predictions",
    ]
    backbone = backbone_layers(model)
    assert len(backbone) > 50 and all(l.name.startswith("backbone_") for l in backbone)
    assert len(backbone) == len(names) - 2 - 4 - (BACKBONES[name][1] == "caffe")  # all but imgai's own layers
    assert not any(
        l.__class__.__name__ == "Functional" for l in model.layers
    )  # flat: Grad-CAM sees the convs
    first = (
        backbone[0].__class__.__name__
        if BACKBONES[name][1] == "own"
        else model.get_layer("preprocess_caffe").__class__.__name__
    )
    assert first in ("Rescaling", "Normalization", "Dense")
    assert all(l.trainable for l in backbone)  # weights=null: trained from scratch by default
    probs = np.asarray(model.predict_on_batch(np.full((2, 40, 40, 3), 128.0, "float32")))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_resnet_preprocessing_matches_keras_caffe_mode():
    model = create_model(model_cfg("model.name=resnet50", "model.weights=null"), (32, 32), 3, 2)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    ours = keras.Model(model.input, model.get_layer("preprocess_caffe").output).predict_on_batch(pixels)
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    assert np.allclose(np.asarray(ours), np.asarray(expected), atol=1e-3)
    assert not model.get_layer("preprocess_caffe").trainable


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory):
    """A weights file for MobileNetV3Small without its top, as a user would have on disk."""
    source = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(1)
    source.set_weights(
        [np.abs(rng.normal(0, 0.05, w.shape)).astype("float32") + 0.01 for w in source.get_weights()]
    )  # positive: valid BN variances
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small_notop.weights.h5"
    source.save_weights(path)
    return path, source


def test_backbone_weights_from_a_file_are_loaded_and_frozen(mobilenet_weights):
    path, source = mobilenet_weights
    model = create_model(model_cfg("model.name=mobilenetv3small", f"model.weights={path}"), (32, 32), 3, 3)
    theirs = [l for l in source.layers if l.weights]
    ours = [l for l in backbone_layers(model) if l.weights]
    assert len(ours) == len(theirs) > 10
    for a, b in zip(ours, theirs):
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            assert np.array_equal(wa, wb)
    assert not any(l.trainable for l in backbone_layers(model))  # loaded weights: frozen by default
    assert model.get_layer("predictions").trainable
    unfrozen = create_model(
        model_cfg("model.name=mobilenetv3small", f"model.weights={path}", "model.freeze=false"),
        (32, 32),
        3,
        3,
    )
    assert all(l.trainable for l in backbone_layers(unfrozen))


def test_unfreeze_backbone_opens_the_top_layers_but_not_batchnorm(mobilenet_weights, tmp_path):
    model = create_model(
        model_cfg("model.name=mobilenetv3small", f"model.weights={mobilenet_weights[0]}"), (32, 32), 3, 3
    )
    save_model(model, tmp_path / "m.keras", {})
    reloaded, _ = load_model(tmp_path / "m.keras")  # the names carry the contract through the file
    assert [l.name for l in backbone_layers(reloaded)] == [l.name for l in backbone_layers(model)]
    assert unfreeze_backbone(model, 10) > 0
    layers = backbone_layers(model)
    assert not any(l.trainable for l in layers[:-10])
    assert all(l.trainable != (l.__class__.__name__ == "BatchNormalization") for l in layers[-10:])


def test_wrong_or_missing_weights_file_is_one_clear_error(tmp_path, mobilenet_weights):
    with pytest.raises(ImgaiError, match="weights file .* not found"):
        create_model(
            model_cfg("model.name=mobilenetv3small", f"model.weights={tmp_path / 'nope.h5'}"), (32, 32), 3, 3
        )
    with pytest.raises(ImgaiError, match="could not load backbone weights .* weights file of ResNet50"):
        create_model(
            model_cfg("model.name=resnet50", f"model.weights={mobilenet_weights[0]}"), (32, 32), 3, 3
        )


def test_imagenet_download_failure_says_which_file_to_place_where(tmp_path, monkeypatch):
    import urllib.error

    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):  # fail fast; a test never reaches the internet
        raise urllib.error.URLError("no network")

    (tmp_path / "keras_home").mkdir()
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras_home"))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(ImgaiError) as info:
        create_model(model_cfg("model.name=mobilenetv3small"), (32, 32), 3, 3)
    message = info.value.message
    assert "\n" not in message and "ImageNet weights of MobileNetV3Small" in message
    target = tmp_path / "keras_home" / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert f"place it at {target}" in message
    assert "https://storage.googleapis.com/" in message and "model.weights=null" in message
    assert file_utils.get_file.__name__ == "get_file"  # the recorder was removed again


@pytest.mark.slow
def test_saved_backbone_models_load_in_plain_keras(tmp_path, mobilenet_weights):
    paths = []
    for name in ("mobilenetv3small", "resnet50", "convnexttiny"):
        weights = (
            f"model.weights={mobilenet_weights[0]}" if name == "mobilenetv3small" else "model.weights=null"
        )
        model = create_model(model_cfg(f"model.name={name}", weights), (32, 32), 3, 2)
        path = tmp_path / f"{name}.keras"
        save_model(model, path, {"class_names": ["a", "b"]})
        paths.append(
            (str(path), np.asarray(model.predict_on_batch(np.full((1, 32, 32, 3), 99.0, "float32"))))
        )
    code = (
        "import sys, json, numpy as np, keras\n"
        "assert 'imgai' not in sys.modules\n"
        "for path, expected in json.loads(sys.argv[1]):\n"
        "    m = keras.saving.load_model(path)\n"
        "    got = m.predict_on_batch(np.full((1, 32, 32, 3), 99.0, 'float32'))\n"
        "    assert np.isfinite(got).all() and np.allclose(got, expected, atol=1e-5), (path, got, expected)\n"
        "print('ok')\n"
    )
    payload = json.dumps([(p, e.tolist()) for p, e in paths])
    proc = subprocess.run(
        [sys.executable, "-c", code, payload], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.slow
def test_backbone_config_trains_end_to_end_from_a_weights_file(split_dataset, tmp_path, mobilenet_weights):
    from imgai.train import train

    config = load_config(
        [],
        [
            f"data.root={split_dataset}",
            "data.image_size=32",
            "data.batch_size=8",
            "model.name=mobilenetv3small",
            f"model.weights={mobilenet_weights[0]}",
            "model.head_units=16",
            "train.epochs=1",
            f"output.dir={tmp_path}",
            "augment.flip=horizontal",
        ],
    )
    result = train(config, log=lambda line: None)
    model, info = load_model(result.best_model)
    assert info.model == "mobilenetv3small" and info.class_names == ("circle", "square", "triangle")
    assert info.keras_version == keras.__version__
    assert len(backbone_layers(model)) > 50 and not any(l.trainable for l in backbone_layers(model))
