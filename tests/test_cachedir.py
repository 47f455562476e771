"""The cache notices what changed: in-place edits with the mtime restored, bytes changed inside
images.npy, builds of processes that died; and it can be listed, cleared and kept under a cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imgai import cachedir
from imgai.cache import BUILDING_PREFIX, cache_key, load_disk_cache
from imgai.cli import cli
from imgai.data import DecodeSpec, load_images, scan_folder
from imgai.sample_data import make_shapes_dataset


@pytest.fixture()
def folder(tmp_path) -> Path:
    root = tmp_path / "images"
    make_shapes_dataset(root, {"": 6}, shapes=("circle", "square"), size=32, fmt="png")
    return root


def _load(folder: Path, cache_dir: Path, messages: list, max_bytes=None):
    return load_disk_cache(
        scan_folder(folder),
        DecodeSpec((32, 32)),
        cache_dir,
        workers=2,
        log=messages.append,
        progress=False,
        max_bytes=max_bytes,
    )


def test_in_place_edit_with_mtime_restored_makes_a_new_cache(folder, tmp_path):
    messages: list[str] = []
    _load(folder, tmp_path / "cache", messages)
    image = sorted((folder / "circle").iterdir())[0]
    before = os.stat(image)
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF  # same size, different content
    image.write_bytes(bytes(data))
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -r
    assert os.stat(image).st_size == before.st_size and os.stat(image).st_mtime_ns == before.st_mtime_ns
    _load(folder, tmp_path / "cache", messages)
    assert messages[-1].startswith("Built cache"), messages  # not served stale


def test_bytes_changed_inside_the_cache_are_noticed(folder, tmp_path):
    messages: list[str] = []
    files = scan_folder(folder)
    built = _load(folder, tmp_path / "cache", messages)
    del built
    images = tmp_path / "cache" / cache_key(files.paths, files.labels, DecodeSpec((32, 32))) / "images.npy"
    size = images.stat().st_size
    with open(images, "r+b") as fh:  # a quarter of the file overwritten, same size
        fh.seek(size // 2)
        fh.write(bytes(range(256)) * (size // 4 // 256))
    assert images.stat().st_size == size
    decoded = _load(folder, tmp_path / "cache", messages)
    assert "damaged" in messages[-2] and messages[-1].startswith("Built cache"), messages
    assert np.array_equal(decoded.images, load_images(files, (32, 32), progress=False).images)


def test_build_of_a_dead_process_is_removed_at_once(folder, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cache_dir = tmp_path / "cache"
    stale = cache_dir / f"{BUILDING_PREFIX}{'a' * 32}-{dead.pid}-deadbeef"
    live = cache_dir / f"{BUILDING_PREFIX}{'b' * 32}-1-cafe0000"  # pid 1 runs: its build is left alone
    for path in (stale, live):
        path.mkdir(parents=True)
        (path / "images.npy").write_bytes(b"x" * 1000)
    _load(folder, cache_dir, [])
    assert not stale.exists() and live.exists()


def _fake_cache(cache_dir: Path, name: str, nbytes: int, used: float) -> Path:
    folder = cache_dir / name
    folder.mkdir(parents=True)
    (folder / "images.npy").write_bytes(b"\0" * nbytes)
    (folder / "index.json").write_text(json.dumps({"paths": ["a", "b"], "source": "/data"}))
    (folder / cachedir.USED_FILE).write_text("0\n")
    os.utime(folder / cachedir.USED_FILE, (used, used))
    return folder


def test_least_recently_used_caches_go_first_and_never_the_one_in_use(tmp_path):
    now = time.time()
    old = _fake_cache(tmp_path, "old", 4000, now - 300)
    _fake_cache(tmp_path, "mid", 4000, now - 200)
    new = _fake_cache(tmp_path, "new", 4000, now - 100)
    assert [e.folder.name for e in cachedir.list_caches(tmp_path)] == ["old", "mid", "new"]
    removed = cachedir.evict(tmp_path, 9000, keep=old)  # old is in use: mid goes instead
    assert [e.folder.name for e in removed] == ["mid"] and old.exists() and new.exists()
    cachedir.evict(tmp_path, 1, keep=new)
    assert [p.name for p in tmp_path.iterdir()] == ["new"]


def test_the_cap_applies_after_a_build(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    _fake_cache(cache_dir, "f" * 32, 10**6, time.time() - 1000)
    messages: list[str] = []
    _load(folder, cache_dir, messages, max_bytes=200_000)
    assert any("least recently used cache ffff" in m for m in messages), messages
    assert [e.images for e in cachedir.list_caches(cache_dir)] == [12]


def test_cli_lists_and_clears_caches_with_sizes(tmp_path):
    runner = CliRunner()
    _fake_cache(tmp_path, "k1", 2048, time.time() - 50)
    _fake_cache(tmp_path, "k2", 4096, time.time())
    listed = runner.invoke(cli, ["data", "cache", "list", "--cache-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith("k1") and "2.0 KB" in lines[0] and "2 images" in lines[0]
    assert lines[-1].startswith("2 cache(s), 6.1 KB")
    unknown = runner.invoke(cli, ["data", "cache", "clear", "nope", "--cache-dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "no cache named nope" in unknown.output
    one = runner.invoke(cli, ["data", "cache", "clear", "k1", "--cache-dir", str(tmp_path)])
    assert one.exit_code == 0 and "Removed 1 cache(s)" in one.output and not (tmp_path / "k1").exists()
    everything = runner.invoke(cli, ["data", "cache", "clear", "--cache-dir", str(tmp_path)])
    assert everything.exit_code == 0 and not any(tmp_path.iterdir())


def test_file_stamp_never_opens_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    assert cachedir.file_stamp(tmp_path / "x.jpg") == "not-a-file"
    assert cachedir.file_stamp(tmp_path / "missing.jpg") == "missing"
