"""Data: find the images, split them, decode them once, serve batches.

The stages are separate so that each can be replaced on its own::

    scan_folder()      folder -> FileList (paths, integer labels, class names)
    resolve_splits()   data config -> Splits(train, val, test)
    load_images()      FileList -> DecodedImages (uint8 array in memory + skipped files)
    DecodedImages.batches()  -> keras.utils.PyDataset of (uint8 images, one-hot labels)

A :class:`DecodeSpec` (image size, colour mode, interpolation) says how files become pixels; it is
the one value every stage passes on. ``imgai.cache`` chooses where the decoded images live
(``data.cache``: memory, a memory-mapped file on disk reused across runs, or nowhere, decoding each
batch while training). Each of those image stores makes its own batches (``.batches()``), through
``read_rows``, so no caller asks which kind of store it holds.

Decoding (simplejpeg for JPEGs, Pillow for the rest) and resizing (OpenCV) run in a thread pool and
need neither TensorFlow nor Keras, so the same code serves every Keras backend. Images are decoded
and resized once, before training; each epoch then only slices arrays. Augmentation belongs after
``load_images`` (it must stay random every epoch); the disk cache stands in for ``load_images``
because it returns a ``DecodedImages`` too.

Scanning and splitting follow ``keras.utils.image_dataset_from_directory`` exactly (sorted class
folders, files walked recursively in sorted order, one global shuffle with
``numpy.random.RandomState(seed)``, the last ``int(validation_split * n)`` files are validation), so
a 20 % split with seed 123 holds the same files as in the TensorFlow tutorials. The only
difference: hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import stat
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgai.errors import ImgaiError
from imgai.text import printable

# The one list of file types training, data check and predict read (Pillow decodes every one).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
# Decoded pixels per image above which a file is skipped (data.max_image_pixels): a 108 Mpx phone
# photo decodes at 1/2 scale or less for any model input, so only crafted or scientific images hit it.
NOT_FOLLOWED = "directory link to a folder already scanned: not followed"
DEFAULT_MAX_PIXELS = 100_000_000  # DecodeSpec.max_pixels and config's data.max_image_pixels say the same


@dataclass(frozen=True)
class DecodeSpec:
    """How image files become model input: the one value train, eval, predict and explain share."""

    image_size: tuple[int, int]
    color_mode: str = "rgb"
    interpolation: str = "bilinear"
    max_pixels: int = (
        DEFAULT_MAX_PIXELS  # data.max_image_pixels: decoded pixels above which a file is skipped
    )

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3

    @classmethod
    def from_config(cls, data_cfg) -> DecodeSpec:
        return cls(
            tuple(data_cfg.image_size), data_cfg.color_mode, data_cfg.interpolation, data_cfg.max_image_pixels
        )

    @classmethod
    def of(cls, spec, color_mode: str | None = None, interpolation: str | None = None) -> DecodeSpec:
        """``spec`` itself, or one built from an image size and the loose settings beside it (the
        form :func:`decode_image` and :func:`load_images` still take from older callers)."""
        if isinstance(spec, DecodeSpec):
            return spec
        return cls(tuple(spec), color_mode or "rgb", interpolation or "bilinear")

    def nbytes(self, count: int) -> int:
        """Bytes of ``count`` decoded images."""
        return count * self.image_size[0] * self.image_size[1] * self.channels


SPLIT_FOLDER_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


@dataclass
class FileList:
    """Image paths with integer labels that index ``class_names``."""

    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    source: str = ""
    # Files in the class folders that training skips for their extension (warned about by train).
    ignored: list[str] = field(default_factory=list)
    # Directory links the scan did not follow (they led back into scanned folders), with why.
    not_followed: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> list[int]:
        return (
            np.bincount(self.labels, minlength=len(self.class_names)).tolist()
            if len(self)
            else [0] * len(self.class_names)
        )

    def subset(self, indices: np.ndarray | list[int], source: str | None = None) -> FileList:
        indices = np.asarray(indices, dtype=np.int64)
        return FileList(
            [self.paths[i] for i in indices],
            self.labels[indices],
            self.class_names,
            source or self.source,
            ignored=self.ignored,
            not_followed=self.not_followed,
        )


@dataclass
class Splits:
    train: FileList
    val: FileList | None
    test: FileList | None

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    def items(self) -> list[tuple[str, FileList]]:
        return [
            (name, fl)
            for name, fl in (("train", self.train), ("val", self.val), ("test", self.test))
            if fl is not None
        ]


@dataclass
class DecodedImages:
    """Decoded, resized images held as one uint8 array, with what could not be read.

    The in-memory image store; :class:`imgai.cache.CachedImages` (a disk cache) and
    :class:`imgai.cache.StreamedImages` (nothing kept) answer the same ``read_rows`` and
    ``batches``.
    """

    images: np.ndarray  # (N, H, W, C) uint8, in RAM or a read-only view of a disk cache
    labels: np.ndarray  # (N,) int32; -1 where unknown (prediction inputs)
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def __len__(self) -> int:
        return len(self.paths)

    def read_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 pixels of rows ``indices``, a copy; the indices those rows are)."""
        return self.images[indices], indices

    def batches(
        self,
        num_classes: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        **sharding,
    ):
        """A ``keras.utils.PyDataset`` of (uint8 pixels 0..255, float32 one-hot labels).
        ``epoch``: epochs already done (a resumed run continues the shuffling order).

        Pixels stay uint8: the model's input is float32, so Keras casts them inside the compiled
        step, on the device, and a quarter of the bytes cross from the loader to the accelerator.
        """
        from imgai.batches import ImageBatches  # imports Keras

        # sharding: shard / multiple / pad of ImageBatches, for several devices and processes
        return ImageBatches(
            self, num_classes, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, **sharding
        )


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def list_class_folders(directory: str | Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``directory``."""
    directory = Path(directory)
    names = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not _is_hidden(e.name))
    for name in names:
        # classes.txt holds one name per line and the names reach the terminal: a newline or an
        # escape sequence in one would split it or steer the terminal.
        if not name.isprintable():
            raise ImgaiError(
                f"class folder '{printable(name)}' in '{printable(directory)}' has a control character "
                "(newline, tab, escape) in its name: rename the folder"
            )
    return names


def iter_image_files(
    directory: str | Path, skipped: list[tuple[str, str]] | None = None, ignored: list[str] | None = None
):
    """Image files under ``directory``, recursively, in Keras's order, hidden entries skipped.
    ``ignored`` collects the other (non-hidden) files, skipped for their extension.

    Directory links are followed (a class folder may link to images elsewhere), but each real
    directory is visited once: a link back into the tree (``ln -s . loop``) or two links forming
    a cycle would otherwise list files many times or never end. Links not followed are appended
    to ``skipped`` as (path, reason)."""
    walk = []
    seen: set[tuple[int, int]] = set()
    try:
        info = os.stat(directory)
        seen.add((info.st_dev, info.st_ino))
    except OSError:
        pass
    for root, dirs, files in os.walk(directory, followlinks=True):
        kept = []
        for name in sorted(d for d in dirs if not _is_hidden(d)):
            try:
                info = os.stat(os.path.join(root, name))
            except OSError:  # a dangling link
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen:
                if skipped is not None:
                    skipped.append((os.path.join(root, name), NOT_FOLLOWED))
                continue
            seen.add(key)
            kept.append(name)
        dirs[:] = kept
        walk.append((root, files))
    for root, files in sorted(walk, key=lambda x: x[0]):
        for name in sorted(files):
            if _is_hidden(name):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                yield os.path.join(root, name)
            elif ignored is not None:
                ignored.append(os.path.join(root, name))


def scan_folder(directory: str | Path, class_names: list[str] | None = None) -> FileList:
    """Index ``directory``'s class folders. With ``class_names``, they must match exactly."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImgaiError(_not_a_folder(directory, "data.root"))
    found = list_class_folders(directory)
    if class_names is None:
        class_names = found
        if len(class_names) < 2:
            raise ImgaiError(
                f"data folder '{directory}' has {len(class_names)} class folder(s) {found}: it needs one "
                "sub-folder per class and at least 2 classes"
            )
    elif found != list(class_names):
        extra = sorted(set(found) - set(class_names))
        missing = sorted(set(class_names) - set(found))
        detail = "; ".join(
            part
            for part in (f"unexpected: {extra}" if extra else "", f"missing: {missing}" if missing else "")
            if part
        )
        raise ImgaiError(
            f"class folders in '{directory}' differ from the expected classes {list(class_names)} ({detail}): "
            "give every split the same class folders"
        )
    paths: list[str] = []
    labels: list[int] = []
    ignored: list[str] = []
    not_followed: list[tuple[str, str]] = []
    for index, name in enumerate(class_names):
        files = list(iter_image_files(directory / name, not_followed, ignored))
        paths.extend(files)
        labels.extend([index] * len(files))
    if not paths:
        raise ImgaiError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in '{directory}'")
    return FileList(
        paths, np.asarray(labels, dtype=np.int32), list(class_names), str(directory), ignored, not_followed
    )


def split_files(
    files: FileList,
    validation_split: float | None,
    seed: int,
    shuffle: bool = True,
    groups: np.ndarray | None = None,
):
    """Shuffle like Keras, then hold out the last ``int(validation_split * n)`` files.

    ``groups`` (one integer per file of ``files``) keeps every group in one split: walking the
    shuffled files from the end, whole groups go to validation while they fit in
    ``int(validation_split * n)``; the rest stay in training in their shuffled order. With every
    file its own group this is exactly the split above.
    """
    paths = list(files.paths)
    labels = files.labels.copy()
    order = np.arange(len(paths))
    if shuffle:
        # Two generators with the same seed, as in keras.utils.image_dataset_from_directory.
        np.random.RandomState(seed).shuffle(paths)
        np.random.RandomState(seed).shuffle(labels)
        np.random.RandomState(seed).shuffle(order)  # the same permutation, to carry ``groups``
    shuffled = FileList(paths, labels, files.class_names, files.source, files.ignored, files.not_followed)
    if not validation_split:
        return shuffled, None
    num_val = int(validation_split * len(paths))
    if num_val == 0 or num_val == len(paths):
        raise ImgaiError(
            f"data.validation_split={validation_split} leaves no {'validation' if num_val == 0 else 'training'} "
            f"images out of {len(paths)}: choose a fraction between 1/{len(paths)} and {1 - 1 / len(paths):.2f}"
        )
    n_train = len(paths) - num_val
    train_index, val_index = np.arange(n_train), np.arange(n_train, len(paths))
    if groups is not None:
        train_index, val_index = _split_by_group(np.asarray(groups)[order], num_val)
        if len(train_index) == 0 or len(val_index) == 0:
            raise ImgaiError(
                f"`data.validation_split`={validation_split} with whole groups kept together leaves no "
                f"{'validation' if len(val_index) == 0 else 'training'} images: the groups are too large; "
                "loosen `data.group_pattern` or set `data.split_groups`=none"
            )
    train = shuffled.subset(train_index, f"{files.source} (training {1 - validation_split:.0%})")
    val = shuffled.subset(val_index, f"{files.source} (validation {validation_split:.0%})")
    train.ignored = files.ignored  # one folder's: reported once, with the training files
    return train, val


def _split_by_group(groups: np.ndarray, num_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in shuffled order) of the training and validation files, whole groups each."""
    sizes = dict(zip(*np.unique(groups, return_counts=True)))
    to_val: set = set()
    decided: set = set()
    taken = 0
    for position in range(len(groups) - 1, -1, -1):
        if taken >= num_val:
            break
        group = groups[position]
        if group in decided:
            continue
        decided.add(group)
        if taken + sizes[group] <= num_val:
            to_val.add(group)
            taken += sizes[group]
    in_val = np.fromiter((g in to_val for g in groups), dtype=bool, count=len(groups))
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def split_groups(files: FileList, data_cfg, hashes=None) -> np.ndarray | None:
    """Group ids for :func:`split_files` from ``data.split_groups`` and ``data.group_pattern``
    (None when both are off: the split is then Keras's). ``hashes``: (perceptual hashes, decoded
    mask) already made for ``files`` (by ``imgai data check``), else they are made here."""
    pattern = getattr(data_cfg, "group_pattern", None)
    by_duplicates = getattr(data_cfg, "split_groups", "none") == "near_duplicates"
    if not pattern and not by_duplicates:
        return None
    import re

    parent = list(range(len(files)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    if pattern:
        regex = re.compile(pattern)
        first: dict[str, int] = {}
        for i, path in enumerate(files.paths):
            rel = Path(os.path.relpath(path, files.source)).as_posix() if files.source else path
            match = regex.search(rel)
            if match is None:
                continue  # a file the pattern does not name is its own group
            key = match.group(1) if regex.groups else match.group(0)
            join(i, first.setdefault(key, i))
    if by_duplicates:
        from imgai.dedupe import near_pairs

        if hashes is None:
            made = hash_files(files.paths, DecodeSpec.from_config(data_cfg), data_cfg.workers)
            hashes = (made.phash, made.ok)
        phashes, ok = hashes
        kept = np.flatnonzero(ok)  # an unreadable file stays its own group
        for i, j in near_pairs(np.asarray(phashes)[kept], data_cfg.near_duplicate_distance):
            join(int(kept[i]), int(kept[j]))
    return np.asarray([find(i) for i in range(len(files))], dtype=np.int64)


def _not_a_folder(folder: Path, key: str) -> str:
    if folder.exists():
        return f"data folder '{printable(folder)}' is not a folder (a file?): set {key} to your image folder"
    return f"data folder '{printable(folder)}' does not exist: set {key}=PATH to your image folder"


def find_split_folder(root: Path, kind: str) -> Path | None:
    for name in SPLIT_FOLDER_NAMES[kind]:
        if (root / name).is_dir():
            return root / name
    return None


def split_folders(data_cfg) -> tuple[Path, Path | None, Path | None]:
    """The training, validation and test folders the ``data`` section names (checked to exist)."""
    root = Path(data_cfg.root) if data_cfg.root else None
    train_dir = Path(data_cfg.train_dir) if data_cfg.train_dir else None
    val_dir = Path(data_cfg.val_dir) if data_cfg.val_dir else None
    test_dir = Path(data_cfg.test_dir) if data_cfg.test_dir else None
    if train_dir is None:
        if root is None:
            raise ImgaiError("no data folder configured: set data.root=PATH (one sub-folder per class)")
        if not root.is_dir():
            raise ImgaiError(_not_a_folder(root, "data.root"))
        found_train = find_split_folder(root, "train")
        if found_train is not None:
            train_dir = found_train
            val_dir = val_dir or find_split_folder(root, "val")
            test_dir = test_dir or find_split_folder(root, "test")
        else:
            train_dir = root
    for label, folder in (
        ("data.train_dir", train_dir),
        ("data.val_dir", val_dir),
        ("data.test_dir", test_dir),
    ):
        if folder is not None and not folder.is_dir():
            raise ImgaiError(_not_a_folder(folder, label))
    return train_dir, val_dir, test_dir


def resolve_splits(data_cfg, seed: int) -> Splits:
    """Turn the ``data`` config section into train / val / test file lists."""
    train_dir, val_dir, test_dir = split_folders(data_cfg)
    train = scan_folder(train_dir)
    classes = train.class_names
    val = scan_folder(val_dir, classes) if val_dir is not None else None
    test = scan_folder(test_dir, classes) if test_dir is not None else None
    if val is None and data_cfg.validation_split:
        groups = split_groups(train, data_cfg)
        train, val = split_files(train, data_cfg.validation_split, seed, data_cfg.shuffle, groups)
    return Splits(train, val, test)


# --------------------------------------------------------------------------------------------
# Decoding


# cv2 resize filters. Bilinear is OpenCV's INTER_LINEAR: half-pixel centres without antialiasing,
# the same filter as Keras's Resizing layer (and tf.data's image_dataset_from_directory), so the
# loader and the resize layer inside the saved model agree (a test holds them to one grey level).
# It is several times faster than Pillow's antialiased bilinear (docs/performance.md, "Decoding").
_CV2_FILTERS = {"bilinear": "INTER_LINEAR", "nearest": "INTER_NEAREST_EXACT", "bicubic": "INTER_CUBIC"}
_JPEG_MAGIC = b"\xff\xd8\xff"
_cv2_state: dict = {}


def _cv2():
    """OpenCV, or None (once, with a warning) where it is not installed."""
    if "module" not in _cv2_state:
        try:
            import cv2
        except ImportError:
            cv2 = None
            sys.stderr.write(
                "warning: OpenCV is not installed, so images are resized with Pillow (the same filters to "
                "within one grey level, but ~15x slower): pip install opencv-python-headless\n"
            )
        else:
            # imgai runs one decode per thread on every core; OpenCV's own thread pool on top of
            # that would only oversubscribe the cores.
            cv2.setNumThreads(1)
        _cv2_state["module"] = cv2
    return _cv2_state["module"]


def resizer() -> str:
    """Which library resizes images here ("opencv" or "pillow"); part of the disk cache's key."""
    return "opencv" if _cv2() is not None else "pillow"


def _resize(pixels: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.resize(pixels, (width, height), interpolation=getattr(cv2, _CV2_FILTERS[interpolation]))
    # Without OpenCV: Pillow's resize would antialias, its affine transform samples like
    # INTER_LINEAR (half-pixel centres, no antialiasing): within one grey level of it. Nearest is
    # identical; Pillow's bicubic kernel (a=-0.5) differs from OpenCV's more.
    from PIL import Image

    image = Image.fromarray(pixels)
    if interpolation == "nearest":
        return np.asarray(image.resize((width, height), Image.Resampling.NEAREST))
    resample = Image.Resampling.BILINEAR if interpolation == "bilinear" else Image.Resampling.BICUBIC
    scale = (pixels.shape[1] / width, 0, 0, 0, pixels.shape[0] / height, 0)
    return np.asarray(image.transform((width, height), Image.Transform.AFFINE, scale, resample=resample))


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, as Pillow's convert("L")."""
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).convert("L"))


class ImageTooLarge(ValueError):
    """More decoded pixels than ``data.max_image_pixels`` allows: skipped before decoding."""


def _check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels and width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {width * height / 1e6:,.0f} Mpx to decode, over data.max_image_pixels "
            f"({max_pixels / 1e6:,.0f} Mpx): not decoded"
        )


def _jpeg_orientation(data: bytes) -> int:
    """EXIF orientation (1-8) of a JPEG, read from its APP1 segment without decoding; 1 if none.
    Pillow's ``getexif()`` reads the same tag for the files Pillow decodes."""
    i, n = 2, min(len(data), 1 << 20)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD8 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker == 0xDA:  # start of scan: no more metadata
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\0\0":
            return _tiff_orientation(data[i + 10 : i + 2 + length])
        i += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    offset = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[offset : offset + 2], order) if offset + 2 <= len(tiff) else 0
    for k in range(min(count, 1024)):
        entry = offset + 2 + 12 * k
        if entry + 12 > len(tiff):
            break
        if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
            value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn decoded pixels upright as EXIF orientation says: the same result as Pillow's
    ``ImageOps.exif_transpose`` (a test holds them equal), applied to every decoder's output."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return pixels.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _decode_jpeg(data: bytes, height: int, width: int, max_pixels: int | None = None) -> np.ndarray | None:
    """RGB pixels of a baseline/progressive JPEG via simplejpeg (libjpeg-turbo, no GIL held), or
    None when it declines the file; Pillow then decides (it reads some files that libjpeg-turbo's
    strict mode rejects, and words the errors for the files it cannot read).

    Bit-identical to Pillow's decode of the same file, and ~1.3x faster. Always at full size: a
    reduced DCT-scale decode of a large JPEG (libjpeg's 1/2, 1/4, 1/8) is an area average that the
    model's own Resizing layer never sees, so a full-size photo fed straight to the saved model (or
    to an exported artifact) got other pixels than training did, and sometimes another class.
    """
    try:
        import simplejpeg
    except ImportError:  # an optional speed-up; Pillow decodes the same pixels
        return None
    try:
        src_height, src_width = simplejpeg.decode_jpeg_header(data)[:2]
        _check_pixels(src_width, src_height, max_pixels)
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ImageTooLarge:
        raise
    except ValueError:  # truncated, corrupt or unsupported: strict libjpeg warnings land here too
        return None


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _decode_pillow(
    data: bytes, height: int, width: int, max_pixels: int | None = None
) -> tuple[np.ndarray, int]:
    """(RGB pixels, EXIF orientation) of any format Pillow reads; raises on bad files. GIFs give
    their first frame."""
    import io

    from PIL import Image

    # imgai's own cap (data.max_image_pixels, checked on the header before decoding) replaces
    # Pillow's decompression-bomb guard, whose warning would otherwise reach the terminal raw.
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)
        # Pillow's getexif() decodes a PNG whose eXIf chunk is not before its pixels: read only
        # what the header gave (every PNG writer we know puts it first).
        has_exif = img.format in ("JPEG", "WEBP", "TIFF") or (img.format == "PNG" and "exif" in img.info)
        orientation = img.getexif().get(0x0112, 1) if has_exif else 1
        orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
        _check_pixels(img.size[0], img.size[1], max_pixels)
        img.load()  # full size (no draft(): see _decode_jpeg); truncated files fail here, not later
        if img.mode in _SIXTEEN_BIT_MODES:
            # 16-bit grey: keep the high byte (v >> 8, as TensorFlow's decode_png to uint8);
            # Pillow's convert("RGB") would clip every value above 255 to white.
            grey = (np.clip(np.asarray(img), 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
            return np.repeat(grey[:, :, None], 3, axis=2), orientation
        if img.mode in ("P", "LA", "RGBA", "PA"):
            # Composite transparency on black, as TensorFlow's decoders drop alpha.
            img = img.convert("RGBA").convert("RGB")
        elif img.mode != "RGB":
            img = img.convert("RGB")
        return np.asarray(img, dtype=np.uint8), orientation


def read_image_bytes(path: str | Path) -> bytes:
    """The bytes of an image file, refusing anything but a regular file before reading: a FIFO
    named x.jpg would block a plain open() forever, a device would never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a directory"
                if stat.S_ISDIR(mode)
                else "a device or socket"
            )
            raise ValueError(f"not a regular file ({kind}): not read")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read()
    finally:
        if fd >= 0:
            os.close(fd)


def decode_rgb(
    path: str | Path, target: tuple[int, int], max_pixels: int | None = DEFAULT_MAX_PIXELS, inspect=None
) -> np.ndarray:
    """Upright RGB pixels of an image file at full size, before any resize. The one decoder: training,
    evaluation, prediction, explanation and export pictures all come from here, so EXIF
    orientation, 16-bit images and the pixel cap are handled the same everywhere."""
    height, width = target
    data = read_image_bytes(path)
    rgb, orientation = None, 1
    if data[:3] == _JPEG_MAGIC:
        orientation = _jpeg_orientation(data)
        # DCT scaling works on the stored image, which is turned a quarter for orientations 5-8.
        stored = (width, height) if orientation >= 5 else (height, width)
        rgb = _decode_jpeg(data, stored[0], stored[1], max_pixels)
    if rgb is None:
        rgb, orientation = _decode_pillow(data, height, width, max_pixels)
    rgb = np.ascontiguousarray(_orient(rgb, orientation))
    if inspect is not None:  # imgai data check hashes the file and its pixels on this thread
        inspect(data, rgb)
    return rgb


def decode_for_display(
    path: str | Path, max_side: int, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """RGB pixels scaled to fit ``max_side`` (aspect kept, each side at least 1): what explain
    shows beside its heat map, from the same decoder as the model's input."""
    rgb = decode_rgb(path, (max_side, max_side), max_pixels)
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = _resize(rgb, max(1, round(h * scale)), max(1, round(w * scale)), "bilinear")
    return rgb


def decode_image(
    path: str | Path,
    spec: DecodeSpec | tuple[int, int],
    color_mode: str | None = None,
    interpolation: str | None = None,
    max_pixels: int | None = None,
    inspect=None,
) -> np.ndarray:
    """Read one image file into a (H, W, C) uint8 array as ``spec`` says; raises on bad files.

    JPEGs are decoded by simplejpeg, everything else (and any JPEG it declines) by Pillow; both
    use libjpeg-turbo and give identical pixels. Resizing is OpenCV's (``_CV2_FILTERS``), or
    Pillow's closest equivalent without OpenCV. This one function decodes for training,
    evaluation and prediction alike, so they never disagree.

    ``inspect(data, rgb)``, when given, sees the file's bytes and its decoded RGB pixels before
    the resize: ``imgai.check`` hashes them there, so checking costs no second decode.
    """
    spec = DecodeSpec.of(spec, color_mode, interpolation)
    height, width = spec.image_size
    rgb = decode_rgb(path, (height, width), spec.max_pixels if max_pixels is None else max_pixels, inspect)
    if spec.color_mode != "rgb":
        rgb = _to_gray(rgb)
    if rgb.shape[:2] != (height, width):
        rgb = _resize(rgb, height, width, spec.interpolation)
    if rgb.ndim == 2:
        rgb = rgb[:, :, None]
    return np.ascontiguousarray(rgb)


_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def describe_decode_error(exc: BaseException) -> str:
    """One readable line: Pillow names the in-memory buffer it was given ("cannot identify image
    file <_io.BytesIO object at 0x7f...>"), which says nothing to a user."""
    if isinstance(exc, OSError) and exc.strerror:
        return printable(exc.strerror)
    text = _OBJECT_REPR.sub("", str(exc)).strip() or exc.__class__.__name__
    if text == "cannot identify image file":
        text = "not an image file Pillow can read (unknown or damaged format)"
    return printable(text.splitlines()[0][:200])


def default_workers(workers: int = 0) -> int:
    return workers if workers and workers > 0 else max(1, os.cpu_count() or 1)


class Progress:
    """A live progress line on stderr (rich, which Keras installs): bar, count, rate and time left.
    Quiet when stderr is not a terminal (logs, pipes, CI) and for work too small to watch."""

    def __init__(
        self, label: str, total: int, enabled: bool = True, unit: str = "images", min_total: int = 200
    ):
        self.label, self.total, self.unit = label, total, unit
        self.enabled = enabled and total >= min_total and sys.stderr.isatty()
        self.start = time.perf_counter()
        self._bar = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("  {task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=Console(file=sys.stderr),
                transient=True,  # the finished bar leaves no line behind
                redirect_stdout=False,  # stdout stays where the user sent it (rows, logs)
                redirect_stderr=False,
            )
            self._task = self._bar.add_task(label, total=total, rate="")
            self._bar.start()

    def update(self, done: int) -> None:
        if self._bar is not None:
            seconds = time.perf_counter() - self.start
            rate = f"{done / seconds:,.0f} {self.unit}/s" if seconds > 0 and done else ""
            self._bar.update(self._task, completed=done, rate=rate)

    def close(self) -> float:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        return time.perf_counter() - self.start


def decode_files(
    paths: list[str], spec: DecodeSpec, workers: int = 0, store=None, block: int = 16, inspect=None
):
    """Decode ``paths`` on a thread pool; yield ``(index, image, None)`` or ``(index, None, reason)``
    in input order. simplejpeg, Pillow and OpenCV release the GIL while decoding and resizing, so
    the threads use every core.

    Each task decodes a block of ``block`` consecutive files: with one task per file, hand-offs
    between threads slowed the first fill (docs/performance.md, ``scripts/bench_fill.py``). At most
    two blocks per thread are in flight, so memory stays bounded whatever the caller does.

    With ``store``, each worker hands its image to ``store(index, image)`` itself and ``None`` is
    yielded in its place: copying the pixels to their destination (an array, a file) then runs on
    every core too, instead of on the caller's thread. An error raised by ``store`` (a full disk)
    is not a bad file: it propagates to the caller.

    ``inspect(index, data, rgb)`` runs on the workers too, on each file's bytes and full decoded
    pixels (see :func:`decode_image`); an error it raises marks the file unreadable.
    """
    from collections import deque

    def work(start: int) -> list:
        results = []
        for index in range(start, min(start + block, len(paths))):
            try:
                seen = None if inspect is None else functools.partial(inspect, index)
                image = decode_image(paths[index], spec, inspect=seen)
            except Exception as exc:  # any unreadable file is skipped and reported, never fatal
                results.append((index, None, describe_decode_error(exc)))
                continue
            if store is not None:
                store(index, image)
                image = None
            results.append((index, image, None))
        return results

    threads = default_workers(workers)
    starts = iter(range(0, len(paths), block))
    pool = ThreadPoolExecutor(max_workers=threads)
    in_flight: deque = deque(pool.submit(work, start) for start in itertools.islice(starts, 2 * threads))
    try:
        while in_flight:
            results = in_flight.popleft().result()
            following = next(starts, None)
            if following is not None:
                in_flight.append(pool.submit(work, following))
            yield from results
    finally:  # also when the caller stops early or an error propagates: drop the queued blocks
        pool.shutdown(wait=True, cancel_futures=True)


def store_all(paths: list[str], spec: DecodeSpec, workers: int, store, label: str, progress: bool):
    """Decode every file, each worker handing its rows to ``store`` (:func:`decode_files`), with a
    progress line. Returns (indices of the files kept, in order; {index: reason} for the skipped)."""
    errors: dict[int, str] = {}
    bar = Progress(label, len(paths), progress)
    for index, _image, reason in decode_files(paths, spec, workers, store=store):
        if reason is not None:
            errors[index] = reason
        bar.update(index + 1)
    bar.close()
    return [i for i in range(len(paths)) if i not in errors], errors


def allocate_images(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint8 array for ``shape``, for the decoding threads to fill.

    Large arrays are a plain anonymous memory map of 4 KB pages, which the threads fault in as
    they write. ``numpy.empty`` asks the kernel for transparent huge pages instead, and the
    compaction that can take slowed the first fill (docs/performance.md, ``scripts/bench_fill.py``).
    """
    import mmap

    nbytes = int(np.prod(shape))
    if nbytes < 2**24 or not hasattr(mmap, "MAP_ANONYMOUS"):  # small, or not POSIX
        return np.empty(shape, dtype=np.uint8)
    mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(mapping, dtype=np.uint8).reshape(shape)  # the array keeps the map alive


def load_images(
    files: FileList | list[str],
    spec: DecodeSpec | tuple[int, int],
    color_mode: str | None = None,
    interpolation: str | None = None,
    workers: int = 0,
    label: str = "decoding",
    progress: bool = True,
) -> DecodedImages:
    """Decode and resize every file once, in parallel. Unreadable files are skipped, not fatal.

    ``spec``: a :class:`DecodeSpec` (``color_mode`` and ``interpolation`` then stay unset), or an
    image size with those two beside it."""
    spec = DecodeSpec.of(spec, color_mode, interpolation)
    if isinstance(files, FileList):
        paths, labels = list(files.paths), files.labels
    else:
        paths, labels = [str(p) for p in files], np.full(len(files), -1, dtype=np.int32)
    out = allocate_images((len(paths), *spec.image_size, spec.channels))

    def store(index: int, image: np.ndarray) -> None:
        out[index] = image

    kept, errors = store_all(paths, spec, workers, store, label, progress)
    keep = np.asarray(kept, dtype=np.int64)
    images = out if not errors else out[keep]
    return DecodedImages(
        images=images,
        labels=np.asarray(labels)[keep].astype(np.int32),
        paths=[paths[i] for i in keep],
        skipped=[(paths[i], errors[i]) for i in sorted(errors)],
    )


def write_skipped(path: str | Path, skipped: list[tuple[str, str]]) -> None:
    """List unreadable files, one per line: ``path<TAB>reason``."""
    from imgai.runs import atomic_write_text

    # Control characters escaped: a file name with a newline must stay one row.
    atomic_write_text(path, "".join(f"{printable(p)}\t{printable(reason)}\n" for p, reason in skipped))


# ------------------------------------------------------------ hashes and warnings for training


@dataclass
class Hashes:
    ok: np.ndarray  # (n,) bool: decoded
    phash: np.ndarray  # (n,) uint64, 0 where not decoded
    digest: list[str | None]


def hash_files(paths: list[str], spec, workers: int = 0) -> Hashes:
    """Perceptual hashes and pixel digests of ``paths`` through the training decode (one pass,
    the resized images are not kept)."""
    from imgai.dedupe import luma, phash, pixel_digest, small_copy

    n = len(paths)
    ph = np.zeros(n, dtype=np.uint64)
    digests: list[str | None] = [None] * n
    ok = np.zeros(n, dtype=bool)

    def inspect(index: int, data: bytes, rgb: np.ndarray) -> None:
        ph[index] = phash(luma(small_copy(rgb)))
        digests[index] = pixel_digest(rgb)

    for index, _image, reason in decode_files(
        paths,
        spec,
        workers,
        store=lambda index, image: None,
        inspect=inspect,
    ):
        ok[index] = reason is None
    return Hashes(ok, ph, digests)


def training_warnings(splits, train_images, val_images) -> list[str]:
    """One line each for empty classes, ignored files and exact train/validation copies, from
    what training has already listed and decoded (no extra pass over the files)."""
    lines = []
    counts = splits.train.counts()
    empty = [name for name, n in zip(splits.class_names, counts) if n == 0]
    if empty:
        lines.append(
            f"Warning: class(es) {', '.join(empty)} have no training images but are still trained as classes: "
            "add images or remove the folder(s) (imgai data check lists every data problem)."
        )
    ignored = [p for _name, fl in splits.items() for p in fl.ignored]
    if ignored:
        by_ext = Counter(os.path.splitext(p)[1].lower() or "(none)" for p in ignored)
        lines.append(
            f"Warning: {len(ignored)} file(s) in the class folders are ignored for their extension "
            f"({', '.join(f'{e} {n}' for e, n in by_ext.most_common())}): imgai data check lists them."
        )
    from imgai.dedupe import cross_split_copies

    copies = cross_split_copies(train_images, val_images)
    if copies:
        lines.append(
            f"Warning: {copies} validation image(s) are identical to training images, which inflates validation "
            "scores: imgai data check finds them and near copies; data.split_groups=near_duplicates keeps them apart."
        )
    return lines
