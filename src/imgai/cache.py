"""Decode once, train many times: where decoded images live between the files and the batches.

``data.cache`` picks one of three homes for the resized uint8 images:

``memory``  :func:`imgai.data.load_images` decodes every file into one array in RAM (each run):
            :class:`imgai.data.DecodedImages`.
``disk``    the array is written once to ``<data.cache_dir>/<key>/images.npy`` and reused by later
            runs: :class:`CachedImages`, a memory-mapped, read-only array to callers, while batches
            read their rows straight from the OS page cache (:class:`CacheFile`), so the process's
            RAM does not grow with the data set.
``none``    nothing is kept: each batch is decoded from its files while the model trains, on
            ``data.workers`` threads with prefetch (for data larger than the disk budget):
            :class:`StreamedImages`.
``auto``    memory when the decoded images fit comfortably in RAM, else disk, else none.

A disk cache is keyed by the ordered file list with each file's size and modification time, the
labels, ``image_size``, ``color_mode`` and ``interpolation``: change any of them and a new cache is
built; otherwise it is reused across runs. It is built in a ``.building-*`` folder and renamed into
place only when complete, so a half-built cache is never used. Files that cannot be read are
skipped and remembered in the cache's ``index.json``, so a cache hit reports them as well.

Decoding uses threads, not processes: simplejpeg, Pillow and OpenCV release the GIL while decoding
and resizing, and on 2 cores threads decoded as fast as processes without the start-up and copying
costs (``scripts/bench_decode.py``). Each thread writes its rows straight into the array or, with
``pwrite``, into the cache file.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgai.cachedir import block_hashes, evict, file_stamp, mark_used, remove_stale_builds, verify_blocks
from imgai.data import (
    DecodedImages,
    DecodeSpec,
    FileList,
    allocate_images,
    decode_image,
    default_workers,
    describe_decode_error,
    load_images,
    resizer,
    store_all,
)
from imgai.errors import ImgaiError

CACHE_FORMAT = 3  # 2: OpenCV resize (no antialiasing) replaced Pillow's; 3: content stamps, block checksums
IMAGES_FILE = "images.npy"
INDEX_FILE = "index.json"
BUILDING_PREFIX = ".building-"
# Where rows are gathered through the memory map: bytes read before its pages are handed back.
RESIDENT_BUDGET_BYTES = 64 * 2**20
# Rows swapped between the processes of a run per collective: bounds the extra memory it takes.
SHARED_BLOCK_BYTES = 64 * 2**20
# A ".building-*" folder older than this is left over from a crashed run and is removed.
STALE_BUILD_SECONDS = 24 * 3600


@dataclass
class StreamedImages:
    """Files decoded batch by batch while training (``data.cache=none``); nothing kept.

    Its batches run ``read_rows`` on ``workers`` threads and Keras queues finished batches ahead
    of the model, so decoding overlaps training. A file that cannot be read is left out of its
    batch and added to ``skipped``.
    """

    paths: list[str]
    labels: np.ndarray
    spec: DecodeSpec
    workers: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # filled as batches find them
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    def read_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, kept = [], []
        for i in indices:
            try:
                rows.append(decode_image(self.paths[i], self.spec))
                kept.append(i)
            except Exception as exc:  # unreadable: skipped and reported, never fatal
                with self._lock:
                    if all(p != self.paths[i] for p, _ in self.skipped):
                        self.skipped.append((self.paths[i], describe_decode_error(exc)))
        return (np.stack(rows) if rows else np.zeros((0,), np.uint8)), np.asarray(kept, dtype=np.int64)

    def batches(
        self,
        num_classes: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        **sharding,
    ):
        from imgai.batches import ImageBatches  # imports Keras

        workers = default_workers(self.workers)
        return ImageBatches(
            self,
            num_classes,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            workers=workers,
            max_queue_size=max(4, 2 * workers),
            **sharding,
        )


@dataclass
class CachedImages(DecodedImages):
    """A disk cache: ``images`` is a read-only view through its memory map, and batches read their
    rows with ``cache_file`` (None only for an empty cache)."""

    cache_file: CacheFile | None = None

    def read_rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.cache_file is None:
            return super().read_rows(indices)
        return self.cache_file.read_rows(indices), indices


class CacheFile:
    """Reads rows of a disk cache's ``images.npy`` into fresh arrays.

    Rows are read with ``os.preadv`` straight from the OS page cache into the batch: no page of
    the file becomes part of this process's memory, so it stays flat whatever the cache size, and
    it was faster than gathering through the memory map and releasing its pages
    (docs/performance.md, "Disk cache reads"). Where ``preadv`` is missing (Windows) rows are
    gathered from the map, whose pages are then released every ``budget`` bytes.
    """

    def __init__(
        self,
        path: Path,
        offset: int,
        shape: tuple[int, ...],
        view: np.ndarray,
        mapping,
        budget: int = RESIDENT_BUDGET_BYTES,
    ):
        self.path, self.offset, self.shape = path, offset, tuple(shape)
        self.row_bytes = int(np.prod(shape[1:]))
        self.view, self.map, self.budget = view, mapping, budget
        self._pending = 0
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0)) if hasattr(os, "preadv") else None

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if self._fd is None:
            rows = self.view[indices]
            self._pending += rows.nbytes
            if self._pending >= self.budget:
                self.release()
            return rows
        out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        flat = memoryview(out).cast("B")
        size = self.row_bytes
        for j, i in enumerate(indices.tolist()):
            got = os.preadv(self._fd, [flat[j * size : (j + 1) * size]], self.offset + i * size)
            if got != size:
                raise ImgaiError(
                    f"the image cache '{self.path}' was cut short while in use: delete its folder and run again"
                )
        return out

    def release(self) -> None:
        """Hand the pages read through the map back to the OS page cache."""
        self._pending = 0
        if hasattr(self.map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self.map.madvise(mmap.MADV_DONTNEED)

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


# --------------------------------------------------------------------------------------------
# Choosing where the images live


def default_cache_dir(configured: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(configured)))


def _memory_bytes() -> tuple[int, int]:
    """(total, available) physical memory in bytes; (0, 0) where the OS does not say."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return 0, 0
    available = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * page
        except (ValueError, OSError):
            available = total
    return total, available


def _free_disk_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return 0


def choose_cache_mode(requested: str, nbytes: int, cache_dir: Path) -> tuple[str, str]:
    """Resolve ``data.cache`` (``auto`` included) to memory/disk/none, with the reason in words."""
    if requested != "auto":
        return requested, f"data.cache={requested}"
    total, available = _memory_bytes()
    # "Comfortably": a quarter of the machine and half of what is free now, leaving room for the
    # framework, the model and the float copies of batches.
    if total == 0 or nbytes <= min(total // 4, available // 2):
        return "memory", f"{_size(nbytes)} fits in RAM"
    if _free_disk_bytes(cache_dir) >= nbytes * 1.1 + 2**30:
        return "disk", f"{_size(nbytes)} is too much for RAM ({_size(available)} free)"
    return "none", f"{_size(nbytes)} fits neither in RAM nor in {cache_dir}"


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"


# --------------------------------------------------------------------------------------------
# The disk cache


def cache_key(paths: list[str], labels: np.ndarray, spec: DecodeSpec) -> str:
    """Changes whenever a file is added, removed, reordered, rewritten or touched, or a setting changes."""
    digest = hashlib.sha256()
    settings = {
        "format": CACHE_FORMAT,
        "image_size": list(spec.image_size),
        "color_mode": spec.color_mode,
        "interpolation": spec.interpolation,
        "max_pixels": spec.max_pixels,  # a different cap skips different files
        "resizer": resizer(),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        # Size, mtime and a hash of the file's head and tail: an in-place edit with the mtime put
        # back (touch -r) still makes a new key.
        stamp = file_stamp(path)
        digest.update(f"{os.path.abspath(path)}\0{stamp}\n".encode())
    digest.update(np.asarray(labels, dtype=np.int32).tobytes())
    return digest.hexdigest()[:32]


def _npy_header(shape: tuple[int, ...], length: int) -> bytes | None:
    """An .npy header for a uint8 array of ``shape`` that is exactly ``length`` bytes, if one exists."""
    fields = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": shape,
    }
    for writer in (np.lib.format.write_array_header_1_0, np.lib.format.write_array_header_2_0):
        buffer = io.BytesIO()
        writer(buffer, fields)
        if len(buffer.getvalue()) == length:
            return buffer.getvalue()
    return None


_SEEK_LOCK = threading.Lock()  # where os.pwrite / os.pread are missing (Windows)


def _write_all(fd: int, data, offset: int) -> None:
    """Write all of ``data`` at ``offset``; safe from several threads at once."""
    view = memoryview(data).cast("B")
    while len(view):
        if hasattr(os, "pwrite"):
            written = os.pwrite(fd, view, offset)
        else:
            with _SEEK_LOCK:
                os.lseek(fd, offset, os.SEEK_SET)
                written = os.write(fd, view)
        view, offset = view[written:], offset + written


def _read_exact(fd: int, nbytes: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, nbytes, offset)
    with _SEEK_LOCK:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, nbytes)


def _decode_into(images_path: Path, paths: list[str], spec: DecodeSpec, workers, label, progress):
    """Decode ``paths`` on threads into ``images_path``, the readable ones in order.

    Returns (indices kept, {index: reason} for skipped files).
    """
    shape = (len(paths), *spec.image_size, spec.channels)
    row_bytes = int(np.prod(shape[1:]))
    # open_memmap writes the .npy header for the full count; each decoding thread then writes its
    # row at its place with pwrite, to the page cache without growing this process's memory.
    header = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=shape)
    offset = header.offset
    del header
    fd = os.open(images_path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:

        def store(index: int, image: np.ndarray) -> None:
            _write_all(fd, np.ascontiguousarray(image), offset + index * row_bytes)

        kept, errors = store_all(paths, spec, workers, store, label, progress)
        if errors:  # close the gaps left by skipped files, then shrink the file and its header
            for new_index, old_index in enumerate(kept):
                if new_index != old_index:
                    _write_all(
                        fd,
                        _read_exact(fd, row_bytes, offset + old_index * row_bytes),
                        offset + new_index * row_bytes,
                    )
            new_shape = (len(kept),) + shape[1:]
            fixed = _npy_header(new_shape, offset)
            if fixed is None:
                raise ImgaiError(f"could not rewrite the header of '{images_path}': upgrade numpy")
            os.ftruncate(fd, offset + int(np.prod(new_shape)))
            _write_all(fd, fixed, 0)
        os.fsync(fd)  # complete on disk before the folder is renamed into place
    finally:
        os.close(fd)
    return kept, errors


def _open_cache(folder: Path) -> CachedImages | None:
    """The cache in ``folder``, or None when it is missing or damaged."""
    try:
        index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("format") != CACHE_FORMAT:
            return None
        images_path = folder / IMAGES_FILE
        with open(images_path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
        expected = (len(index["paths"]), *index["image_shape"])
        nbytes = int(np.prod(shape))
        if (
            tuple(shape) != expected
            or fortran
            or dtype != np.uint8
            or images_path.stat().st_size != offset + nbytes
        ):
            return None
        # Every block checked against the checksums written with the cache: bytes changed on disk
        # (a bad sector, another program) mean a rebuild, never training on them.
        if verify_blocks(images_path, 0, index["block_hashes"]) is not None:
            return None
        labels = np.asarray(index["labels"], dtype=np.int32)
        if nbytes == 0:
            images, reader = np.zeros(shape, dtype=np.uint8), None
        else:
            with open(images_path, "rb") as fh:
                mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            # A read-only view through the map: an ordinary array to every caller, read lazily.
            images = np.frombuffer(mapping, dtype=np.uint8, count=nbytes, offset=offset).reshape(shape)
            reader = CacheFile(images_path, offset, shape, images, mapping)
        return CachedImages(
            images=images,
            labels=labels,
            paths=list(index["paths"]),
            skipped=[(p, r) for p, r in index["skipped"]],
            cache_file=reader,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remove_stale_builds(cache_dir: Path) -> None:
    remove_stale_builds(cache_dir)  # builders that died: at once; others after a day


def load_disk_cache(
    files: FileList,
    spec: DecodeSpec,
    cache_dir: Path,
    workers: int = 0,
    label: str = "images",
    log: Callable[[str], None] = print,
    progress: bool = True,
    max_bytes: int | None = None,
) -> CachedImages:
    """The decoded images of ``files`` from the disk cache, building it first if needed; then
    least recently used caches beyond ``max_bytes`` (``data.cache_max_gb``) are removed."""
    folder = cache_dir / cache_key(files.paths, files.labels, spec)
    if folder.is_dir():
        cached = _open_cache(folder)
        if cached is not None:
            skipped = f", {len(cached.skipped)} skipped" if cached.skipped else ""
            log(f"Using cache {folder} ({len(cached):,} {label}{skipped}).")
            mark_used(folder)
            return cached
        log(f"Cache {folder} is incomplete or damaged: rebuilding it.")
        shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    kept, errors = _build_cache(files, spec, folder, workers, label, progress)
    skipped = f" ({len(errors)} skipped)" if errors else ""
    log(f"Built cache {folder}: {len(kept):,} {label} in {time.perf_counter() - start:.1f} s{skipped}.")
    mark_used(folder)
    if max_bytes is not None:
        for entry in evict(cache_dir, max_bytes, keep=folder):
            log(f"Removed the least recently used cache {entry.folder.name} to stay under data.cache_max_gb.")
    cached = _open_cache(folder)
    if cached is None:
        raise ImgaiError(
            f"the image cache just written to '{folder}' cannot be read back: remove it and try again"
        )
    return cached


def _start_build(cache_dir: Path, key: str) -> Path:
    """A fresh ``.building-*`` folder in ``cache_dir`` (stale ones from crashed runs removed)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(cache_dir)
        building = cache_dir / f"{BUILDING_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        building.mkdir()
    except OSError as exc:
        raise ImgaiError(
            f"cannot write the image cache in '{cache_dir}' ({exc.strerror}): "
            "set data.cache_dir=DIR to a writable folder, or data.cache=memory"
        ) from None
    return building


def _build_cache(files: FileList, spec: DecodeSpec, folder: Path, workers, label: str, progress: bool):
    """Decode ``files`` into a building folder, then rename it to ``folder`` once complete.
    Returns (indices kept, {index: reason} for skipped files)."""
    building = _start_build(folder.parent, folder.name)
    try:
        kept, errors = _decode_into(
            building / IMAGES_FILE, files.paths, spec, workers, f"caching {label}", progress
        )
        index = {
            "format": CACHE_FORMAT,
            "source": files.source,
            "image_shape": [*spec.image_size, spec.channels],
            "color_mode": spec.color_mode,
            "interpolation": spec.interpolation,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "paths": [files.paths[i] for i in kept],
            "labels": np.asarray(files.labels)[kept].astype(int).tolist(),
            "skipped": [[files.paths[i], errors[i]] for i in sorted(errors)],
            "block_hashes": block_hashes(building / IMAGES_FILE),
        }
        (building / INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
        try:
            os.rename(building, folder)
        except OSError:
            if not (folder / INDEX_FILE).is_file():  # not a finished cache from a concurrent run
                raise
            shutil.rmtree(building, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        raise ImgaiError(
            f"could not write the image cache in '{folder.parent}' ({exc.strerror or exc}): "
            "free some space, set data.cache_dir=DIR, or data.cache=memory"
        ) from None
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return kept, errors


# --------------------------------------------------------------------------------------------
# The entry point used by training


def prepare_images(
    files: FileList,
    data_cfg,
    mode: str,
    label: str = "images",
    log: Callable[[str], None] = print,
) -> DecodedImages | StreamedImages:
    """``files`` held where ``mode`` says: an image store that makes its own batches."""
    spec = DecodeSpec.from_config(data_cfg)
    if mode == "none":
        return StreamedImages(
            list(files.paths), np.asarray(files.labels, dtype=np.int32), spec, data_cfg.workers
        )
    if mode == "disk":
        return load_disk_cache(
            files,
            spec,
            default_cache_dir(data_cfg.cache_dir),
            data_cfg.workers,
            label,
            log,
            max_bytes=int(data_cfg.cache_max_gb * 2**30),
        )
    return _log_decoded(
        lambda: load_images(files, spec, workers=data_cfg.workers, label=f"decoding {label}"),
        spec,
        label,
        log,
    )


def _log_decoded(decode: Callable[[], DecodedImages], spec: DecodeSpec, label: str, log) -> DecodedImages:
    start = time.perf_counter()
    decoded = decode()
    skipped = f" ({len(decoded.skipped)} skipped)" if decoded.skipped else ""
    height, width = spec.image_size
    log(
        f"Decoded {len(decoded):,} {label} at {height}x{width} in {time.perf_counter() - start:.1f} s{skipped}."
    )
    return decoded


# --------------------------------------------------------------------------------------------
# Several processes: each decodes its share


def load_images_shared(
    files: FileList, spec: DecodeSpec, share, workers: int = 0, label: str = "images", progress: bool = True
) -> DecodedImages:
    """The memory cache of one process of a multi-process run, decoded together with the others.

    Every process needs every image (each epoch's order is global, so a process's slice of the
    global batches covers other files every epoch), but none has to decode them all: process p of
    P decodes files p, p+P, p+2P, ... and the processes swap the decoded rows in blocks through
    ``share.allgather`` (the run's own collectives). Each ends with the same array, in file order,
    with the same files skipped, as if it had decoded everything itself, for 1/P of the decoding.
    """
    process, processes = share.shard()
    n = len(files)
    mine = np.arange(process, n, processes)
    per_process = -(-n // processes)  # the same on every process: the collectives' shape
    row_shape = (*spec.image_size, spec.channels)
    local = allocate_images((per_process, *row_shape))

    def store(index: int, image: np.ndarray) -> None:
        local[index] = image

    what = f"decoding {label} (share {process + 1} of {processes})"
    _, errors = store_all([files.paths[i] for i in mine], spec, workers, store, what, progress)
    readable = np.zeros(per_process, dtype=np.uint8)
    readable[: len(mine)] = 1
    readable[list(errors)] = 0
    readable_by = share.allgather(readable)  # (P, per_process)
    images = allocate_images((n, *row_shape))
    block = max(1, SHARED_BLOCK_BYTES // (processes * int(np.prod(row_shape))))
    for start in range(0, per_process, block):
        gathered = share.allgather(local[start : start + block])  # (P, rows, H, W, C)
        for owner in range(processes):
            targets = np.arange(start, start + gathered.shape[1]) * processes + owner
            count = int(np.count_nonzero(targets < n))  # the last block of a short share is padding
            images[targets[:count]] = gathered[owner, :count]
    ok = np.zeros(n, dtype=bool)
    for owner in range(processes):
        ok[owner::processes] = readable_by[owner, : len(range(owner, n, processes))].astype(bool)
    reasons = {int(mine[i]): reason for i, reason in errors.items()}
    skipped = []
    for i in np.flatnonzero(~ok):
        if int(i) not in reasons:  # another process's file: its reason, found again here (rare)
            try:
                decode_image(files.paths[i], spec)
                reasons[int(i)] = "could not be read by another process of the run"
            except Exception as exc:
                reasons[int(i)] = describe_decode_error(exc)
        skipped.append((files.paths[i], reasons[int(i)]))
    keep = np.flatnonzero(ok)
    return DecodedImages(
        images=images if ok.all() else images[keep],
        labels=np.asarray(files.labels)[keep].astype(np.int32),
        paths=[files.paths[i] for i in keep],
        skipped=skipped,
    )


def _agreed_mode(mode: str, share) -> str:
    """``mode`` if every process resolved ``data.cache`` to it, else "different" (``auto`` looks
    at each machine's own memory and disk)."""
    modes = ("memory", "disk", "none")
    chosen = share.allgather(np.asarray([modes.index(mode)], dtype=np.uint8))
    return mode if (chosen == modes.index(mode)).all() else "different"


def prepare_splits(
    train: FileList, val: FileList | None, data_cfg, log: Callable[[str], None] = print, share=None
):
    """Training and validation images, both held where ``data.cache`` (resolved once) says.

    ``share``: this process's place in a multi-process run (:class:`imgai.distribute.Plan`): with
    the memory cache on every process, each decodes only its share (:func:`load_images_shared`).
    """
    count = len(train) + (len(val) if val is not None else 0)
    nbytes = DecodeSpec.from_config(data_cfg).nbytes(count)
    mode, reason = choose_cache_mode(data_cfg.cache, nbytes, default_cache_dir(data_cfg.cache_dir))
    if share is not None and _agreed_mode(mode, share) == "memory":
        log(f"Image cache: in memory ({reason}); each process decodes 1/{share.num_processes} of the files.")
        spec = DecodeSpec.from_config(data_cfg)
        images = [
            _log_decoded(
                lambda files=files, label=label: load_images_shared(
                    files, spec, share, data_cfg.workers, label
                ),
                spec,
                label,
                log,
            )
            if files is not None
            else None
            for files, label in ((train, "training images"), (val, "validation images"))
        ]
        return images[0], images[1]
    where = {
        "memory": "in memory",
        "disk": f"on disk in {default_cache_dir(data_cfg.cache_dir)}",
        "none": "nowhere: decoding every batch while training",
    }[mode]
    log(f"Image cache: {where} ({reason}).")
    train_images = prepare_images(train, data_cfg, mode, "training images", log)
    val_images = prepare_images(val, data_cfg, mode, "validation images", log) if val is not None else None
    return train_images, val_images
