"""Perceptual hashes and the near-pair search: the default distance finds edited copies and
keeps distinct pictures apart; the search equals brute force."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imgai.config import defaults
from imgai.dedupe import components, hamming, luma, near_pairs, phash, pixel_digest, small_copy

# ../shared beside the checkout (or beside the folder of worktrees), where it exists.
FLOWERS = next(
    (
        up / "shared" / "datasets" / "flower_photos"
        for up in Path(__file__).resolve().parents[1:4]
        if (up / "shared" / "datasets" / "flower_photos").is_dir()
    ),
    Path("/nonexistent"),
)


def texture(seed: int, size: int = 160) -> Image.Image:
    """A smooth random colour texture with grain: every seed a different 'photo' of one kind."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(10, 10, 3))
    base = ((base - base.min()) / np.ptp(base) * 255).astype(np.uint8)
    smooth = np.asarray(
        Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64
    )
    return Image.fromarray(np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8))


def edited_copies(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=60)
    cut_w, cut_h = int(w * 0.02), int(h * 0.02)
    return {
        "re-encoded": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
        "resized": img.resize((w // 2, h // 2), Image.Resampling.BILINEAR),
        "cropped 2 % per side": img.crop((cut_w, cut_h, w - cut_w, h - cut_h)),
        "brighter": ImageEnhance.Brightness(img).enhance(1.2),
        "darker": ImageEnhance.Brightness(img).enhance(0.8),
    }


def hash_of(img: Image.Image) -> int:
    return phash(luma(small_copy(np.asarray(img.convert("RGB")))))


def check_threshold(images: list[Image.Image]) -> None:
    distance = defaults().data.near_duplicate_distance
    hashes = [hash_of(img) for img in images]
    for img, h in zip(images, hashes):
        for what, copy in edited_copies(img).items():
            assert hamming(h, hash_of(copy)) <= distance, what
    apart = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(apart) > distance


def test_default_distance_finds_edited_copies_and_not_distinct_textures():
    check_threshold([texture(seed) for seed in range(24)])


@pytest.mark.skipif(not FLOWERS.is_dir(), reason="flower photos not present")
def test_default_distance_on_a_few_flower_photos():
    paths = sorted((FLOWERS / "daisy").glob("*.jpg"))[:12]
    check_threshold([Image.open(p).convert("RGB") for p in paths])


def test_phash_matches_imagehash_where_installed():
    imagehash = pytest.importorskip("imagehash")
    # The same algorithm: on the same 32x32 grayscale copy, the same 64 bits.
    gray = luma(small_copy(np.asarray(texture(3))))
    ours = phash(gray)
    theirs = imagehash.phash(Image.fromarray(gray.astype(np.float32), mode="F").resize((32, 32)))
    assert hamming(ours, int(str(theirs), 16)) <= 2


def test_near_pairs_equals_brute_force_across_tiles():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=700, dtype=np.int64).astype(np.uint64)
    for k in range(0, 600, 50):  # plant near copies, some across tile borders
        hashes[k + 37] = hashes[k] ^ np.uint64(0b1011 << (k % 40))
    found = {tuple(p) for p in near_pairs(hashes, 8, tile=64)}
    brute = {
        (i, j)
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if hamming(hashes[i], hashes[j]) <= 8
    }
    assert found == brute and len(brute) >= 12


def test_pixel_digest_compares_pixels_and_shape():
    a = np.zeros((4, 6, 3), dtype=np.uint8)
    assert pixel_digest(a) == pixel_digest(a.copy())
    assert pixel_digest(a) != pixel_digest(a.reshape(6, 4, 3))
    b = a.copy()
    b[0, 0, 0] = 1
    assert pixel_digest(a) != pixel_digest(b)


def test_components_group_chains():
    comp = components(5, np.asarray([[0, 1], [1, 3]]))
    assert comp[0] == comp[1] == comp[3] and len({comp[0], comp[2], comp[4]}) == 3
