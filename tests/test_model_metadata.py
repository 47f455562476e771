"""Metadata inside a .keras file is untrusted: crafted sizes, modes and names are refused with one
line before anything is allocated from them."""

import json
import zipfile

import pytest

from imgai.config import load_config
from imgai.errors import ImgaiError
from imgai.modelfile import METADATA_MEMBER, load_model, save_model
from imgai.models import create_model

GOOD = {"class_names": ["a", "b"], "image_size": [32, 32], "color_mode": "rgb", "interpolation": "bilinear"}


@pytest.fixture(scope="module")
def model():
    cfg = load_config([], ["model.filters=[4]", "model.dense_units=4"]).model
    return create_model(cfg, (32, 32), 3, 2)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"image_size": [100000, 100000]}, "image_size must be"),
        ({"image_size": [-5, 7]}, "image_size must be"),
        ({"image_size": "big"}, "image_size must be"),
        ({"image_size": [True, 32]}, "image_size must be"),
        ({"color_mode": "cmyk"}, "color_mode must be rgb or grayscale"),
        ({"color_mode": "grayscale"}, "does not match the model's 3-channel input"),
        ({"interpolation": "lanczos"}, "interpolation must be"),
        ({"class_names": "ab"}, "class_names must be a list"),
        ({"class_names": ["a", "b\x1b[2J"]}, "control character"),
    ],
)
def test_crafted_metadata_is_refused(model, tmp_path, change, expected):
    path = tmp_path / "m.keras"
    save_model(model, path, {**GOOD, **change})
    with pytest.raises(ImgaiError, match=expected) as info:
        load_model(path)
    assert "\n" not in info.value.message and "\x1b" not in info.value.message


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_oversized_metadata_member_is_refused(model, tmp_path):
    path = tmp_path / "m.keras"
    save_model(model, path, GOOD)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(METADATA_MEMBER, json.dumps({"pad": "x" * (2 << 20)}))
    with pytest.raises(ImgaiError, match="over 1 MiB"):
        load_model(path)


def test_good_metadata_loads(model, tmp_path):
    path = tmp_path / "m.keras"
    save_model(model, path, GOOD)
    _, info = load_model(path)
    assert info.class_names == ("a", "b") and info.image_size == (32, 32)
