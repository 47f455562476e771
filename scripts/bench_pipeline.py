#!/usr/bin/env python3
"""Images per second delivered at the model's input size by four loaders, side by side.

    python scripts/bench_pipeline.py --data ../shared/datasets/flower_photos
    python scripts/bench_pipeline.py --generate 10000          # 400x300 JPEGs made in /tmp
    KERAS_BACKEND=jax python scripts/bench_pipeline.py ...      # works without TensorFlow

(a) classic  ``ImageDataGenerator(rescale=1/255).flow_from_directory`` (Keras 3.15 keeps it as
             keras.src.legacy.preprocessing.image.ImageDataGenerator; nearest-neighbour resize)
(b) Keras    ``keras.utils.image_dataset_from_directory``: tf.data on the TensorFlow backend,
             ``format="grain"`` on others (skipped when grain is not installed)
(c) imgai cold   imgai's loader from nothing: decode on every core into the cache, serve one
                 epoch; for the in-memory cache and for the disk cache (built, written, fsync'd)
(d) imgai cached imgai's loader from its cache, shuffled epochs: the in-memory cache (every epoch
                 after the first) and the disk cache (those, and every later run)
(e) imgai none   data.cache=none: each batch decoded while served, Keras's prefetch threads

The line marked "auto" is the cache that ``data.cache: auto`` (the default) picks for this data set
on this machine: memory when the decoded images fit comfortably in RAM, else disk.

Each loader runs one full pass over the data per repetition; repetitions are interleaved so a
change in machine load hits all of them alike; figures are medians; ratios are to (a).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import median
from imgai.data import DecodeSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _drain(iterable, limit: int) -> int:
    n = 0
    for batch in iterable:
        n += len(batch[0])
        if n >= limit:
            break
    return n


def classic(data: str, size, batch: int, limit: int) -> float:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    start = time.perf_counter()
    flow = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
        data, target_size=size, batch_size=batch, class_mode="categorical", shuffle=True, seed=0
    )
    n = 0
    for _ in range(len(flow)):
        x, _y = next(flow)
        n += len(x)
        if n >= limit:
            break
    return n / (time.perf_counter() - start)


def keras_folder_loader(data: str, size, batch: int, limit: int, fmt: str) -> float:
    import keras

    start = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(
        data, image_size=size, batch_size=batch, label_mode="categorical", verbose=False, format=fmt
    )
    n = _drain(ds.as_numpy_iterator() if fmt == "tf" else ds, limit)
    return n / (time.perf_counter() - start)


def imgai_epochs(decoded, num_classes: int, batch: int, epochs: int, limit: int) -> int:
    batches = decoded.batches(num_classes, batch, shuffle=True, seed=0)
    n = 0
    for _ in range(epochs):
        seen = 0
        for i in range(len(batches)):
            seen += len(batches[i][0])
            if seen >= limit:
                break
        batches.on_epoch_end()
        n += seen
    return n


def imgai_cold_disk(files, size, batch: int, cache_dir: Path, limit: int) -> float:
    from imgai.cache import load_disk_cache

    start = time.perf_counter()
    decoded = load_disk_cache(files, DecodeSpec(size), cache_dir, log=lambda _: None, progress=False)
    n = imgai_epochs(decoded, len(files.class_names), batch, 1, limit)
    return n / (time.perf_counter() - start)


def imgai_memory(files, size, batch: int, epochs: int, limit: int) -> tuple[float, float]:
    """(cold: decode + the first epoch, cached: the ``epochs`` epochs after it), images/s."""
    from imgai.data import load_images

    start = time.perf_counter()
    decoded = load_images(files, size, progress=False)
    n = imgai_epochs(decoded, len(files.class_names), batch, 1, limit)
    first = time.perf_counter()
    later = imgai_epochs(decoded, len(files.class_names), batch, epochs, limit)
    return n / (first - start), later / (time.perf_counter() - first)


def imgai_cached_disk(files, size, batch: int, cache_dir: Path, epochs: int, limit: int) -> float:
    from imgai.cache import load_disk_cache

    start = time.perf_counter()
    decoded = load_disk_cache(files, DecodeSpec(size), cache_dir, log=lambda _: None, progress=False)
    n = imgai_epochs(decoded, len(files.class_names), batch, epochs, limit)
    return n / (time.perf_counter() - start)


def imgai_streaming(files, size, batch: int, limit: int) -> float:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from imgai.cache import StreamedImages

    start = time.perf_counter()
    streamed = StreamedImages(list(files.paths), files.labels, DecodeSpec(size), 0)
    adapter = PyDatasetAdapter(streamed.batches(len(files.class_names), batch, shuffle=True), shuffle=False)
    adapter.on_epoch_begin()
    n = _drain(adapter.get_numpy_iterator(), limit)
    adapter.on_epoch_end()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="folder of class sub-folders")
    parser.add_argument(
        "--generate", type=int, default=0, help="make this many 400x300 JPEGs in /tmp instead of --data"
    )
    parser.add_argument("--image-size", type=int, default=224, help="the model's input side (default 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="images per pass (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cached-epochs", type=int, default=5, help="epochs served from the cache per repetition"
    )
    args = parser.parse_args()
    if not args.data and not args.generate:
        parser.error("give --data DIR or --generate N")
    data = str(args.data or benchlib.make_jpegs(f"/tmp/imgai-bench-jpegs-{args.generate}", args.generate))
    size = (args.image_size, args.image_size)

    from imgai.data import scan_folder

    files = scan_folder(data)
    if args.limit:  # every loader then serves the same number of images; imgai decodes only these
        files = files.subset(range(min(args.limit, len(files))))
    limit = len(files)
    benchlib.warm_page_cache(files.paths)
    info = benchlib.machine()
    import keras

    # (b) is tf.data on the TensorFlow backend; elsewhere Keras's grain loader, if grain is installed.
    folder_format = (
        "tf"
        if keras.backend.backend() == "tensorflow"
        else ("grain" if importlib.util.find_spec("grain") else None)
    )
    work = Path(tempfile.mkdtemp(prefix="imgai-bench-cache-"))
    from imgai.cache import choose_cache_mode

    auto_mode, auto_reason = choose_cache_mode("auto", DecodeSpec(size).nbytes(len(files)), work)
    rates: dict[str, list[float]] = {}

    def record(name, fn):
        rates.setdefault(name, []).append(fn())

    try:
        for rep in range(args.repeats):
            record("a_classic", lambda: classic(data, size, args.batch_size, limit))
            if folder_format:
                record(
                    "b_keras_folder",
                    lambda: keras_folder_loader(data, size, args.batch_size, limit, folder_format),
                )
            cold, cached = imgai_memory(files, size, args.batch_size, args.cached_epochs, limit)
            rates.setdefault("c_imgai_cold_memory", []).append(cold)
            rates.setdefault("d_imgai_cached_memory", []).append(cached)
            cold_dir = work / f"cold{rep}"
            record(
                "c_imgai_cold_disk", lambda: imgai_cold_disk(files, size, args.batch_size, cold_dir, limit)
            )
            record(
                "d_imgai_cached_disk",
                lambda: imgai_cached_disk(files, size, args.batch_size, cold_dir, args.cached_epochs, limit),
            )
            record("e_imgai_streaming", lambda: imgai_streaming(files, size, args.batch_size, limit))
            shutil.rmtree(cold_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {name: median(v) for name, v in rates.items()}
    base = best["a_classic"]
    auto = {
        "memory": "c_imgai_cold_memory d_imgai_cached_memory",
        "disk": "c_imgai_cold_disk d_imgai_cached_disk",
    }.get(auto_mode, "")
    labels = {
        "a_classic": "(a) ImageDataGenerator.flow_from_directory",
        "b_keras_folder": f"(b) image_dataset_from_directory ({folder_format})",
        "c_imgai_cold_memory": "(c) imgai cold, memory cache: decode + 1 epoch",
        "c_imgai_cold_disk": "(c) imgai cold, disk cache: build + 1 epoch",
        "d_imgai_cached_memory": "(d) imgai cached, memory: later epochs",
        "d_imgai_cached_disk": "(d) imgai cached, disk: later epochs/runs",
        "e_imgai_streaming": "(e) imgai data.cache=none (streaming)",
    }
    labels = {k: v + ("  [auto]" if k in auto.split() else "") for k, v in labels.items()}
    print(
        f"{len(files)} images from {data} -> {size[0]}x{size[1]}, batch {args.batch_size}, "
        f"median of {args.repeats} interleaved repetitions, {info['cpus']} CPUs, backend {keras.backend.backend()}:"
    )
    for name, rate in best.items():
        print(f"  {labels[name]:<56} {rate:10.0f} images/s  {rate / base:7.2f}x")
    if not folder_format:
        print("  (b) skipped: image_dataset_from_directory needs TensorFlow or grain")
    print(f"  [auto]: data.cache=auto picks {auto_mode} here ({auto_reason})")
    benchlib.print_json(
        {
            "benchmark": "pipeline",
            "data": data,
            "images": len(files),
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "auto_cache": auto_mode,
            "images_per_s": {k: round(v, 1) for k, v in best.items()},
            "ratio_to_classic": {k: round(v / base, 3) for k, v in best.items()},
            "all_runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            "machine": info,
        }
    )


if __name__ == "__main__":
    main()
