"""One writer per run folder: an OS file lock held for as long as a run trains.

``<run>/.lock`` is locked with ``fcntl.flock`` (exclusive, non-blocking) and holds the pid of the
process that took it. The kernel drops the lock when that process exits, however it exits (kill -9
included), so a stale lock needs no cleanup: the next process simply gets it and writes its own
pid. The pid in the file is only used to say who holds a busy run.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from imgai.errors import ImgaiError

LOCK_FILE = ".lock"


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace")[:32].strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """An exclusive lock on one run folder; release() (or process exit) frees it."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise ImgaiError(
                f"cannot lock run folder '{self.run_dir}' ({exc.strerror or exc}): check that it is writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ImgaiError(f"cannot lock run folder '{self.run_dir}' ({exc.strerror or exc})") from None
            pid = _read_pid(self.path)
            who = f"process {pid}" if pid is not None and _pid_alive(pid) else "another process"
            raise ImgaiError(
                f"run '{self.run_dir}' is being trained by {who}: wait for it to finish "
                f"(or stop it{f' with kill {pid}' if pid else ''}), then resume"
            ) from None
        # Ours now; any pid left in the file belonged to a process that died without unlocking.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[RunLock]:
    """Hold the run folder's lock for the block; ImgaiError (exit 2) if another process holds it."""
    lock = RunLock(run_dir).acquire()
    try:
        yield lock
    finally:
        lock.release()


def check_free(run_dir: str | Path) -> None:
    """Fail now (ImgaiError) if another process is training ``run_dir``: the CLI calls this before
    its slow imports, and the lock itself is taken again by the training code."""
    RunLock(run_dir).acquire().release()


def holder(run_dir: str | Path) -> int | None:
    """The pid training ``run_dir`` now, or None if nobody holds its lock."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(path) or -1
    finally:
        os.close(fd)
    return None
