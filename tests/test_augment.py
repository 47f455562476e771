import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import REPO, run_imgai  # noqa: E402
from imgai.augment import (  # noqa: E402
    Augmenter,
    _mix_caption,
    augment_batches,
    batch_seed,
    build_layers,
    describe,
    preview,
)
from imgai.config import load_config  # noqa: E402
from imgai.data import DecodedImages, DecodeSpec  # noqa: E402
from imgai.errors import ImgaiError  # noqa: E402

RGB32 = DecodeSpec((32, 32))

EVERYTHING = [
    "augment.flip=horizontal",
    "augment.rotation=0.1",
    "augment.zoom=0.1",
    "augment.translation=0.1",
    "augment.shear=0.1",
    "augment.contrast=0.2",
    "augment.brightness=0.2",
    "augment.saturation=0.2",
    "augment.hue=0.1",
    "augment.crop=0.75",
    "augment.randaugment=2",
    "augment.erasing=0.5",
    "augment.mixup=0.2",
    "augment.cutmix=1.0",
]


def aug_cfg(*overrides):
    return load_config([], list(overrides)).augment


def batch(n=8, size=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = np.eye(classes, dtype="float32")[np.arange(n) % classes]
    return x, y


def test_off_by_default_and_source_returned_unchanged():
    cfg = aug_cfg()
    assert not cfg.is_active() and describe(cfg) == "none"
    source = DecodedImages(np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 0, 1]), [""] * 4).batches(2, 2)
    assert augment_batches(source, cfg, RGB32, seed=1) is source


def test_every_switch_maps_onto_its_keras_layer():
    layers = build_layers(aug_cfg(*EVERYTHING), RGB32, seed=1)
    kinds = [layer.__class__.__name__ for layer in layers]
    assert kinds == [
        "RandomCrop",
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomShear",
        "RandomContrast",
        "RandomBrightness",
        "RandomSaturation",
        "RandomHue",
        "RandAugment",
        "RandomErasing",
        "MixUp",
        "CutMix",
    ]
    assert layers[0].height == 24 and layers[0].width == 24  # crop=0.75 of 32
    assert layers[2].fill_mode == "reflect" and layers[-2].alpha == 0.2
    assert all(layer.compute_dtype == "float32" for layer in layers)


def test_all_layers_run_together_in_one_compiled_step():
    augmenter = Augmenter(aug_cfg(*EVERYTHING), RGB32, seed=1)
    x, y = batch()
    out_x, out_y = augmenter(x, y, epoch=0, index=0)
    assert out_x.shape == (8, 24, 24, 3) and out_x.dtype == np.float32  # cropped; the model resizes back
    assert np.isfinite(out_x).all() and out_x.min() >= 0 and out_x.max() <= 255
    assert out_y.shape == y.shape
    assert np.allclose(out_y.sum(axis=1), 1.0, atol=1e-5)
    assert (out_y.max(axis=1) < 0.999).any()  # MixUp / CutMix blended some labels


def test_random_every_epoch_and_reproducible_from_the_seed():
    cfg = aug_cfg("augment.flip=horizontal", "augment.rotation=0.2", "augment.contrast=0.3")
    x, y = batch()
    first = Augmenter(cfg, RGB32, seed=7)
    again = Augmenter(cfg, RGB32, seed=7)  # a new process would build it like this
    other_seed = Augmenter(cfg, RGB32, seed=8)
    a = first(x, y, epoch=0, index=3)[0]
    assert np.array_equal(a, first(x, y, epoch=0, index=3)[0])  # no hidden state carried over
    assert np.array_equal(a, again(x, y, epoch=0, index=3)[0])
    assert not np.allclose(a, first(x, y, epoch=1, index=3)[0])  # next epoch: new changes
    assert not np.allclose(a, first(x, y, epoch=0, index=4)[0])  # next batch: new changes
    assert not np.allclose(a, other_seed(x, y, epoch=0, index=3)[0])
    assert not np.allclose(a, x)


def test_labels_untouched_without_mixing():
    x, y = batch()
    _, out_y = Augmenter(aug_cfg("augment.flip=horizontal", "augment.zoom=0.2"), RGB32, seed=1)(x, y)
    assert np.array_equal(out_y, y)


def test_batch_seeds_are_distinct_and_fit_every_backend():
    seeds = {tuple(batch_seed(123, e, i, 3)) for e in range(3) for i in range(50)}
    assert len(seeds) == 150
    assert all(0 <= s < 2**31 for group in seeds for s in group)


def test_wrapped_batches_advance_the_epoch_and_keep_the_source_order():
    images = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    source = DecodedImages(images, np.arange(10) % 2, [""] * 10).batches(2, 4, shuffle=True, seed=3)
    wrapped = augment_batches(source, aug_cfg("augment.brightness=0.3"), RGB32, seed=3)
    assert len(wrapped) == len(source) == 3
    x0, y0 = wrapped[0]
    assert x0.shape == (4, 32, 32, 3) and np.array_equal(y0, source[0][1])
    assert np.array_equal(x0, wrapped[0][0])
    wrapped.on_epoch_end()
    assert wrapped.epoch == 1
    assert not np.array_equal(x0, wrapped[0][0])  # a new epoch: new order and new changes


def test_colour_only_augmentation_on_grayscale_is_a_clear_error():
    with pytest.raises(ImgaiError, match="augment.saturation needs colour images"):
        build_layers(aug_cfg("augment.saturation=0.2"), DecodeSpec((32, 32), "grayscale"), seed=1)


def test_bad_augment_values_name_the_key():
    with pytest.raises(ImgaiError, match="augment.flip"):
        aug_cfg("augment.flip=sideways")
    with pytest.raises(ImgaiError, match="did you mean augment.rotation"):
        aug_cfg("augment.rotatoin=0.1")
    with pytest.raises(ImgaiError, match="augment.erasing_scale"):
        aug_cfg("augment.erasing_scale=[0.5,0.1]")


def test_training_with_augmentation_saves_a_model_without_it(split_dataset, tmp_path):
    from imgai.train import train

    config = load_config(
        [],
        [
            f"data.root={split_dataset}",
            "data.image_size=32",
            "data.batch_size=8",
            "model.name=sepresnet",
            "model.widths=[8,16,32]",
            "train.epochs=1",
            f"output.dir={tmp_path}",
            "augment.flip=horizontal",
            "augment.rotation=0.1",
            "augment.zoom=0.1",
            "augment.mixup=0.2",
        ],
    )
    lines = []
    result = train(config, log=lines.append)
    assert any(line.startswith("Augmentation: flip=horizontal, rotation=0.1") for line in lines)
    with zipfile.ZipFile(result.best_model) as archive:
        saved = archive.read("config.json").decode()
    for name in ("RandomFlip", "RandomRotation", "RandomZoom", "MixUp"):
        assert name not in saved


def test_mix_caption_gives_the_label_each_blended_image_trains_with():
    classes, labels = ["circle", "square"], np.array([0, 0, 1])
    assert _mix_caption(np.array([1.0, 0, 0]), labels, classes) == "circle"
    # two circles blended: the label is "circle" alone, and the caption says why the image looks mixed
    assert (
        _mix_caption(np.array([0.62, 0.38, 0]), labels, classes)
        == "circle 100%\n(two circle images, 62% + 38%)"
    )
    assert _mix_caption(np.array([0.3, 0, 0.7]), labels, classes) == "square 70%, circle 30%"
    assert _mix_caption(np.array([0.9996, 0, 0.0004]), labels, classes) == "circle >99.9%, square <0.1%"


def test_preview_shows_pairs_or_says_nothing_is_augmented(split_dataset, tmp_path):
    lines = []
    config = load_config([], [f"data.root={split_dataset}", "data.image_size=32", "augment.mixup=0.4"])
    preview(config, tmp_path / "pairs.png", count=4, log=lines.append)
    assert lines[-1] == f"Wrote 4 training images beside their augmented versions to {tmp_path / 'pairs.png'}"
    plain = load_config([], [f"data.root={split_dataset}", "data.image_size=32"])
    preview(plain, tmp_path / "plain.png", count=3, log=lines.append)
    assert lines[-2:] == [
        "Augmentation: none",
        f"Wrote 3 training images (no augmentation) to {tmp_path / 'plain.png'}",
    ]
    assert (tmp_path / "pairs.png").stat().st_size > 10_000 and (
        tmp_path / "plain.png"
    ).stat().st_size > 5_000


@pytest.mark.slow
def test_preview_cli_writes_a_labelled_grid(split_dataset, tmp_path):
    out = tmp_path / "grid.png"
    proc = run_imgai(
        "data",
        "preview",
        f"data.root={split_dataset}",
        "data.image_size=32",
        "augment.flip=horizontal",
        "augment.cutmix=1.0",
        "--count",
        "6",
        "--output",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Wrote 6 training images beside their augmented versions" in proc.stdout
    from PIL import Image

    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 100
    bad = run_imgai(
        "data", "preview", f"data.root={split_dataset}", "--output", str(tmp_path / "grid.jpg"), cwd=tmp_path
    )
    assert bad.returncode == 2 and bad.stderr.startswith("Error: ") and "must be a .png" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_jax_backend_compiles_the_step_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    import os
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from imgai.config import load_config\n"
        "from imgai.augment import Augmenter\n"
        "from imgai.data import DecodeSpec\n"
        "cfg = load_config([], ['augment.crop=0.75', 'augment.flip=horizontal', "
        "'augment.rotation=0.1', 'augment.mixup=0.2'])\n"
        "a = Augmenter(cfg.augment, DecodeSpec((32, 32)), seed=1)\n"
        "x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype('float32')\n"
        "y = np.eye(2, dtype='float32')[[0, 1, 0, 1]]\n"
        "one, again, other = a(x, y, 0, 0)[0], a(x, y, 0, 0)[0], a(x, y, 1, 0)[0]\n"
        "assert one.shape == (4, 24, 24, 3) and (one == again).all() and not (one == other).all()\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print('ok')\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
