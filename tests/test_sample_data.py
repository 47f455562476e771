import numpy as np

from imgai.sample_data import SHAPES, draw_shape, make_shapes_dataset


def test_same_seed_same_images(tmp_path):
    make_shapes_dataset(tmp_path / "a", {"train": 3}, size=32, seed=4, fmt="png")
    make_shapes_dataset(tmp_path / "b", {"train": 3}, size=32, seed=4, fmt="png")
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(a) == 3 * len(SHAPES)
    for rel in a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_shape_box_marks_where_the_shape_differs_from_the_background():
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        img, (x0, y0, x1, y1) = draw_shape(rng, shape, 64)
        arr = np.asarray(img, dtype=float)
        inside = arr[int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2]
        corner = arr[:6, :6]
        # the shape's colour is far from the background, so the box holds a different colour
        assert np.abs(inside.mean(axis=(0, 1)) - corner.mean(axis=(0, 1))).max() > 20, shape
