"""The file backend: one JSON Lines file per run, only ever appended to.

Each line is one record. Appending costs the same at step 10 and at step 100,000. A
line cut short by a crash mid-write (a torn last line: the start of a record, with no
newline) is ignored with a warning when the run is read, and moved to `<file>.torn` before
the next append; it never takes earlier records with it. A complete last record that only
lacks its newline is a record like any other (the newline is added before the next
append). Any other damage (an empty file, a line that is not a record, even as the last
line) is a `CorruptRunError` naming the file and line, and nothing is changed. A lock file
next to the run lets only one driver advance it.

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
from railyard.store.base import DEFAULT_LEASE, LockingStore, Release, RunQuery
from railyard.store.locks import FileLock
from railyard.store.summary import Lease

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

    def __init__(self, directory: Path | str, *, fsync: bool = False, lease: float = DEFAULT_LEASE) -> None:
        super().__init__(lease=lease)
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

    def _lease_path(self, run_id: str) -> Path:
        """`<run_id>.lease`: who holds the run and until when, as JSON (replaced whole, never appended to)."""
        return self.path(run_id).with_suffix(".lease")

    def _cancel_path(self, run_id: str) -> Path:
        """`<run_id>.cancel`: the reason of a cancellation asked of the run while a driver held it."""
        return self.path(run_id).with_suffix(".cancel")

    # -- the RunStore protocol ------------------------------------------------------------

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create the run's file holding `records`, whole (a complete file is linked into place).

        Raises:
            RunExists: the run's file exists (it is left unchanged).
            ValueError: `records` is empty: a run file starts with the run's first record, so an
                empty file is read as damaged.
        """
        path = self.path(run_id)
        data = self._lines(run_id, records)

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
            if lease is not None:
                self._put_lease(run_id, lease)

        lease = self._lease_of(run_id)
        await anyio.to_thread.run_sync(create)

    async def replace(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Write the run's file anew with `records`, atomically (a temporary file renamed over it).

        Raises:
            ValueError: `records` is empty (see `create`).
        """
        path = self.path(run_id)
        data = self._lines(run_id, records)

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
        if run_id in self._holding:
            if run_id not in self._shown:  # the driver's first record: its lease is shown from here (renewed apart)
                lease = self._lease_of(run_id)
                assert lease is not None
                await anyio.to_thread.run_sync(self._put_lease, run_id, lease)
            self._noticed(run_id, _read_text(self._cancel_path(run_id)))

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """Every complete record of the run; a torn last line is skipped with a warning.

        Nothing is written: a torn line is cut off only by the next driver to lock the run.

        Raises:
            RunNotFound: the run has no file.
            CorruptRunError: the file is empty, or a line is not a run record (the message names
                the file and the line).
        """
        path = self.path(run_id)

        def read() -> bytes:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise RunNotFound(run_id, str(self.directory)) from None

        records, torn = _parse(run_id, path, await anyio.to_thread.run_sync(read))
        if torn:
            warnings.warn(
                TornRecordWarning(
                    f"{path}: the last line is incomplete (its writer died mid-write) and was skipped: {torn[:80]!r}"
                ),
                stacklevel=2,
            )
        return records

    async def _select(self, query: RunQuery) -> Sequence[RunInfo]:
        """Summaries of the runs in the directory; a file that is not a readable run is left out with a warning."""
        infos: list[RunInfo] = []
        paths = sorted(self.directory.glob("*.jsonl")) if self.directory.exists() else []
        for path in paths:
            run_id = path.stem
            try:
                records = await self.read(run_id)
                lease = await anyio.to_thread.run_sync(self._get_lease, run_id)
                info = info_from_stored(run_id, records, lease, query.now)
            except (CorruptRunError, ValueError) as err:  # one bad file must not hide the others
                warnings.warn(UnreadableRunWarning(f"{path} is left out of the run list: {err}"), stacklevel=2)
                continue
            infos.append(info)
        return query.page(infos, repr(self))

    def _get_lease(self, run_id: str) -> Lease:
        text = _read_text(self._lease_path(run_id))
        asked = _read_text(self._cancel_path(run_id))
        if text is None:
            return Lease(None, None, asked)
        try:
            data = json.loads(text)
            return Lease(str(data["owner"]), float(data["expires"]), asked)
        except (ValueError, KeyError, TypeError):
            warnings.warn(
                UnreadableRunWarning(
                    f"{self._lease_path(run_id)} is not a lease railyard wrote ({text[:80]!r}): the run is listed "
                    f"without an owner. Delete the file (the run's next driver writes it anew)."
                ),
                stacklevel=3,
            )
            return Lease(None, None, asked)

    def _put_lease(self, run_id: str, lease: Lease) -> str | None:
        path = self._lease_path(run_id)
        if not self.path(run_id).exists():
            return None
        if lease.owner is None:
            path.unlink(missing_ok=True)
            return None
        temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
        temporary.write_text(json.dumps({"owner": lease.owner, "expires": lease.expires}))
        os.replace(temporary, path)
        return _read_text(self._cancel_path(run_id))

    async def _write_lease(self, run_id: str, lease: Lease) -> str | None:
        return await anyio.to_thread.run_sync(self._put_lease, run_id, lease)

    async def _ask_cancel(self, run_id: str, reason: str) -> None:
        records = await self.read(run_id)  # RunNotFound if there is none
        if records and records[-1].status in (RunStatus.ENDED, RunStatus.CANCELLED):
            return  # finished meanwhile: `cancel` says so

        def ask() -> None:
            path = self._cancel_path(run_id)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
            temporary.write_text(reason)
            os.replace(temporary, path)

        await anyio.to_thread.run_sync(ask)

    async def _remove(self, run_id: str) -> None:
        def remove() -> None:
            path = self.path(run_id)
            try:
                path.unlink()
            except FileNotFoundError:
                raise RunNotFound(run_id, str(self.directory)) from None
            for leftover in (
                self._lease_path(run_id),
                self._cancel_path(run_id),
                path.with_name(f"{path.name}.torn"),
                self._lock_path(run_id),  # held by the caller: unlinked while held, dropped when it lets go
            ):
                leftover.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(remove)

    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's lock file; end the file with a whole line before anything is appended."""
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

    def _lines(self, run_id: str, records: Sequence[StoredRecord]) -> bytes:
        if not records:
            raise ValueError(
                f"{self!r} cannot write run {run_id!r} without records: a run file starts with the run's first "
                f"record (an empty file is read as damaged). Pass the run's first records."
            )
        return b"".join(_line(record) for record in records)

    def _repair(self, run_id: str) -> bytes:
        """Make the run's file end with a newline, so that an append starts a line; return a torn line cut off.

        A last record that lacks only its newline gets one; a torn last line is cut off and kept
        in `<file>.torn`. A file with any other damage is left as it is, for `read` to report.
        """
        path = self.path(run_id)
        try:
            with open(path, "rb") as file:
                size = file.seek(0, os.SEEK_END)
                if size == 0:
                    return b""  # not a run file (left for `read` to report)
                file.seek(size - 1)
                if file.read(1) == b"\n":
                    return b""  # the usual case: whole lines, nothing to read
                file.seek(0)
                data = file.read()
        except FileNotFoundError:
            return b""
        try:
            _, torn = _parse(run_id, path, data)
        except CorruptRunError:
            return b""  # damaged, perhaps in the last line too: change nothing (`read` reports it)
        if not torn:  # the last record is complete, only its newline is missing
            with open(path, "ab") as file:
                file.write(b"\n")
                if self.fsync:
                    os.fsync(file.fileno())
            return b""
        with open(path.with_name(f"{path.name}.torn"), "ab") as kept:
            kept.write(torn + b"\n")
        with open(path, "r+b") as file:
            file.truncate(len(data) - len(torn))
        return torn


def _read_text(path: Path) -> str | None:
    """A small file's text, or `None` when there is no such file."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


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


_FIELDS = ("kind", "status", "node_id", "finishes_step", "ts", "record")
"""The fields of a record line (with `graph`, on a run's first record)."""
_STATUSES = tuple(status.value for status in RunStatus)


def _parse(run_id: str, path: Path, data: bytes) -> tuple[list[StoredRecord], bytes]:
    """The records in a run file's bytes, and its torn last line (`b""` if none).

    Raises:
        CorruptRunError: the file is empty, or a line (a complete last line too) is not a run record.
    """
    if not data:
        raise CorruptRunError(
            run_id,
            f"{path} line 1",
            1,
            "the file is empty, but railyard creates a run file whole, with the run's first record, so this "
            "one was not written by railyard (or lost its data to a power cut before it reached the disk). "
            "Delete it to start the run anew",
        )
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: nothing, a record without its newline, or a torn line
    # The first line is written whole with the file (see `create`); only an append can be torn.
    torn = tail if lines and _cut_short(tail) else b""
    if tail and not torn:
        lines.append(tail)
    return [_record(run_id, path, number, line) for number, line in enumerate(lines, start=1)], torn


def _record(run_id: str, path: Path, number: int, line: bytes) -> StoredRecord:
    """The record on line `number` of a run file.

    Raises:
        CorruptRunError: the line is not a run record; the message says why, without echoing it.
    """

    def corrupt(problem: str, prefix: str = "not a run record: ") -> CorruptRunError:
        return CorruptRunError(run_id, f"{path} line {number}", number, f"{prefix}{problem}")

    try:
        text = line.decode()  # here, not in `json.loads`, whose guess at another encoding misleads
    except UnicodeDecodeError as err:
        bad = f"byte {err.start + 1} of the line is 0x{line[err.start]:02x}, which is not UTF-8"
        if _has_record_fields(line.decode(errors="replace")):
            raise corrupt(f"the line holds a run record, but {bad}: it was damaged after it was written", "") from None
        raise corrupt(f"{bad} (a record is a line of UTF-8 JSON)") from None
    if not text.strip():
        raise corrupt("the line is empty")
    try:
        item = json.loads(text)
    except ValueError as err:
        problem = f"{err.msg} at column {err.pos + 1}" if isinstance(err, json.JSONDecodeError) else str(err)
        raise corrupt(f"the line is not JSON ({problem})") from None
    if not isinstance(item, dict):
        raise corrupt(f"the line is JSON, but not an object: {_shown(item)}")
    fields: dict[str, Any] = item
    missing = [name for name in _FIELDS if name not in fields]
    if len(missing) == len(_FIELDS):
        raise corrupt(f"the line is a JSON object without a record's fields ({_names(_FIELDS)})")
    if missing:
        raise corrupt(f"the line has no {_names(missing)} field{'s' if len(missing) > 1 else ''}")
    kind, status, node_id, finishes_step, ts, body = (fields[name] for name in _FIELDS)
    graph = fields.get("graph")
    if not isinstance(kind, str):
        raise corrupt(f"`kind` must be a string, not {_shown(kind)}")
    if status not in _STATUSES:
        raise corrupt(f"`status` must be one of {', '.join(_STATUSES)}, not {_shown(status)}")
    if node_id is not None and not isinstance(node_id, str):
        raise corrupt(f"`node_id` must be a string or null, not {_shown(node_id)}")
    if not isinstance(finishes_step, bool):
        raise corrupt(f"`finishes_step` must be true or false, not {_shown(finishes_step)}")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise corrupt(f"`ts` must be a number, not {_shown(ts)}")
    if not isinstance(body, dict):
        raise corrupt(f"`record` must be a JSON object, not {_shown(body)}")
    if graph is not None and not isinstance(graph, str):
        raise corrupt(f"`graph` must be a string or null, not {_shown(graph)}")
    return StoredRecord(
        kind=kind,
        body=json.dumps(body, separators=(",", ":")),
        status=RunStatus(status),
        node_id=node_id,
        finishes_step=finishes_step,
        ts=ts,
        graph=graph,
    )


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _has_record_fields(text: str) -> bool:
    try:
        item = json.loads(text)
    except ValueError:
        return False
    return isinstance(item, dict) and all(name in item for name in _FIELDS)


def _shown(value: Any) -> str:
    """A stored value, shortened, for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


# -- torn lines -------------------------------------------------------------------------------
# A writer that dies mid-append leaves a prefix of a record line: the start of a JSON object,
# perhaps ending inside a string, a number, a literal or a UTF-8 character. Anything else
# without a newline at the end of the file was not left by a crash, and is reported, not cut.

_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*'
_TOKEN = re.compile(
    rf'[ \t\r]*(?:(?P<mark>[{{}}\[\]:,])|(?P<string>{_STRING}")'
    r"|(?P<scalar>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null))"
)
_CUT_TOKEN = re.compile(  # at the end of the text: a token cut short, or only blanks
    rf"[ \t\r]*(?:(?P<string>{_STRING}(?:\\|\\u[0-9a-fA-F]{{0,3}})?)"
    r"|(?P<scalar>-|-?(?:0|[1-9][0-9]*)(?:\.[0-9]*|(?:\.[0-9]+)?[eE][+-]?[0-9]*)?|t|tr|tru|f|fa|fal|fals|n|nu|nul|))\Z"
)
# What the scanner expects next: a value or key (`first_…`: or the close of an empty
# object or array), the colon after a key, or the `next` item's comma or the close.
_VALUE = frozenset({"value", "first_value"})
_KEY = frozenset({"key", "first_key"})
_CLOSES = {"}": ("{", "first_key"), "]": ("[", "first_value")}


def _cut_short(line: bytes) -> bool:
    """Whether `line` is the start of a JSON object, cut off before the object ends."""
    try:
        text = line.decode()
    except UnicodeDecodeError as err:
        if err.reason != "unexpected end of data" or err.end != len(line):
            return False
        text = line[: err.start].decode()  # the last character was cut in two
    if not text.startswith("{"):
        return False
    expect = "value"
    stack: list[str] = []
    position = 0
    while True:
        cut = _CUT_TOKEN.match(text, position)
        if cut is not None:
            if cut["string"] is not None:
                return expect in _VALUE or expect in _KEY
            return not cut["scalar"] or expect in _VALUE
        token = _TOKEN.match(text, position)
        if token is None:
            return False
        position = token.end()
        mark = token["mark"]
        if token["string"] is not None and expect in _KEY:
            expect = "colon"
        elif mark is None and expect in _VALUE:  # a string, number or literal
            expect = "next"
        elif mark in {"{", "["} and expect in _VALUE:
            stack.append(mark)
            expect = "first_key" if mark == "{" else "first_value"
        elif mark in _CLOSES and stack and stack[-1] == _CLOSES[mark][0] and expect in {"next", _CLOSES[mark][1]}:
            stack.pop()
            if not stack:
                return False  # the object is complete: a whole line, not a torn one
            expect = "next"
        elif mark == ":" and expect == "colon":
            expect = "value"
        elif mark == "," and expect == "next":
            expect = "key" if stack[-1] == "{" else "value"
        else:
            return False
