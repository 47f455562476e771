"""Duplicate search: pixel digests, perceptual hashes, and the search for near pairs.

Both hashes are made on the decoding threads from the pixels :func:`imgai.data.decode_image`
has just decoded (its ``inspect`` hook), so finding duplicates costs no second decode:

- an **exact** digest: BLAKE2b of the decoded RGB pixels and their shape, so a PNG and a BMP of
  the same picture match, while a re-encoded JPEG (other pixels) does not;
- a 64-bit **perceptual hash** (pHash: the signs of the 8x8 lowest frequencies of the DCT of a
  32x32 grayscale copy, against their median). Re-encoding, resizing, a slight crop or a shift of
  brightness move it by a few bits; two different photos differ in about 32 of 64.

pHash is computed here in a few lines of numpy (a 32x32 DCT is two small matrix products) rather
than with the ``imagehash`` package: the same algorithm, it needs neither SciPy nor PyWavelets
nor a PIL copy of the image, and it starts from OpenCV's area-averaged 32x32 copy, which is
cheaper than Pillow's Lanczos resize of the full image (``scripts/bench_check.py`` compares the
two, speed and how well they separate copies from distinct images).

:func:`near_pairs` finds every pair within ``max_distance`` bits with vectorised XOR + popcount
over tiles of the pair matrix: n^2/2 64-bit operations in numpy, no Python loop per pair
(100,000 hashes: 5e9 pairs, see ``scripts/bench_check.py`` for the time). Below ~10^6 images this
beats index structures (multi-index hashing needs d+1 chunks of 64/(d+1) bits: at d=10, 6-bit
chunks, so buckets hold n/64 hashes each and prune little).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

HASH_SIDE = 32  # the grayscale copy the DCT is taken of
LOW = 8  # 8x8 lowest frequencies -> 64 bits


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n)).astype(np.float32)


_DCT = _dct_matrix(HASH_SIDE)[:LOW]  # only the rows of the frequencies kept


def small_copy(rgb: np.ndarray, side: int = HASH_SIDE) -> np.ndarray:
    """A side x side float32 RGB copy, area-averaged (no aliasing from a large photo)."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        small = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    else:
        from PIL import Image

        small = np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BOX))
    if small.ndim == 2:
        small = small[:, :, None]
    return small.astype(np.float32)


def luma(small: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of an RGB float array (Pillow's convert("L") weights)."""
    if small.shape[-1] == 1:
        return small[..., 0]
    return small[..., 0] * 0.299 + small[..., 1] * 0.587 + small[..., 2] * 0.114


def phash(gray: np.ndarray) -> int:
    """64-bit pHash of a 32x32 grayscale array, as ``imagehash.phash`` computes it."""
    low = _DCT @ gray.astype(np.float32) @ _DCT.T  # the 8x8 lowest frequencies of the 2-D DCT-II
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def pixel_digest(rgb: np.ndarray) -> str:
    """Hex digest of the decoded pixels and their shape (equal only for identical pixels)."""
    digest = hashlib.blake2b(repr(rgb.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def hamming(a: int, b: int) -> int:
    return (int(a) ^ int(b)).bit_count()


def near_pairs(hashes: np.ndarray, max_distance: int, tile: int = 512, workers: int = 0) -> np.ndarray:
    """Every pair (i, j), i < j, of ``hashes`` (uint64) at most ``max_distance`` bits apart, as
    an (m, 2) int64 array. Row bands of ``tile`` hashes run on ``workers`` threads (numpy
    releases the GIL); each holds three ``tile`` x ``tile`` buffers (~2.6 MB), whatever n."""
    from concurrent.futures import ThreadPoolExecutor

    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(h)

    def band(r0: int) -> list[np.ndarray]:
        found = []
        xor = np.empty((tile, tile), dtype=np.uint64)
        bits = np.empty((tile, tile), dtype=np.uint8)
        near = np.empty((tile, tile), dtype=bool)
        rows = h[r0 : r0 + tile]
        for c0 in range(r0, n, tile):
            cols = h[c0 : c0 + tile]
            x, b, m = (a[: len(rows), : len(cols)] for a in (xor, bits, near))
            np.bitwise_xor(rows[:, None], cols[None, :], out=x)
            np.bitwise_count(x, out=b)
            np.less_equal(b, max_distance, out=m)
            if c0 == r0:
                m &= np.tri(len(rows), len(cols), -1, dtype=bool).T  # j > i only
            if m.any():  # most tiles hold no pair: skip the costlier nonzero
                i, j = np.nonzero(m)
                found.append(np.stack([i + r0, j + c0], axis=1))
        return found

    threads = workers if workers > 0 else max(1, os.cpu_count() or 1)  # as data.default_workers
    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = [part for parts in pool.map(band, range(0, n, tile)) for part in parts]
    return np.concatenate(found).astype(np.int64) if found else np.empty((0, 2), dtype=np.int64)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected-component id per item of the graph ``pairs`` draws on ``n`` items."""
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    for i, j in pairs:
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.asarray([find(i) for i in range(n)], dtype=np.int64)


def _fingerprints(images: np.ndarray, samples: int = 256) -> np.ndarray:
    """A uint64 per image from the same ``samples`` pixel bytes of each (equal images, equal
    values; the few equal values of unequal images are ruled out by a full comparison)."""
    flat = images.reshape(len(images), -1)
    where = np.random.default_rng(0).choice(flat.shape[1], size=min(samples, flat.shape[1]), replace=False)
    weights = np.random.default_rng(1).integers(1, 2**63, size=len(where), dtype=np.uint64)
    return (flat[:, np.sort(where)].astype(np.uint64) * weights).sum(axis=1)  # wraps: a hash


def cross_split_copies(train_images, val_images) -> int:
    """Validation images whose decoded model input equals a training image's."""
    if val_images is None or not hasattr(train_images, "images") or not hasattr(val_images, "images"):
        return 0  # data.cache=none decodes while training: nothing held to compare
    if len(train_images) == 0 or len(val_images) == 0:
        return 0
    train_fp = _fingerprints(train_images.images)
    first = {}
    for i, fp in enumerate(train_fp.tolist()):
        first.setdefault(fp, []).append(i)
    copies = 0
    for j, fp in enumerate(_fingerprints(val_images.images).tolist()):
        candidates = first.get(fp, ())
        copies += any(np.array_equal(train_images.images[i], val_images.images[j]) for i in candidates)
    return copies
