"""The file backend: one JSON Lines file per run, only ever appended to.

Each line is one record. Appending costs the same at step 10 and at step 100,000. A
line cut short by a crash mid-write (a torn last line) is ignored with a warning when the
run is read, and cut off before the next append; it never takes earlier records with it.
A damaged line before the last one is an error naming the file and line, and nothing is
changed. A lock file next to the run lets only one driver advance it.

Without `fsync=True`, a record is safe from the process dying as soon as it is appended
(a small append is then written from the event loop: the page cache takes it at once);
`fsync=True` also makes it safe from the machine losing power, at a cost per step.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from railyard.exceptions import CorruptRunError, RunExists, RunNotFound
from railyard.store import RunInfo, RunStatus, StoredRecord, info_from_stored
from railyard.store.base import LockingStore, Release
from railyard.store.locks import FileLock

__all__ = ("FileStore", "TornRecordWarning", "UnreadableRunWarning")

_FAST_BYTES = 256 * 1024
"""Appends up to this size, without `fsync`, are written on the event loop (the page cache takes them)."""

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class UnreadableRunWarning(UserWarning):
    """A file in the store's directory is not a readable run; it is left out of `runs()`."""


class TornRecordWarning(UserWarning):
    """The last line of a run file was cut short (its writer died mid-write); it was skipped."""


class FileStore(LockingStore):
    """A `RunStore` keeping each run in `<directory>/<run_id>.jsonl`."""

    def __init__(self, directory: Path | str, *, fsync: bool = False) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"FileStore({str(self.directory)!r})"

    def path(self, run_id: str) -> Path:
        """The file holding run `run_id`.

        Raises:
            ValueError: `run_id` cannot be a file name (letters, digits, `.`, `_` and `-` only).
        """
        if not _SAFE_ID.fullmatch(run_id):
            raise ValueError(
                f"Run id {run_id!r} cannot be used by {self!r}: use letters, digits, '.', '_' and '-' "
                f"(starting with a letter or digit, at most 200 characters)."
            )
        return self.directory / f"{run_id}.jsonl"

    def _lock_path(self, run_id: str) -> Path:
        return self.path(run_id).with_suffix(".lock")

    # -- the RunStore protocol ------------------------------------------------------------

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create the run's file holding `records`; refuse an existing run."""
        path = self.path(run_id)
        data = b"".join(_line(record) for record in records)

        def create() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
            with open(temporary, "wb") as file:
                file.write(data)
                if self.fsync:
                    os.fsync(file.fileno())
            try:
                os.link(temporary, path)  # atomic, and fails if the run exists
            except FileExistsError:
                raise RunExists(run_id, str(path)) from None
            finally:
                temporary.unlink()

        await anyio.to_thread.run_sync(create)

    async def replace(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Write the run's file anew with `records`, atomically (a temporary file renamed over it)."""
        path = self.path(run_id)
        data = b"".join(_line(record) for record in records)

        def replace() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)

        await anyio.to_thread.run_sync(replace)

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records to the run's file in one write."""
        path = self.path(run_id)
        data = b"".join(_line(record) for record in records)

        def append() -> None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                raise RunNotFound(run_id, str(self.directory)) from None
            try:
                size = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:  # a write may take only part of the data (disk full, a size limit)
                        view = view[os.write(fd, view) :]
                    if self.fsync:
                        os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, size)  # leave no partial record behind
                    raise
            finally:
                os.close(fd)

        if self.fsync or len(data) > _FAST_BYTES:
            await anyio.to_thread.run_sync(append)
        else:
            append()  # a small write without fsync: cheaper here than a hop to a thread

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """Every complete record of the run; a torn last line is skipped with a warning."""
        path = self.path(run_id)

        def read() -> bytes:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise RunNotFound(run_id, str(self.directory)) from None

        return _parse(run_id, path, await anyio.to_thread.run_sync(read))

    async def runs(self, *, status: RunStatus | None = None) -> Sequence[RunInfo]:
        """Summaries of the runs in the directory, oldest first."""
        infos: list[RunInfo] = []
        paths = sorted(self.directory.glob("*.jsonl")) if self.directory.exists() else []
        for path in paths:
            run_id = path.stem
            try:
                info = info_from_stored(run_id, await self.read(run_id))
            except (CorruptRunError, ValueError) as err:  # one bad file must not hide the others
                warnings.warn(UnreadableRunWarning(f"{path} is left out of the run list: {err}"), stacklevel=2)
                continue
            if status is None or info.status == status:
                infos.append(info)
        return sorted(infos, key=lambda info: info.started_at.timestamp() if info.started_at else 0.0)

    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's lock file; cut off a torn last line before anything is appended."""
        lock = FileLock(self._lock_path(run_id))
        if not await anyio.to_thread.run_sync(lock.acquire):
            return None

        async def release() -> None:
            lock.release()

        try:
            torn = await anyio.to_thread.run_sync(self._repair, run_id)
        except BaseException:
            lock.release()
            raise
        if torn:
            warnings.warn(
                TornRecordWarning(
                    f"{self.path(run_id)}: cut off an incomplete last line (its writer died mid-write), "
                    f"kept in {self.path(run_id).name}.torn: {torn[:80]!r}"
                ),
                stacklevel=3,
            )
        return release

    async def aclose(self) -> None:
        """Give up this store's claims (files and memory need no closing)."""
        await self.release_claims()

    def _repair(self, run_id: str) -> bytes:
        """Cut a torn last line off the run's file, keeping its bytes in `<file>.torn`; return them."""
        path = self.path(run_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return b""
        if not data or data.endswith(b"\n") or not data.startswith(b"{"):
            return b""  # complete, or not a run log at all (left for `read` to report)
        keep = data.rfind(b"\n") + 1
        with open(path.with_name(f"{path.name}.torn"), "ab") as torn:
            torn.write(data[keep:] + b"\n")
        with open(path, "r+b") as file:
            file.truncate(keep)
        return data[keep:]


def _line(record: StoredRecord) -> bytes:
    fields: dict[str, Any] = {
        "kind": record.kind,
        "status": record.status.value,
        "node_id": record.node_id,
        "finishes_step": record.finishes_step,
        "ts": record.ts,
    }
    if record.graph is not None:
        fields["graph"] = record.graph
    meta = json.dumps(fields, separators=(",", ":"))
    return f'{meta[:-1]},"record":{record.body}}}\n'.encode()


def _graph_name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"`graph` must be a string, not {value!r}")


def _parse(run_id: str, path: Path, data: bytes) -> list[StoredRecord]:
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty, or a torn line
    if tail:
        warnings.warn(
            TornRecordWarning(
                f"{path}: the last line is incomplete (its writer died mid-write) and was skipped: {tail[:80]!r}"
            ),
            stacklevel=3,
        )
    records: list[StoredRecord] = []
    for number, line in enumerate(lines, start=1):
        try:
            item: dict[str, Any] = json.loads(line)
            records.append(
                StoredRecord(
                    kind=item["kind"],
                    body=json.dumps(item["record"], separators=(",", ":")),
                    status=RunStatus(item["status"]),
                    node_id=item["node_id"],
                    finishes_step=item["finishes_step"],
                    ts=item["ts"],
                    graph=_graph_name(item.get("graph")),
                )
            )
        except (ValueError, KeyError, TypeError) as err:
            raise CorruptRunError(run_id, f"{path} line {number}", number, f"not a run record ({err})") from None
    return records
