"""A corpus of bad and odd image inputs, made by code: every kind the data loader must survive.

:func:`make_corpus` writes ``root/{circle,square}/`` with a few good training images each plus one
file of every kind below, and returns ``{kind: path}``. Kinds marked ``readable`` are odd but valid
images (they must be decoded, upright and at the right grey level); the others must be skipped
with a reason, or refused with one line, never hang or crash.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def _png(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


READABLE = {
    "sixteen_bit_grey": lambda: _png(Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16))),
    "exif_rotated_jpeg": lambda: _jpeg(Image.new("RGB", (48, 32), (200, 10, 10)), exif=_exif(6), quality=95),
    "cmyk_jpeg": lambda: _jpeg(Image.new("CMYK", (40, 40), (0, 255, 255, 0))),
    "palette_transparent": lambda: _png(Image.new("P", (40, 40), 3), transparency=3),
    "rgba": lambda: _png(Image.new("RGBA", (40, 40), (0, 0, 255, 10))),
    "thin_strip": lambda: _png(Image.new("RGB", (1, 10_000), (50, 50, 50))),
    "animated_gif": lambda: _gif(),
    "bmp": lambda: _bmp(),
}

BROKEN = {
    "empty_file": lambda: b"",
    "text_as_jpg": lambda: b"this is a text file, not a photo\n" * 10,
    "truncated_png": lambda: _png(Image.new("RGB", (64, 64), (1, 2, 3)))[:60],
    "truncated_jpeg": lambda: _jpeg(Image.new("RGB", (64, 64), (1, 2, 3)))[:200],
    "header_bomb": lambda: _png_claiming(100_000, 100_000),
    "png_magic_only": lambda: b"\x89PNG\r\n\x1a\n",
}


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _gif() -> bytes:
    frames = [Image.new("P", (40, 40), i) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _bmp() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (9, 90, 9)).save(buffer, "BMP")
    return buffer.getvalue()


SPECIAL = ("fifo", "directory_named_png", "dangling_link", "dir_link_loop", "newline_name", "ansi_name")


def make_corpus(root: str | Path, good_per_class: int = 6) -> dict[str, Path]:
    root = Path(root)
    for index, name in enumerate(("circle", "square")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(good_per_class):
            colour = (200, 30, 30) if index == 0 else (30, 30, 200)
            Image.new("RGB", (40, 40), tuple(c + i for c in colour)).save(root / name / f"good{i}.png")
    made: dict[str, Path] = {}
    folder = root / "circle"
    for kind, make in {**READABLE, **BROKEN}.items():
        suffix = ".jpg" if "jpeg" in kind or kind == "text_as_jpg" else ".gif" if "gif" in kind else ".png"
        suffix = ".bmp" if kind == "bmp" else suffix
        path = folder / f"{kind}{suffix}"
        path.write_bytes(make())
        made[kind] = path
    made["fifo"] = folder / "fifo.jpg"
    os.mkfifo(made["fifo"])
    made["directory_named_png"] = folder / "folder.png"
    made["directory_named_png"].mkdir()
    made["dangling_link"] = folder / "dangling.png"
    os.symlink(folder / "does-not-exist.png", made["dangling_link"])
    made["dir_link_loop"] = folder / "loop"
    os.symlink(".", made["dir_link_loop"])
    made["newline_name"] = root / "square" / "two\nlines.png"
    Image.new("RGB", (40, 40), (30, 30, 190)).save(made["newline_name"])
    made["ansi_name"] = root / "square" / "red\x1b[31m.png"
    Image.new("RGB", (40, 40), (30, 30, 180)).save(made["ansi_name"])
    return made
