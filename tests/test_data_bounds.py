"""Data-folder traps and correct pixels: directory link loops, FIFOs, the pixel cap, 16-bit
images and EXIF orientation, all in the one decoder that train, eval, predict and explain use."""

import io
import os
import struct
import threading
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgai.data import (
    ImageTooLarge,
    _jpeg_orientation,
    decode_for_display,
    decode_image,
    decode_rgb,
    load_images,
    scan_folder,
)


def make_classes(root, count=3):
    for name in ("circle", "square"):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / name / f"{i}.png")


def test_directory_link_back_into_the_tree_is_not_followed(tmp_path):
    make_classes(tmp_path)
    os.symlink(".", tmp_path / "circle" / "loop")
    files = scan_folder(tmp_path)
    assert files.counts() == [3, 3]  # each file once, not 41 times
    assert [os.path.basename(p) for p, _ in files.not_followed] == ["loop"]
    assert "not followed" in files.not_followed[0][1]


def test_two_links_forming_a_cycle_end(tmp_path):
    make_classes(tmp_path)
    (tmp_path / "circle" / "a").mkdir()
    (tmp_path / "circle" / "b").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "circle" / "a" / "x.png")
    os.symlink("../b", tmp_path / "circle" / "a" / "to_b")
    os.symlink("../a", tmp_path / "circle" / "b" / "to_a")
    done = []
    worker = threading.Thread(target=lambda: done.append(scan_folder(tmp_path)), daemon=True)
    worker.start()
    worker.join(10)
    assert done, "the scan did not end"
    assert done[0].counts() == [4, 3]
    assert len(done[0].not_followed) == 2  # both cycle-closing links are named


def test_a_fifo_named_like_an_image_is_refused_without_blocking(tmp_path):
    make_classes(tmp_path)
    os.mkfifo(tmp_path / "circle" / "x.jpg")
    files = scan_folder(tmp_path)
    result = []
    worker = threading.Thread(target=lambda: result.append(load_images(files, (8, 8))), daemon=True)
    worker.start()
    worker.join(10)
    assert result, "decoding a FIFO blocked"
    decoded = result[0]
    assert len(decoded) == 6
    assert decoded.skipped == [(str(tmp_path / "circle" / "x.jpg"), "not a regular file (a FIFO): not read")]


def png_header_only(width, height):
    """A tiny PNG whose header claims width x height (its data is empty): a decompression bomb shape."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_pixel_cap_skips_big_images_before_decoding_without_pillow_warnings(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(100_000, 100_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        with pytest.raises(ImageTooLarge, match=r"100000x100000 is 10,000 Mpx .* over data.max_image_pixels"):
            decode_image(bomb, (32, 32))
    Image.new("RGB", (40, 40)).save(tmp_path / "small.png")
    with pytest.raises(ImageTooLarge):
        decode_image(tmp_path / "small.png", (32, 32), max_pixels=1000)
    assert decode_image(tmp_path / "small.png", (32, 32), max_pixels=1600).shape == (32, 32, 3)


def test_the_cap_counts_a_jpegs_full_size(tmp_path):
    # JPEGs are decoded at full size (what the saved model's own Resizing layer sees), so a
    # 2000x2000 = 4 Mpx photo is refused under a 1 Mpx cap and read under the default one.
    from imgai.data import ImageTooLarge

    Image.new("RGB", (2000, 2000), (10, 200, 30)).save(tmp_path / "big.jpg", quality=90)
    with pytest.raises(ImageTooLarge, match="max_image_pixels"):
        decode_image(tmp_path / "big.jpg", (32, 32), max_pixels=1_000_000)
    assert decode_image(tmp_path / "big.jpg", (32, 32)).shape == (32, 32, 3)


def test_explain_picture_is_bounded_for_a_thin_strip(tmp_path):
    Image.new("RGB", (1, 10_000), (9, 9, 9)).save(tmp_path / "strip.png")
    assert decode_for_display(tmp_path / "strip.png", 640).shape == (640, 1, 3)


def test_sixteen_bit_grey_png_scales_to_eight_bits_exactly(tmp_path):
    values = np.array([[0, 255, 256, 32768, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    expected = (values >> 8).astype(np.uint8)  # [0, 0, 1, 128, 255, 3], as TensorFlow's decode_png
    rgb = decode_image(tmp_path / "g16.png", (1, 6), "rgb", "nearest")
    grey = decode_image(tmp_path / "g16.png", (1, 6), "grayscale", "nearest")
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], expected)
    np.testing.assert_array_equal(grey[:, :, 0], expected)
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(tmp_path / "mid.png")
    assert (decode_image(tmp_path / "mid.png", (4, 4)) == 128).all()  # was 255 (white)


def test_sixteen_bit_rgb_png_scales_to_eight_bits_exactly(tmp_path):
    import cv2

    rgb16 = np.array([[[65535, 32768, 0], [256, 255, 4096]]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])  # OpenCV writes BGR, 16 bits per channel
    np.testing.assert_array_equal(decode_image(tmp_path / "c16.png", (1, 2), "rgb", "nearest"), rgb16 >> 8)


def asymmetric():
    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:, :, 0] = np.arange(48, dtype=np.uint8)[None, :] * 5
    pixels[:, :, 1] = np.arange(32, dtype=np.uint8)[:, None] * 7
    pixels[:4, :4] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_like_pillows_exif_transpose(tmp_path, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    asymmetric().save(path, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    if fmt == "JPEG":
        assert _jpeg_orientation(path.read_bytes()) == orientation
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert expected.shape[:2] == ((48, 32) if orientation >= 5 else (32, 48))
    np.testing.assert_array_equal(decode_rgb(path, expected.shape[:2]), expected)
    # and the model input (train, eval, predict, explain all call decode_image) is upright too
    np.testing.assert_array_equal(decode_image(path, expected.shape[:2], "rgb", "nearest"), expected)


def test_orientation_parser_survives_garbage():
    assert _jpeg_orientation(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\xff\xff\xff\xff") == 1
    assert _jpeg_orientation(b"\xff\xd8") == 1
    buffer = io.BytesIO()
    asymmetric().save(buffer, "JPEG")
    assert _jpeg_orientation(buffer.getvalue()) == 1


def test_the_pixel_cap_is_a_setting_every_store_uses(tmp_path):
    from imgai.config import load_config
    from imgai.data import DecodeSpec

    make_classes(tmp_path)  # 8x8 = 64 pixels each
    spec = DecodeSpec.from_config(load_config([], ["data.max_image_pixels=63", "data.image_size=32"]).data)
    assert spec.max_pixels == 63
    decoded = load_images(scan_folder(tmp_path), spec)
    assert len(decoded) == 0 and len(decoded.skipped) == 6
    assert all("over data.max_image_pixels" in reason for _, reason in decoded.skipped)
    assert len(load_images(scan_folder(tmp_path), DecodeSpec((32, 32)))) == 6  # default: 100 Mpx
