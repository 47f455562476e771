"""The decode-once cache: hits, rebuilds, half-built caches, skipped files, memory maps."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from imgai import cache
from imgai.cache import BUILDING_PREFIX, StreamedImages, cache_key, choose_cache_mode, load_disk_cache
from imgai.config import load_config
from imgai.data import DecodeSpec, load_images, scan_folder
from imgai.errors import ImgaiError
from imgai.sample_data import make_shapes_dataset


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "images"
    make_shapes_dataset(root, {"": 6}, shapes=("circle", "square"), size=32)
    return root


def _load(folder: Path, cache_dir: Path, size=(32, 32), color_mode="rgb", messages=None):
    log = messages.append if messages is not None else lambda _: None
    spec = DecodeSpec(size, color_mode, "bilinear")
    return load_disk_cache(scan_folder(folder), spec, cache_dir, workers=2, log=log, progress=False)


def test_second_load_is_a_hit_with_the_same_pixels(folder, tmp_path):
    messages: list[str] = []
    built = _load(folder, tmp_path / "cache", messages=messages)
    hit = _load(folder, tmp_path / "cache", messages=messages)
    assert messages[0].startswith("Built cache") and messages[1].startswith("Using cache")
    expected = load_images(scan_folder(folder), (32, 32), progress=False)
    for decoded in (built, hit):
        assert np.array_equal(decoded.images, expected.images)
        assert np.array_equal(decoded.labels, expected.labels) and decoded.paths == expected.paths
    assert len(list((tmp_path / "cache").iterdir())) == 1


@pytest.mark.parametrize("change", ["mtime", "size", "removed", "image_size", "color_mode"])
def test_any_change_of_files_or_settings_builds_a_new_cache(folder, tmp_path, change):
    messages: list[str] = []
    _load(folder, tmp_path / "cache", messages=messages)
    first = scan_folder(folder).paths[0]
    size, color_mode = (32, 32), "rgb"
    if change == "mtime":
        st = os.stat(first)
        os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif change == "size":
        with open(first, "ab") as fh:
            fh.write(b"\0" * 16)  # JPEG decoders ignore bytes after the end marker
    elif change == "removed":
        os.remove(first)
    elif change == "image_size":
        size = (40, 32)
    else:
        color_mode = "grayscale"
    decoded = _load(folder, tmp_path / "cache", size, color_mode, messages=messages)
    assert messages[-1].startswith("Built cache"), messages
    assert decoded.images.shape[1:] == (*size, 1 if color_mode == "grayscale" else 3)
    assert len(decoded) == (11 if change == "removed" else 12)


def test_half_built_or_damaged_caches_are_never_used(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    files = scan_folder(folder)
    key = cache_key(files.paths, files.labels, DecodeSpec((32, 32)))
    # A build that crashed: its folder has the key in its name but is never read.
    half = cache_dir / f"{BUILDING_PREFIX}{key}-1-deadbeef"
    half.mkdir(parents=True)
    (half / "images.npy").write_bytes(b"\x93NUMPY garbage")
    messages: list[str] = []
    decoded = _load(folder, cache_dir, messages=messages)
    assert messages[-1].startswith("Built cache") and len(decoded) == 12
    # A finished cache whose image file was cut short is rebuilt, not trusted.
    images = cache_dir / key / "images.npy"
    del decoded
    with open(images, "r+b") as fh:
        fh.truncate(images.stat().st_size - 100)
    decoded = _load(folder, cache_dir, messages=messages)
    assert "damaged" in messages[-2] and messages[-1].startswith("Built cache")
    assert np.array_equal(decoded.images, load_images(files, (32, 32), progress=False).images)


def test_skipped_files_are_remembered_by_the_cache(folder, tmp_path):
    bad = folder / "circle" / "broken.jpg"
    bad.write_bytes(b"not an image")
    messages: list[str] = []
    built = _load(folder, tmp_path / "cache", messages=messages)
    hit = _load(folder, tmp_path / "cache", messages=messages)
    assert "(1 skipped)" in messages[0] and "1 skipped" in messages[1]
    for decoded in (built, hit):
        assert [p for p, _ in decoded.skipped] == [str(bad)]
        assert len(decoded) == 12 and str(bad) not in decoded.paths
        assert decoded.images.shape == (12, 32, 32, 3)  # header rewritten for the rows kept
    assert np.array_equal(hit.images, load_images(scan_folder(folder), (32, 32), progress=False).images)


def _rss_file_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    raise RuntimeError("no RssFile")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("reader", ["preadv", "memory map"])
def test_cache_is_memory_mapped_and_batches_keep_memory_flat(tmp_path, reader):
    pytest.importorskip("keras")
    root = tmp_path / "images"
    make_shapes_dataset(root, {"": 150}, shapes=("circle", "square"), size=32)
    size = (128, 128)  # 300 images x 48 KB = 14 MB of cache file
    expected = load_images(scan_folder(root), size, progress=False).images
    _load(root, tmp_path / "cache", size)
    before = _rss_file_kb()
    decoded = _load(root, tmp_path / "cache", size)
    assert (
        decoded.cache_file is not None
        and not decoded.images.flags.owndata
        and not decoded.images.flags.writeable
    )
    assert _rss_file_kb() - before < 2_000  # opening maps the file; nothing is read yet
    if reader == "memory map":  # the fallback where os.preadv is missing: pages released per 1 MB
        os.close(decoded.cache_file._fd)
        decoded.cache_file._fd = None
        decoded.cache_file.budget = 2**20
    batches = decoded.batches(2, batch_size=16, shuffle=True)
    seen = []
    for i in range(len(batches)):
        x, _ = batches[i]
        seen.append(x)
    assert x.dtype == np.uint8
    assert sorted(map(bytes, np.concatenate(seen))) == sorted(map(bytes, expected))  # every row, once
    assert _rss_file_kb() - before < 6_000  # 14 MB were read, yet at most ~1 MB stays resident


def test_streaming_batches_decode_on_the_fly_and_skip_bad_files(folder):
    pytest.importorskip("keras")
    bad = folder / "square" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    files = scan_folder(folder)
    streamed = StreamedImages(list(files.paths), files.labels, DecodeSpec((32, 32)), workers=2)
    batches = streamed.batches(2, batch_size=13)
    x, y = batches[0]
    assert x.shape == (12, 32, 32, 3) and y.shape == (12, 2)  # 13 files, one unreadable
    assert [p for p, _ in streamed.skipped] == [str(bad)]
    expected = load_images(files, (32, 32), progress=False)
    assert np.array_equal(x, expected.images) and np.array_equal(y.argmax(1), expected.labels)


def test_auto_picks_memory_when_it_fits_else_disk_else_none(tmp_path, monkeypatch):
    assert choose_cache_mode("auto", 10 * 2**20, tmp_path)[0] == "memory"
    assert choose_cache_mode("disk", 10, tmp_path)[0] == "disk"
    monkeypatch.setattr(cache, "_memory_bytes", lambda: (8 * 2**30, 4 * 2**30))
    assert choose_cache_mode("auto", 3 * 2**30, tmp_path)[0] == "disk"
    monkeypatch.setattr(cache, "_free_disk_bytes", lambda folder: 2**30)
    assert choose_cache_mode("auto", 3 * 2**30, tmp_path)[0] == "none"


def test_unwritable_cache_dir_is_one_clear_error(folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImgaiError, match="data.cache_dir"):
        _load(folder, blocker / "cache")


def test_cache_setting_is_validated():
    assert load_config([], ["data.cache=disk"]).data.cache == "disk"
    with pytest.raises(ImgaiError, match="data.cache"):
        load_config([], ["data.cache=ram"])


class ThreadShare:
    """The processes of a run played by threads: ``allgather`` meets the others at a barrier, as
    the run's collectives do. Counts the files each one decoded."""

    def __init__(self, processes: int):
        self.num_processes = processes
        self.barrier = threading.Barrier(processes)
        self.slots: list = [None] * processes
        self.local = threading.local()

    def shard(self):
        return self.local.process, self.num_processes

    def allgather(self, array):
        self.slots[self.local.process] = np.array(array)
        self.barrier.wait()
        stacked = np.stack(self.slots)
        self.barrier.wait()  # everyone has read the slots before they are written again
        return stacked


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_decode_a_share_each_and_end_with_every_image(folder, monkeypatch, processes):
    bad = folder / "square" / "broken.jpg"  # one unreadable file, in one process's share
    bad.write_bytes(b"not an image")
    files = scan_folder(folder)  # 13 files: shares of unequal size
    spec = DecodeSpec((32, 32), "rgb", "bilinear")
    alone = load_images(files, spec, progress=False)
    monkeypatch.setattr(cache, "SHARED_BLOCK_BYTES", 3 * 32 * 32 * 3 * processes)  # several blocks
    decoded_paths: list[str] = []
    real_store_all = cache.store_all

    def counting_store_all(paths, *args):
        decoded_paths.extend(paths)
        return real_store_all(paths, *args)

    monkeypatch.setattr(cache, "store_all", counting_store_all)
    share = ThreadShare(processes)
    results: list = [None] * processes

    def process(index: int) -> None:
        share.local.process = index
        results[index] = cache.load_images_shared(files, spec, share, progress=False)

    threads = [threading.Thread(target=process, args=(i,)) for i in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(decoded_paths) == sorted(files.paths)  # each file decoded once, by one process
    for result in results:
        np.testing.assert_array_equal(result.images, alone.images)
        np.testing.assert_array_equal(result.labels, alone.labels)
        assert result.paths == alone.paths
        assert result.skipped == alone.skipped and [p for p, _ in result.skipped] == [str(bad)]


def test_processes_agree_on_the_memory_cache_or_each_decodes_alone(monkeypatch):
    share = ThreadShare(2)
    agreed: list = [None, None]

    def process(index: int, mode: str) -> None:
        share.local.process = index
        agreed[index] = cache._agreed_mode(mode, share)

    for modes, expected in ((("memory", "memory"), "memory"), (("memory", "disk"), "different")):
        threads = [threading.Thread(target=process, args=(i, m)) for i, m in enumerate(modes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert agreed == [expected, expected]
