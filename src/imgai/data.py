"""Data: find the images, split them, decode them once, serve batches.

The stages are separate so that each can be replaced on its own::

    scan_folder()      folder -> FileList (paths, integer labels, class names)
    resolve_splits()   data config -> Splits(train, val, test)
    load_images()      FileList -> DecodedImages (uint8 array in memory + skipped files)
    make_batches()     DecodedImages -> keras.utils.PyDataset of (uint8 images, one-hot labels)

``imgai.cache`` chooses where the decoded images live (``data.cache``: memory, a memory-mapped
file on disk reused across runs, or nowhere, decoding each batch while training).

Decoding uses Pillow in a thread pool and needs neither TensorFlow nor Keras, so the same code
serves every Keras backend. Images are decoded and resized once, before training; each epoch then
only slices arrays. Augmentation belongs after ``load_images`` (it must stay random every epoch); the
disk cache stands in for ``load_images`` because it returns the same ``DecodedImages``.

Scanning and splitting follow ``keras.utils.image_dataset_from_directory`` exactly (sorted class
folders, files walked recursively in sorted order, one global shuffle with
``numpy.random.RandomState(seed)``, the last ``int(validation_split * n)`` files are validation), so
a 20 % split with seed 123 holds the same files as in the TensorFlow tutorials. The only
difference: hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgai.errors import ImgaiError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
SPLIT_FOLDER_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}


@dataclass
class FileList:
    """Image paths with integer labels that index ``class_names``."""

    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.class_names)).tolist() if len(self) else [0] * len(
            self.class_names
        )

    def subset(self, indices: np.ndarray | list[int], source: str | None = None) -> "FileList":
        indices = np.asarray(indices, dtype=np.int64)
        return FileList(
            [self.paths[i] for i in indices], self.labels[indices], self.class_names, source or self.source
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
        return [(name, fl) for name, fl in (("train", self.train), ("val", self.val), ("test", self.test)) if fl is not None]


@dataclass
class DecodedImages:
    """Decoded, resized images held as one uint8 array, with what could not be read."""

    images: np.ndarray  # (N, H, W, C) uint8, in RAM or a read-only view of a disk cache
    labels: np.ndarray  # (N,) int32; -1 where unknown (prediction inputs)
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    cache_file: object | None = None  # imgai.cache.CacheFile when ``images`` maps a disk cache

    def __len__(self) -> int:
        return len(self.paths)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def list_class_folders(directory: str | Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``directory``."""
    directory = Path(directory)
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not _is_hidden(e.name))


def iter_image_files(directory: str | Path):
    """Image files under ``directory``, recursively, in Keras's order, hidden entries skipped."""
    walk = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        walk.append((root, files))
    for root, files in sorted(walk, key=lambda x: x[0]):
        for name in sorted(files):
            if not _is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS):
                yield os.path.join(root, name)


def scan_folder(directory: str | Path, class_names: list[str] | None = None) -> FileList:
    """Index ``directory``'s class folders. With ``class_names``, they must match exactly."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ImgaiError(f"data folder '{directory}' does not exist: set data.root=PATH to your image folder")
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
            part for part in (f"unexpected: {extra}" if extra else "", f"missing: {missing}" if missing else "") if part
        )
        raise ImgaiError(
            f"class folders in '{directory}' differ from the expected classes {list(class_names)} ({detail}): "
            "give every split the same class folders"
        )
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        files = list(iter_image_files(directory / name))
        paths.extend(files)
        labels.extend([index] * len(files))
    if not paths:
        raise ImgaiError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in '{directory}'")
    return FileList(paths, np.asarray(labels, dtype=np.int32), list(class_names), str(directory))


def split_files(files: FileList, validation_split: float | None, seed: int, shuffle: bool = True):
    """Shuffle like Keras, then hold out the last ``int(validation_split * n)`` files."""
    paths = list(files.paths)
    labels = files.labels.copy()
    if shuffle:
        # Two generators with the same seed, as in keras.utils.image_dataset_from_directory.
        np.random.RandomState(seed).shuffle(paths)
        np.random.RandomState(seed).shuffle(labels)
    shuffled = FileList(paths, labels, files.class_names, files.source)
    if not validation_split:
        return shuffled, None
    num_val = int(validation_split * len(paths))
    if num_val == 0 or num_val == len(paths):
        raise ImgaiError(
            f"data.validation_split={validation_split} leaves no {'validation' if num_val == 0 else 'training'} "
            f"images out of {len(paths)}: choose a fraction between 1/{len(paths)} and {1 - 1 / len(paths):.2f}"
        )
    n_train = len(paths) - num_val
    train = shuffled.subset(np.arange(n_train), f"{files.source} (training {1 - validation_split:.0%})")
    val = shuffled.subset(np.arange(n_train, len(paths)), f"{files.source} (validation {validation_split:.0%})")
    return train, val


def find_split_folder(root: Path, kind: str) -> Path | None:
    for name in SPLIT_FOLDER_NAMES[kind]:
        if (root / name).is_dir():
            return root / name
    return None


def resolve_splits(data_cfg, seed: int) -> Splits:
    """Turn the ``data`` config section into train / val / test file lists."""
    root = Path(data_cfg.root) if data_cfg.root else None
    train_dir = Path(data_cfg.train_dir) if data_cfg.train_dir else None
    val_dir = Path(data_cfg.val_dir) if data_cfg.val_dir else None
    test_dir = Path(data_cfg.test_dir) if data_cfg.test_dir else None
    if train_dir is None:
        if root is None:
            raise ImgaiError("no data folder configured: set data.root=PATH (one sub-folder per class)")
        if not root.is_dir():
            raise ImgaiError(f"data folder '{root}' does not exist: set data.root=PATH to your image folder")
        found_train = find_split_folder(root, "train")
        if found_train is not None:
            train_dir = found_train
            val_dir = val_dir or find_split_folder(root, "val")
            test_dir = test_dir or find_split_folder(root, "test")
        else:
            train_dir = root
    for label, folder in (("data.train_dir", train_dir), ("data.val_dir", val_dir), ("data.test_dir", test_dir)):
        if folder is not None and not folder.is_dir():
            raise ImgaiError(f"data folder '{folder}' does not exist: fix {label} or data.root")

    train = scan_folder(train_dir)
    classes = train.class_names
    val = scan_folder(val_dir, classes) if val_dir is not None else None
    test = scan_folder(test_dir, classes) if test_dir is not None else None
    if val is None and data_cfg.validation_split:
        train, val = split_files(train, data_cfg.validation_split, seed, data_cfg.shuffle)
    return Splits(train, val, test)


# --------------------------------------------------------------------------------------------
# Decoding


_RESAMPLE = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC"}


def decode_image(path: str | Path, image_size: tuple[int, int], color_mode: str = "rgb", interpolation: str = "bilinear") -> np.ndarray:
    """Read one image file into a (H, W, C) uint8 array at ``image_size``; raises on bad files.

    GIFs give their first frame. This one function decodes for training, evaluation and
    prediction alike, so the three can never disagree.
    """
    from PIL import Image

    height, width = image_size
    with Image.open(path) as img:
        img.seek(0)
        # JPEGs at least twice the target size are decoded at 1/2, 1/4 or 1/8 scale by libjpeg
        # (never below the target), then resized as usual: 4x faster for a 12-megapixel photo.
        img.draft(img.mode, (width, height))
        img.load()  # force a full decode here, so truncated files fail now, not later
        if img.mode in ("P", "LA", "RGBA", "PA") and color_mode == "rgb":
            # Composite transparency on black, as TensorFlow's decoders drop alpha.
            img = img.convert("RGBA").convert("RGB")
        img = img.convert("RGB" if color_mode == "rgb" else "L")
        if img.size != (width, height):
            img = img.resize((width, height), getattr(Image.Resampling, _RESAMPLE[interpolation]))
        array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def describe_decode_error(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:200]


def default_workers(workers: int = 0) -> int:
    return workers if workers and workers > 0 else max(1, os.cpu_count() or 1)


class Progress:
    """A one-line progress counter on stderr; quiet when stderr is not a terminal."""

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total = label, total
        self.enabled = enabled and total >= 200 and sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.2 or done == self.total):
            self.last = now
            sys.stderr.write(f"\r  {self.label}: {done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> float:
        if self.enabled:
            sys.stderr.write("\r" + " " * (len(self.label) + 30) + "\r")
            sys.stderr.flush()
        return time.perf_counter() - self.start


def decode_files(paths: list[str], image_size, color_mode: str, interpolation: str, workers: int = 0, chunk: int = 256):
    """Decode ``paths`` on a thread pool; yield ``(index, image, None)`` or ``(index, None, reason)``
    in input order. At most ``chunk`` decoded images wait for the caller, so memory stays bounded
    whatever the caller does with them. Pillow releases the GIL while decoding and resizing, so the
    threads use every core.
    """

    def work(index: int):
        try:
            return decode_image(paths[index], image_size, color_mode, interpolation), None
        except Exception as exc:  # any unreadable file is skipped and reported, never fatal
            return None, describe_decode_error(exc)

    with ThreadPoolExecutor(max_workers=default_workers(workers)) as pool:
        for start in range(0, len(paths), chunk):
            indices = range(start, min(start + chunk, len(paths)))
            for index, (image, reason) in zip(indices, pool.map(work, indices, chunksize=8)):
                yield index, image, reason


def load_images(
    files: FileList | list[str],
    image_size: tuple[int, int],
    color_mode: str = "rgb",
    interpolation: str = "bilinear",
    workers: int = 0,
    label: str = "decoding",
    progress: bool = True,
) -> DecodedImages:
    """Decode and resize every file once, in parallel. Unreadable files are skipped, not fatal."""
    if isinstance(files, FileList):
        paths, labels = list(files.paths), files.labels
    else:
        paths, labels = [str(p) for p in files], np.full(len(files), -1, dtype=np.int32)
    channels = 3 if color_mode == "rgb" else 1
    out = np.empty((len(paths), image_size[0], image_size[1], channels), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    errors: dict[int, str] = {}
    bar = Progress(label, len(paths), progress)
    for index, image, reason in decode_files(paths, image_size, color_mode, interpolation, workers):
        if reason is None:
            out[index], ok[index] = image, True
        else:
            errors[index] = reason
        bar.update(index + 1)
    bar.close()
    keep = np.flatnonzero(ok)
    images = out if len(keep) == len(paths) else out[keep]
    return DecodedImages(
        images=images,
        labels=np.asarray(labels)[keep].astype(np.int32),
        paths=[paths[i] for i in keep],
        skipped=[(paths[i], errors[i]) for i in sorted(errors)],
    )


def write_skipped(path: str | Path, skipped: list[tuple[str, str]]) -> None:
    """List unreadable files, one per line: ``path<TAB>reason``."""
    from imgai.runs import atomic_write_text

    atomic_write_text(path, "".join(f"{p}\t{reason}\n" for p, reason in skipped))


def make_batches(decoded, num_classes: int, batch_size: int, shuffle: bool = False, seed: int = 0, epoch: int = 0):
    """A ``keras.utils.PyDataset`` of (uint8 pixels 0..255, float32 one-hot labels).
    ``epoch``: epochs already done (a resumed run continues the shuffling order).

    Pixels stay uint8: the model's input is float32, so Keras casts them inside the compiled
    step, on the device, and a quarter of the bytes cross from the loader to the accelerator.
    ``decoded`` is :class:`DecodedImages`, or :class:`imgai.cache.StreamedImages` to decode each
    batch from its files while training.
    """
    from imgai.batches import ArrayBatches, StreamingBatches
    from imgai.cache import StreamedImages

    if isinstance(decoded, StreamedImages):
        return StreamingBatches(decoded, num_classes, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
    return ArrayBatches(
        decoded.images, decoded.labels, num_classes, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, cache_file=decoded.cache_file
    )
