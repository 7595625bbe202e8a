"""Exclusive, crash-safe locks on files: the operating system drops them when a process dies."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ("FileLock",)


class FileLock:
    """An exclusive `flock` on a lock file, taken without waiting.

    Each `FileLock` opens the file itself, so two locks on one path exclude each other
    even within one process. The lock file is left in place (removing it would race
    with another process opening it).
    """

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; `False` if another holder has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
