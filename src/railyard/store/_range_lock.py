"""Locks on byte ranges of the database file itself: whoever opens it, by whatever path, meets them.

An open file description lock (Linux's `F_OFD_SETLK`) on one byte of the file, far past
the bytes SQLite locks: it belongs to the file (its inode), not to the path it was opened
by, so a symlink or a hard link to the database reaches the same lock; two opens in one
process exclude each other; and the kernel drops it when the holder's process dies.

A descriptor opened for a lock is never closed while the database may be open in this
process: closing any descriptor of a file drops every POSIX lock the process holds on
it, SQLite's own among them, and another process would then take itself for the
database's last user and delete the write-ahead log still in use here. Released locks
keep their descriptor in a pool per file (`_Pool`), taken again by the next lock; the
pool's descriptors are closed by `let_go` once no store of this process has the file
open (`retain` counts them).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ("SUPPORTED", "RangeLock", "let_go", "retain", "run_offset")

SUPPORTED = hasattr(fcntl, "F_OFD_SETLK")
"""Whether this platform has open file description locks (Linux does)."""

_BASE = 1 << 62
"""Run locks sit at `_BASE + hash`: far above SQLite's own lock bytes (about 1 GiB into the file)."""
_SPAN = 1 << 48


def run_offset(run_id: str) -> int:
    """The byte of the database file that run `run_id`'s lock covers."""
    return _BASE + int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") % _SPAN


@dataclass(slots=True)
class _Pool:
    """The descriptors of one file this process opened for run locks, and how many stores use the file."""

    free: list[int] = field(default_factory=list)
    stores: int = 0


_POOLS: dict[tuple[int, int], _Pool] = {}
_GUARD = threading.Lock()


def _key(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def retain(path: Path) -> None:
    """A store of this process opened the database at `path` (if it exists yet): keep its lock descriptors."""
    try:
        key = _key(path)
    except FileNotFoundError:
        return
    with _GUARD:
        _POOLS.setdefault(key, _Pool()).stores += 1


def let_go(path: Path) -> None:
    """A store of this process closed the database at `path` (its SQLite connections first).

    Once no store of this process has the file open, its free lock descriptors are closed.
    """
    try:
        key = _key(path)
    except FileNotFoundError:
        return
    with _GUARD:
        pool = _POOLS.get(key)
        if pool is None:
            return
        pool.stores -= 1
        if pool.stores > 0:
            return
        del _POOLS[key]
        free, pool.free = pool.free, []
    for fd in free:
        os.close(fd)


class RangeLock:
    """An exclusive lock on one byte of a file, taken without waiting; the file's bytes are untouched."""

    __slots__ = ("_fd", "offset", "path")

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; `False` if another holder has it.

        Raises:
            FileNotFoundError: the file does not exist.
        """
        key = _key(self.path)
        with _GUARD:
            pool = _POOLS.setdefault(key, _Pool())
            fd = pool.free.pop() if pool.free else None
        if fd is None:
            fd = os.open(self.path, os.O_RDWR)
        request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, self.offset, 1, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
        except OSError as err:
            self._give_back(key, fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock; its descriptor goes back to the pool, never closed here (see the module)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_UNLCK, os.SEEK_SET, self.offset, 1, 0))
        try:
            key = _key(self.path)
        except FileNotFoundError:  # the database was deleted: no SQLite lock of ours is left on it
            os.close(fd)
            return
        self._give_back(key, fd)

    @staticmethod
    def _give_back(key: tuple[int, int], fd: int) -> None:
        with _GUARD:
            pool = _POOLS.get(key)
            if pool is None:  # every store let go meanwhile
                os.close(fd)
                return
            pool.free.append(fd)
