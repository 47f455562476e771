"""A small, deterministic, offline image data set: coloured shapes on textured backgrounds.

Each image shows one shape (circle, square, triangle or cross) at a random position, size, rotation
and colour, on a random background with noise and a faint distractor line. The class is the shape,
never the colour, so a model has to learn form. ``data/shapes`` in the repository was made by
``scripts/make_sample_data.py`` with this module; tests use it to make tiny data sets on the fly,
and :func:`draw_shape` returns where the object is, for checks of explanation heatmaps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SHAPES = ("circle", "cross", "square", "triangle")
DEFAULT_SPLITS = {"train": 200, "val": 50, "test": 50}


def _polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> list[tuple[float, float]]:
    return [
        (
            cx + radius * math.cos(angle + 2 * math.pi * i / sides),
            cy + radius * math.sin(angle + 2 * math.pi * i / sides),
        )
        for i in range(sides)
    ]


def _cross(cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    arm = radius * 0.33
    corners = [
        (arm, radius),
        (arm, arm),
        (radius, arm),
        (radius, -arm),
        (arm, -arm),
        (arm, -radius),
        (-arm, -radius),
        (-arm, -arm),
        (-radius, -arm),
        (-radius, arm),
        (-arm, arm),
        (-arm, radius),
    ]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def draw_shape(rng: np.random.Generator, shape: str, size: int = 64, color_mode: str = "rgb"):
    """One image of ``shape``. Returns ``(PIL.Image, (x0, y0, x1, y1) box of the shape)``."""
    from PIL import Image, ImageDraw

    background = rng.integers(0, 256, size=3)
    noise = rng.normal(0, 10, size=(size, size, 3))
    pixels = np.clip(background[None, None, :] + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    # A faint line across the image: something to ignore.
    line = tuple(int(v) for v in rng.integers(0, 256, size=3))
    draw.line(
        [tuple(rng.uniform(0, size, 2)), tuple(rng.uniform(0, size, 2))], fill=line, width=max(1, size // 32)
    )

    radius = rng.uniform(0.22, 0.34) * size
    # Positions vary around the centre, staying inside the image.
    low, high = max(radius + 1, 0.3 * size), min(size - radius - 1, 0.7 * size)
    cx, cy = rng.uniform(low, max(low, high), size=2)
    angle = rng.uniform(-0.35, 0.35) - math.pi / 2  # upright, give or take 20 degrees
    # The shape's colour is far from the background so the form is always visible.
    color = (background + rng.integers(90, 166, size=3) * rng.choice([-1, 1], size=3)) % 256
    fill = tuple(int(v) for v in color)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, radius, 4, angle), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, radius * 1.1, 3, angle), fill=fill)
    elif shape == "cross":
        draw.polygon(_cross(cx, cy, radius, angle), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    if color_mode == "grayscale":
        img = img.convert("L")
    box = (max(0, cx - radius), max(0, cy - radius), min(size, cx + radius), min(size, cy + radius))
    return img, box


def make_shapes_dataset(
    out_dir: str | Path,
    splits: dict[str, int] | None = None,
    shapes: tuple[str, ...] = SHAPES,
    size: int = 64,
    seed: int = 0,
    fmt: str = "jpg",
) -> dict[str, int]:
    """Write ``out_dir/<split>/<shape>/<shape>_NNNN.<fmt>``; ``splits`` maps split -> images per class.

    With ``splits={"": n}`` the class folders go straight under ``out_dir``. Deterministic for a
    given seed. Returns the number of images written per split.
    """
    out_dir = Path(out_dir)
    splits = DEFAULT_SPLITS if splits is None else splits
    written = {}
    for split_index, (split, per_class) in enumerate(splits.items()):
        for shape_index, shape in enumerate(shapes):
            # One generator per (split, shape): adding a split never changes the others.
            rng = np.random.default_rng([seed, split_index, shape_index])
            folder = out_dir / split / shape if split else out_dir / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img, _ = draw_shape(rng, shape, size)
                name = folder / f"{shape}_{i:04d}.{fmt}"
                if fmt == "jpg":
                    img.save(name, quality=90)
                else:
                    img.save(name)
        written[split or "all"] = per_class * len(shapes)
    return written
