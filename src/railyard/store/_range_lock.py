"""Locks on byte ranges of the database file itself: whoever opens it, by whatever path, meets them.

An open file description lock (Linux's `F_OFD_SETLK`) on one byte of the file, far past
the bytes SQLite locks: it belongs to the file (its inode), not to the path it was opened
by, so a symlink or a hard link to the database reaches the same lock; two opens in one
process exclude each other; and the kernel drops it when the holder's process dies.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import struct
from pathlib import Path

__all__ = ("SUPPORTED", "RangeLock", "run_offset")

SUPPORTED = hasattr(fcntl, "F_OFD_SETLK")
"""Whether this platform has open file description locks (Linux does)."""

_BASE = 1 << 62
"""Run locks sit at `_BASE + hash`: far above SQLite's own lock bytes (about 1 GiB into the file)."""
_SPAN = 1 << 48


def run_offset(run_id: str) -> int:
    """The byte of the database file that run `run_id`'s lock covers."""
    return _BASE + int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") % _SPAN


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
        fd = os.open(self.path, os.O_RDWR)
        request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, self.offset, 1, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock (closing the file description releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
