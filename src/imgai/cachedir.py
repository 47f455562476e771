"""Keeping the disk cache honest and bounded: content stamps, block checksums, stale builds,
listing, clearing and least-recently-used eviction of ``data.cache_dir``.

:mod:`imgai.cache` builds and reads caches; this module is what it asks before trusting one:

- :func:`file_stamp`: a file's size, mtime and a BLAKE2 hash of its first and last 4 KiB, so an
  image rewritten in place with its mtime restored (``touch -r``) still changes the cache key,
  for 8 KiB read per file;
- :func:`block_hashes` / :func:`verify_blocks`: a checksum per 4 MiB block of ``images.npy``,
  written with the cache and checked when it is opened, so bytes changed on disk are noticed and
  the cache rebuilt instead of trained on;
- :func:`remove_stale_builds`: ``.building-<key>-<pid>-*`` folders of processes that no longer
  run are removed at once (others after a day, for caches shared between machines);
- :func:`list_caches`, :func:`clear_caches`, :func:`evict`: ``imgai data cache list|clear`` and the
  ``data.cache_max_gb`` cap, oldest use first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

BUILDING_PREFIX = ".building-"
INDEX_FILE = "index.json"
IMAGES_FILE = "images.npy"
USED_FILE = "last_used"
STAMP_BYTES = 4096
BLOCK_BYTES = 4 * 2**20
STALE_BUILD_SECONDS = 24 * 3600


def file_stamp(path: str | Path) -> str:
    """``size:mtime_ns:hash(head+tail)`` of a regular file; "missing" or "not-a-file" otherwise
    (a FIFO is never opened: it could block)."""
    try:
        info = os.stat(path)
    except OSError:
        return "missing"
    if not stat.S_ISREG(info.st_mode):
        return "not-a-file"
    digest = hashlib.blake2b(digest_size=12)
    try:
        with open(path, "rb") as fh:
            digest.update(fh.read(STAMP_BYTES))
            if info.st_size > 2 * STAMP_BYTES:
                fh.seek(-STAMP_BYTES, os.SEEK_END)
            digest.update(fh.read(STAMP_BYTES))
    except OSError:
        return "unreadable"
    return f"{info.st_size}:{info.st_mtime_ns}:{digest.hexdigest()}"


def block_hashes(path: str | Path, offset: int = 0) -> list[str]:
    """BLAKE2 of each :data:`BLOCK_BYTES` block of ``path`` from ``offset`` on."""
    hashes = []
    with open(path, "rb") as fh:
        fh.seek(offset)
        while block := fh.read(BLOCK_BYTES):
            hashes.append(hashlib.blake2b(block, digest_size=16).hexdigest())
    return hashes


def verify_blocks(path: str | Path, offset: int, expected: list[str]) -> int | None:
    """None if every block matches ``expected``, else the first changed block's number."""
    actual = block_hashes(path, offset)
    if len(actual) != len(expected):
        return min(len(actual), len(expected))
    return next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def building_pid(name: str) -> int | None:
    """The pid in ``.building-<key>-<pid>-<random>``, if the name has one."""
    parts = name[len(BUILDING_PREFIX) :].split("-")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


def remove_stale_builds(cache_dir: Path) -> list[Path]:
    """Remove half-built caches whose builder died (at once) or that are a day old; returns them."""
    removed = []
    now = time.time()
    for entry in Path(cache_dir).glob(BUILDING_PREFIX + "*"):
        pid = building_pid(entry.name)
        try:
            old = now - entry.stat().st_mtime > STALE_BUILD_SECONDS
        except OSError:
            continue
        if old or (pid is not None and pid != os.getpid() and not _pid_alive(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def mark_used(folder: Path) -> None:
    """Record that the cache in ``folder`` was used now (for least-recently-used eviction)."""
    try:
        (folder / USED_FILE).write_text(f"{time.time():.0f}\n", encoding="ascii")
    except OSError:  # a read-only cache still works; it just ages
        pass


@dataclass
class CacheEntry:
    folder: Path
    bytes: int
    images: int | None
    source: str
    created: str
    last_used: float

    def describe(self) -> str:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.last_used))
        count = f"{self.images:,} images" if self.images is not None else "damaged"
        return f"{self.folder.name}  {_size(self.bytes):>9}  {count:>14}  last used {used}  {self.source}"


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def list_caches(cache_dir: str | Path) -> list[CacheEntry]:
    """Every finished cache under ``cache_dir``, least recently used first."""
    cache_dir = Path(cache_dir).expanduser()
    entries = []
    if not cache_dir.is_dir():
        return entries
    for folder in cache_dir.iterdir():
        if folder.name.startswith(".") or not folder.is_dir() or folder.is_symlink():
            continue
        images, source, created = None, "", ""
        try:
            index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
            images, source, created = (
                len(index["paths"]),
                str(index.get("source", "")),
                index.get("created", ""),
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass
        used_file = folder / USED_FILE
        try:
            last_used = (used_file if used_file.is_file() else folder).stat().st_mtime
        except OSError:
            last_used = 0.0
        entries.append(CacheEntry(folder, _folder_bytes(folder), images, source, created, last_used))
    return sorted(entries, key=lambda e: e.last_used)


def clear_caches(cache_dir: str | Path, keys: list[str] | tuple = ()) -> list[CacheEntry]:
    """Remove the caches named by ``keys`` (all when empty), and stale builds; returns what went."""
    entries = list_caches(cache_dir)
    chosen = [e for e in entries if not keys or e.folder.name in keys]
    for entry in chosen:
        shutil.rmtree(entry.folder, ignore_errors=True)
    remove_stale_builds(Path(cache_dir).expanduser())
    return chosen


def evict(cache_dir: str | Path, max_bytes: int, keep: Path | None = None) -> list[CacheEntry]:
    """Remove least recently used caches until the rest take at most ``max_bytes`` (never
    ``keep``, the one in use); returns the removed ones."""
    entries = list_caches(cache_dir)
    total = sum(e.bytes for e in entries)
    removed = []
    for entry in entries:
        if total <= max_bytes:
            break
        if keep is not None and entry.folder.resolve() == Path(keep).resolve():
            continue
        shutil.rmtree(entry.folder, ignore_errors=True)
        total -= entry.bytes
        removed.append(entry)
    return removed
