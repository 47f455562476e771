import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgai.config import load_config
from imgai.data import (
    DecodeSpec,
    decode_image,
    iter_image_files,
    load_images,
    resolve_splits,
    scan_folder,
    split_files,
    write_skipped,
)
from imgai.errors import ImgaiError


def data_cfg(**overrides):
    return load_config([], [f"data.{k}={v}" for k, v in overrides.items()]).data


def test_split_folders_are_found_automatically(split_dataset):
    splits = resolve_splits(data_cfg(root=split_dataset), seed=1)
    assert splits.class_names == ["circle", "square", "triangle"]
    assert len(splits.train) == 36 and len(splits.val) == 12 and len(splits.test) == 12
    assert splits.train.counts() == [12, 12, 12]
    assert all("/train/" in p for p in splits.train.paths)
    assert all("/test/" in p for p in splits.test.paths)


def test_explicit_dirs_override_root(split_dataset):
    cfg = data_cfg(train_dir=split_dataset / "train", val_dir=split_dataset / "test")
    splits = resolve_splits(cfg, seed=1)
    assert len(splits.val) == 12 and splits.test is None
    assert all("/test/" in p for p in splits.val.paths)


def test_class_order_is_sorted_folder_names(tmp_path):
    for name in ("zebra", "Apple", "mango"):
        (tmp_path / name).mkdir()
        shutil.copy(Path(__file__).parent / "data" / "tiny.png", tmp_path / name / "a.png")
    files = scan_folder(tmp_path)
    assert files.class_names == ["Apple", "mango", "zebra"]
    assert files.labels.tolist() == [0, 1, 2]


def test_hidden_files_and_folders_are_ignored(tmp_path, flat_dataset):
    circle = flat_dataset / "circle"
    shutil.copy(next(circle.iterdir()), circle / ".hidden.jpg")
    (circle / ".ipynb_checkpoints").mkdir()
    shutil.copy(next(circle.glob("*.jpg")), circle / ".ipynb_checkpoints" / "copy.jpg")
    (circle / ".DS_Store").write_bytes(b"\0\1")
    (flat_dataset / ".ipynb_checkpoints").mkdir()  # not a class
    (circle / "notes.txt").write_text("not an image")
    files = scan_folder(flat_dataset)
    assert files.class_names == ["circle", "square", "triangle"]
    assert files.counts() == [10, 10, 10]
    assert not any("/." in p for p in files.paths)


def test_nested_folders_inside_a_class_are_included(flat_dataset):
    sub = flat_dataset / "circle" / "more"
    sub.mkdir()
    shutil.copy(next((flat_dataset / "circle").glob("*.jpg")), sub / "x.jpg")
    assert scan_folder(flat_dataset).counts() == [11, 10, 10]


def test_validation_split_matches_keras_image_dataset_from_directory(flat_dataset):
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")  # the reference loader builds a tf.data pipeline
    splits = resolve_splits(data_cfg(root=flat_dataset, validation_split=0.2), seed=123)
    for subset, ours in (("training", splits.train), ("validation", splits.val)):
        ds = keras.utils.image_dataset_from_directory(
            flat_dataset, validation_split=0.2, subset=subset, seed=123, image_size=(32, 32), verbose=False
        )
        assert [os.path.normpath(p) for p in ds.file_paths] == [os.path.normpath(p) for p in ours.paths]
        assert ds.class_names == ours.class_names


def test_split_with_same_seed_is_stable_and_disjoint(flat_dataset):
    files = scan_folder(flat_dataset)
    a_train, a_val = split_files(files, 0.3, seed=5)
    b_train, b_val = split_files(files, 0.3, seed=5)
    c_train, c_val = split_files(files, 0.3, seed=6)
    assert a_val.paths == b_val.paths and a_val.paths != c_val.paths
    assert not set(a_train.paths) & set(a_val.paths)
    assert len(a_train) + len(a_val) == len(files) and len(a_val) == 9
    # labels still belong to their paths after shuffling
    for path, label in zip(a_val.paths, a_val.labels):
        assert Path(path).parent.name == files.class_names[label]


def test_split_leaving_nothing_is_an_error(flat_dataset):
    with pytest.raises(ImgaiError, match="leaves no validation"):
        split_files(scan_folder(flat_dataset), 0.01, seed=1)


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ImgaiError, match="does not exist: set data.root"):
        resolve_splits(data_cfg(root=tmp_path / "nope"), seed=1)


def test_no_root_configured():
    with pytest.raises(ImgaiError, match="no data folder configured"):
        resolve_splits(data_cfg(), seed=1)


def test_one_class_is_not_enough(tmp_path):
    (tmp_path / "only").mkdir()
    shutil.copy(Path(__file__).parent / "data" / "tiny.png", tmp_path / "only" / "a.png")
    with pytest.raises(ImgaiError, match="at least 2 classes"):
        scan_folder(tmp_path)


def test_val_folder_with_other_classes_is_an_error(split_dataset, tmp_path):
    shutil.copytree(split_dataset / "train", tmp_path / "train")
    shutil.copytree(split_dataset / "val", tmp_path / "val")
    shutil.rmtree(tmp_path / "val" / "square")
    with pytest.raises(ImgaiError, match="missing: \\['square'\\]"):
        resolve_splits(data_cfg(root=tmp_path), seed=1)


def test_decode_formats_and_color_modes(tmp_path):
    from PIL import Image

    rgb = Image.new("RGB", (50, 40), (200, 10, 10))
    rgb.save(tmp_path / "a.bmp")
    rgb.save(tmp_path / "a.png")
    rgba = Image.new("RGBA", (50, 40), (10, 200, 10, 255))
    rgba.save(tmp_path / "b.png")
    frames = [Image.new("RGB", (40, 40), c) for c in ((0, 0, 255), (255, 0, 0))]
    frames[0].save(tmp_path / "c.gif", save_all=True, append_images=frames[1:])
    rgb.save(tmp_path / "a.webp", lossless=True)
    rgb.save(tmp_path / "a.tiff")
    for name in ("a.bmp", "a.png", "b.png", "c.gif", "a.webp", "a.tiff"):
        arr = decode_image(tmp_path / name, (32, 48))
        assert arr.shape == (32, 48, 3) and arr.dtype == np.uint8
    png = decode_image(tmp_path / "a.png", (32, 48))
    for name in ("a.webp", "a.tiff"):  # every extension training reads decodes to the same pixels
        np.testing.assert_array_equal(decode_image(tmp_path / name, (32, 48)), png)
    gif = decode_image(tmp_path / "c.gif", (32, 32))
    assert gif[..., 2].mean() > 200 and gif[..., 0].mean() < 50  # first frame (blue), not the second
    gray = decode_image(tmp_path / "a.png", (32, 32), color_mode="grayscale")
    assert gray.shape == (32, 32, 1)


def _photo_like(width: int, height: int, seed: int = 0):
    from PIL import Image

    coarse = np.random.default_rng(seed).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)


@pytest.mark.parametrize(
    "source_size, target", [((131, 97), (64, 48)), ((1000, 760), (224, 224)), ((90, 60), (120, 160))]
)
def test_jpeg_decoders_give_identical_pixels(tmp_path, monkeypatch, source_size, target):
    """simplejpeg is only a speed-up: Pillow (used without it) decodes the same pixels, large
    JPEGs included (both at full size)."""
    import sys

    from imgai import data

    _photo_like(*source_size).save(tmp_path / "a.jpg", quality=90)
    raw = (tmp_path / "a.jpg").read_bytes()
    fast = data._decode_jpeg(raw, *target)
    assert fast is not None and np.array_equal(fast, data._decode_pillow(raw, *target)[0])
    with_simplejpeg = decode_image(tmp_path / "a.jpg", target)
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # as if it were not installed
    assert data._decode_jpeg(raw, *target) is None
    assert np.array_equal(decode_image(tmp_path / "a.jpg", target), with_simplejpeg)


@pytest.mark.parametrize(
    "interpolation, resizer",
    [
        ("bilinear", "opencv"),
        ("nearest", "opencv"),
        ("bicubic", "opencv"),
        ("bilinear", "pillow"),
        ("nearest", "pillow"),
    ],
)
def test_loader_resizes_like_the_resize_layer_inside_the_model(
    tmp_path, monkeypatch, capsys, interpolation, resizer
):
    """The loader's resize and keras.layers.Resizing (in every saved model) agree to within one
    grey level, downscaling and upscaling, so an image fed to the .keras file at another size in
    plain Keras is treated as imgai treats it. Without OpenCV, Pillow stands in, as closely."""
    import keras

    from imgai import data

    if resizer == "pillow":
        monkeypatch.setattr(data, "_cv2_state", {})
        monkeypatch.setitem(__import__("sys").modules, "cv2", None)  # as if it were not installed
    image = _photo_like(131, 97)
    image.save(tmp_path / "a.png")
    full = np.asarray(image, dtype=np.float32)[None]
    for size in ((64, 48), (150, 200)):
        ours = decode_image(tmp_path / "a.png", size, interpolation=interpolation).astype(np.float32)
        layer = np.asarray(keras.layers.Resizing(*size, interpolation=interpolation)(full))[0]
        assert np.abs(ours - np.clip(layer, 0, 255)).max() <= 1.5, (interpolation, size)
    assert data.resizer() == resizer
    if resizer == "pillow":
        assert "OpenCV is not installed" in capsys.readouterr().err  # said once, with the fix
        gray = decode_image(tmp_path / "a.png", (32, 32), color_mode="grayscale")
        assert gray.shape == (32, 32, 1)


def test_decode_files_stores_on_the_workers_and_a_store_error_is_not_a_bad_file(flat_dataset):
    from imgai.data import decode_files

    paths = scan_folder(flat_dataset).paths
    stored: dict[int, np.ndarray] = {}
    results = list(decode_files(paths, DecodeSpec((16, 16)), workers=2, store=stored.__setitem__, block=4))
    assert [i for i, _, _ in results] == list(range(len(paths)))  # in order
    assert all(image is None and reason is None for _, image, reason in results)
    assert sorted(stored) == list(range(len(paths)))
    assert np.array_equal(stored[3], decode_image(paths[3], (16, 16)))

    def full_disk(index, image):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        list(decode_files(paths, DecodeSpec((16, 16)), workers=2, store=full_disk))
    first = next(iter(decode_files(paths, DecodeSpec((16, 16)), workers=2)))  # stopping early is fine
    assert first[0] == 0 and first[1].shape == (16, 16, 3)


def test_large_arrays_are_allocated_as_writable_anonymous_maps():
    from imgai.data import allocate_images

    big = allocate_images((2, 2048, 2048, 3))  # 24 MB
    big[1, -1, -1] = 7
    assert big.shape == (2, 2048, 2048, 3) and big.dtype == np.uint8 and big[1, -1, -1, 0] == 7
    assert allocate_images((2, 8, 8, 3)).shape == (2, 8, 8, 3)


def test_corrupt_files_are_skipped_and_listed(flat_dataset, tmp_path):
    (flat_dataset / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    good = next((flat_dataset / "square").glob("*.jpg")).read_bytes()
    (flat_dataset / "square" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    files = scan_folder(flat_dataset)
    decoded = load_images(files, (32, 32), workers=2)
    assert len(decoded) == len(files) - 2
    skipped = sorted(Path(p).name for p, _ in decoded.skipped)
    assert skipped == ["broken.jpg", "truncated.jpg"]
    assert decoded.images.shape == (len(files) - 2, 32, 32, 3)
    # labels still line up with paths after the skipped rows are dropped
    for path, label in zip(decoded.paths, decoded.labels):
        assert Path(path).parent.name == files.class_names[label]
    write_skipped(tmp_path / "skipped.txt", decoded.skipped)
    lines = (tmp_path / "skipped.txt").read_text().splitlines()
    assert len(lines) == 2 and all("\t" in line for line in lines)


def test_load_images_is_deterministic_with_threads(flat_dataset):
    files = scan_folder(flat_dataset)
    a = load_images(files, (32, 32), workers=1)
    b = load_images(files, (32, 32), workers=4)
    assert np.array_equal(a.images, b.images) and a.paths == b.paths


def test_batches_are_one_hot_and_reshuffled_each_epoch(flat_dataset):
    pytest.importorskip("keras")
    decoded = load_images(scan_folder(flat_dataset), (32, 32))
    batches = decoded.batches(3, batch_size=8, shuffle=True, seed=0)
    assert len(batches) == 4
    x, y = batches[0]
    assert (
        x.dtype == np.uint8 and x.shape == (8, 32, 32, 3) and x.max() > 1
    )  # cast and rescaling are in the model
    assert y.shape == (8, 3) and np.all(y.sum(axis=1) == 1)
    first = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert first.sum(axis=0).tolist() == [10, 10, 10]
    order = batches._order.copy()
    batches.on_epoch_end()
    assert not np.array_equal(order, batches._order)
    plain = decoded.batches(3, batch_size=8)
    assert np.array_equal(plain[0][0], decoded.images[:8])


def test_a_resumed_run_gets_the_same_epoch_order(flat_dataset):
    pytest.importorskip("keras")
    decoded = load_images(scan_folder(flat_dataset), (32, 32))
    running = decoded.batches(3, batch_size=8, shuffle=True, seed=5)
    running.on_epoch_end()
    running.on_epoch_end()
    resumed = decoded.batches(3, batch_size=8, shuffle=True, seed=5, epoch=2)
    assert np.array_equal(running._order, resumed._order)
    assert not np.array_equal(resumed._order, decoded.batches(3, batch_size=8, shuffle=True, seed=5)._order)


def test_iter_image_files_filters_extensions(tmp_path):
    for name in (
        "a.JPG",
        "b.jpeg",
        "c.png",
        "d.gif",
        "e.bmp",
        "f.txt",
        "g.tiff",
        "h.WebP",
        "i.tif",
        "j.heic",
    ):
        (tmp_path / name).write_bytes(b"")
    ignored: list[str] = []
    found = [Path(p).name for p in iter_image_files(tmp_path, ignored=ignored)]
    assert found == ["a.JPG", "b.jpeg", "c.png", "d.gif", "e.bmp", "g.tiff", "h.WebP", "i.tif"]
    assert [Path(p).name for p in ignored] == ["f.txt", "j.heic"]


# ------------------------------------------------------------------------ leak-free splits


def test_singleton_groups_give_exactly_the_keras_split(flat_dataset):
    files = scan_folder(flat_dataset)
    plain = split_files(files, 0.3, seed=7)
    grouped = split_files(files, 0.3, seed=7, groups=np.arange(len(files)))
    assert [s.paths for s in plain] == [s.paths for s in grouped]
    assert data_cfg(root=flat_dataset).split_groups == "none"  # the default splits file by file


def test_near_duplicate_groups_never_span_splits(flat_dataset):
    """Every third image gets two edited copies (re-encoded, resized); with the grouping on, each
    set of copies lands in one split, for several seeds; with it off, some set is split apart."""
    from PIL import Image

    from imgai.data import DecodeSpec, hash_files
    from imgai.dedupe import components, near_pairs

    for k, path in enumerate(sorted(flat_dataset.glob("*/*.jpg"))[::3]):
        img = Image.open(path)
        img.save(path.with_name(f"copy{k}a.jpg"), quality=60)
        img.resize((48, 48)).save(path.with_name(f"copy{k}b.png"))
    files = scan_folder(flat_dataset)
    hashes = hash_files(files.paths, DecodeSpec((32, 32)))
    comp = components(len(files), near_pairs(hashes.phash, 8))
    sizes = np.bincount(comp)
    assert (sizes >= 3).sum() >= 10  # the planted sets are found as groups
    group_of = dict(zip(files.paths, comp))
    spanned_without = 0
    for seed in (1, 2, 3):
        on = resolve_splits(
            data_cfg(root=flat_dataset, validation_split=0.25, split_groups="near_duplicates"), seed
        )
        assert not {group_of[p] for p in on.train.paths} & {group_of[p] for p in on.val.paths}
        assert abs(len(on.val) - int(0.25 * len(files))) <= 2 and len(on.train) + len(on.val) == len(files)
        off = resolve_splits(data_cfg(root=flat_dataset, validation_split=0.25), seed)
        spanned_without += bool({group_of[p] for p in off.train.paths} & {group_of[p] for p in off.val.paths})
    assert spanned_without > 0


def test_group_pattern_keeps_files_of_one_id_together(tmp_path):
    from imgai.sample_data import make_shapes_dataset

    make_shapes_dataset(tmp_path, {"": 12}, shapes=("circle", "square"), size=32)
    for k, path in enumerate(sorted(tmp_path.glob("*/*.jpg"))):
        path.rename(path.with_name(f"patient{k % 5}_{path.name}"))
    cfg = data_cfg(root=tmp_path, validation_split=0.3, group_pattern=r"(patient\d+)_")
    splits = resolve_splits(cfg, seed=4)
    patient = lambda p: Path(p).name.split("_")[0]  # noqa: E731
    assert not {patient(p) for p in splits.train.paths} & {patient(p) for p in splits.val.paths}
    with pytest.raises(ImgaiError, match="group_pattern"):
        resolve_splits(
            data_cfg(root=tmp_path, validation_split=0.3, group_pattern=r"(circle|square)"), seed=4
        )


def test_16_bit_grayscale_keeps_its_top_8_bits(tmp_path):
    from PIL import Image

    eight = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # mode I;16
    decoded = decode_image(tmp_path / "deep.png", (64, 64))
    assert decoded.shape == (64, 64, 3) and np.array_equal(decoded[..., 0], eight)


def test_plain_keras_on_full_size_photos_agrees_with_imgai_predict(tmp_path):
    """The README's snippet (a full-size photo straight into the saved model, its Resizing layer
    doing the rest) and imgai's loader must give the model the same pixels, so the same answer:
    large JPEGs are not decoded at reduced DCT scale, which no plain decoder reproduces."""
    from PIL import Image

    from imgai.config import load_config
    from imgai.modelfile import ModelInfo
    from imgai.models import create_model
    from imgai.predict import iter_prediction_rows
    from imgai.quiet import import_keras

    import_keras()
    rng = np.random.default_rng(1)
    paths = []
    for i in range(40):  # real-sized, textured JPEGs: 400x300 and 640x480, model at 32 px
        width, height = (400, 300) if i % 2 else (640, 480)
        base = np.asarray(_photo_like(width, height, seed=i), dtype=np.float32)
        texture = rng.normal(0, 45, size=(height, width, 1)) * rng.uniform(0.3, 1.0, size=3)
        pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
        paths.append(tmp_path / f"{i:02d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=92)
    config = load_config([], ["model.filters=[8,16]", "model.dense_units=32"])
    model = create_model(config.model, (32, 32), 3, 4)
    info = ModelInfo(class_names=tuple("abcd"), image_size=(32, 32))
    rows = list(iter_prediction_rows(model, info, [str(p) for p in paths], 8))
    imgai = np.stack([row.probabilities for row in rows])
    plain = np.concatenate(
        [model.predict_on_batch(np.asarray(Image.open(p).convert("RGB"), np.float32)[None]) for p in paths]
    )
    assert np.mean(plain.argmax(1) == imgai.argmax(1)) >= 0.995
    assert np.abs(plain - imgai).max() < 0.01  # the loader's uint8 rounding of the resized pixels


def test_progress_shows_rate_and_time_left_on_a_terminal_only(monkeypatch):
    import io
    import sys

    from imgai.data import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a log file: nothing written
    quiet = Progress("decoding", 1000)
    quiet.update(500)
    quiet.close()
    assert not quiet.enabled and sys.stderr.getvalue() == ""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    bar = Progress("decoding", 1000)
    for done in (250, 500, 1000):
        bar.update(done)
    bar.close()
    shown = screen.getvalue()
    assert "decoding" in shown and "images/s" in shown and "left" in shown and "/1000" in shown
