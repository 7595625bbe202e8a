"""The SQLite backend: many runs in one database file, the embedded default for durable runs.

Reads, and writes that must wait for another process, run the standard library's
`sqlite3` in a worker thread, off the event loop. A small append (a step's records) is
committed on the event loop itself when the database is free: in WAL mode with
`synchronous="NORMAL"` a commit does not touch the disk's cache flush, so it costs tens
of microseconds, less than the hop to a thread; the WAL is checkpointed in the worker
thread. The database is in WAL mode; with `synchronous="NORMAL"` (the
default) a committed record survives the process dying, and with `"FULL"` it also
survives the machine losing power. Records are rows of JSON text, readable with the
`sqlite3` shell. Only one driver advances a run at a time: a lock file per run, in a
directory next to the database, held while the run is driven.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

import anyio.to_thread

from railyard.exceptions import CorruptRunError, PersistenceError, RunExists, RunNotFound
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.store.base import LockingStore, Release
from railyard.store.locks import FileLock

__all__ = ("SCHEMA_VERSION", "SqliteStore")

SCHEMA_VERSION = 2
"""The version of the database layout this railyard writes and reads.

Version 2 added `railyard_runs.graph`, the name of each run's graph; a version 1
database is upgraded in place (one transaction adding the column) when first opened.
"""

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS railyard_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS railyard_runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    steps INTEGER NOT NULL,
    last_node TEXT,
    next_seq INTEGER NOT NULL,
    graph TEXT
);
CREATE INDEX IF NOT EXISTS railyard_runs_status ON railyard_runs (status, started_at);
CREATE TABLE IF NOT EXISTS railyard_records (
    run_id TEXT NOT NULL REFERENCES railyard_runs (run_id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    node_id TEXT,
    finishes_step INTEGER NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""

_RUN_COLUMNS = ("run_id", "status", "started_at", "updated_at", "steps", "last_node", "next_seq", "graph")
_RECORD_COLUMNS = ("run_id", "seq", "kind", "status", "node_id", "finishes_step", "ts", "body")


class SqliteStore(LockingStore):
    """A `RunStore` in one SQLite database file."""

    def __init__(self, path: Path | str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> None:
        super().__init__()
        self.path = Path(path)
        self.synchronous = synchronous
        self._connection: sqlite3.Connection | None = None
        self._guard = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._fast: sqlite3.Connection | None = None
        """The connection appends are committed on in the caller's thread (never waits for a lock)."""
        self._fast_guard = threading.Lock()
        self._unchecked = 0
        """Bytes committed on the fast connection since the WAL was last checkpointed."""

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- connection and schema ------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        try:
            _retry_busy(lambda: connection.execute("PRAGMA journal_mode=WAL"))
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            self._check_schema(connection)
        except sqlite3.DatabaseError as err:
            connection.close()
            raise PersistenceError(f"{self.path} is not a usable railyard SQLite database: {err}") from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = {"railyard_meta", "railyard_runs", "railyard_records"}
        if not tables & ours:
            # the tables and the version row in one transaction: no reader sees one without the other
            script = (
                f"BEGIN IMMEDIATE; {_SCHEMA} INSERT OR IGNORE INTO railyard_meta (key, value) "
                f"VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
            _retry_busy(lambda: connection.executescript(script))
            tables |= ours
        if "railyard_meta" not in tables:
            raise PersistenceError(
                f"{self.path} has railyard tables but no railyard_meta table: it was not written by railyard, "
                f"or was damaged. Use another database file."
            )
        row = connection.execute("SELECT value FROM railyard_meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
        if version is None:
            raise PersistenceError(f"{self.path} has no valid railyard schema version; it was not written by railyard.")
        if version > SCHEMA_VERSION:
            raise PersistenceError(
                f"{self.path} was written by a newer railyard (schema version {version}; this railyard reads "
                f"up to {SCHEMA_VERSION}). Upgrade railyard to use it."
            )
        if version == 1:
            version = self._upgrade_from_1(connection)
        for table, expected in (("railyard_runs", _RUN_COLUMNS), ("railyard_records", _RECORD_COLUMNS)):
            columns = tuple(row[1] for row in connection.execute(f"PRAGMA table_info({table})"))
            if columns != expected:
                raise PersistenceError(
                    f"{self.path}: table {table} has columns {list(columns)}, expected {list(expected)}; "
                    f"the database does not have railyard's schema version {version}."
                )

    def _upgrade_from_1(self, connection: sqlite3.Connection) -> int:
        """Add version 2's `graph` column, in one transaction (another process may be doing it too)."""

        def upgrade() -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute("SELECT value FROM railyard_meta WHERE key = 'schema_version'").fetchone()
                if row is not None and row[0] == "1":  # not upgraded by another process meanwhile
                    columns = tuple(r[1] for r in connection.execute("PRAGMA table_info(railyard_runs)"))
                    if columns != _RUN_COLUMNS[:-1]:
                        raise PersistenceError(
                            f"{self.path}: table railyard_runs has columns {list(columns)}, expected "
                            f"{list(_RUN_COLUMNS[:-1])}; the database does not have railyard's schema version 1."
                        )
                    connection.execute("ALTER TABLE railyard_runs ADD COLUMN graph TEXT")
                    connection.execute("UPDATE railyard_meta SET value = '2' WHERE key = 'schema_version'")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        _retry_busy(upgrade)
        return SCHEMA_VERSION

    async def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._guard:
                return work(self._connect())

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def _write(self, work: Callable[[sqlite3.Connection], T], size: int) -> T:
        """Run a small write on the event loop if the database is free; else in the worker thread.

        The fast connection never waits: when another process holds the write lock (or
        the store is in use from another thread), the write goes to the worker thread,
        which waits for it as long as `_call` does.
        """
        if (
            self.synchronous == "NORMAL"
            and size <= _FAST_BYTES
            and self._connection is not None
            and self._fast_guard.acquire(blocking=False)
        ):
            try:
                connection = self._fast or self._fast_connect()
                try:
                    result = work(connection)
                except sqlite3.OperationalError as err:
                    if "locked" not in str(err) and "busy" not in str(err):
                        raise
                else:
                    self._unchecked += size
                    if self._unchecked >= _CHECKPOINT_BYTES:
                        self._unchecked = 0
                        await self._call(_checkpoint)
                    return result
            finally:
                self._fast_guard.release()
        return await self._call(work)

    def _fast_connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=0)
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in the worker thread
        self._fast = connection
        return connection

    # -- the RunStore protocol ------------------------------------------------------------

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create the run with its first records in one transaction."""

        def create(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                exists = connection.execute("SELECT 1 FROM railyard_runs WHERE run_id = ?", (run_id,)).fetchone()
                if exists:
                    raise RunExists(run_id, repr(self))
                first_ts = records[0].ts if records else 0.0
                connection.execute(
                    "INSERT INTO railyard_runs VALUES (?, ?, ?, ?, 0, NULL, 0, ?)",
                    (run_id, RunStatus.CREATED.value, first_ts, first_ts, records[0].graph if records else None),
                )
                _insert(connection, run_id, records, repr(self))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        await self._write(create, _size(records))

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records to the run in one transaction."""

        def append(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                _insert(connection, run_id, records, repr(self))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        await self._write(append, _size(records))

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """Every record of the run, in order."""

        def read(connection: sqlite3.Connection) -> list[StoredRecord]:
            run = connection.execute("SELECT graph FROM railyard_runs WHERE run_id = ?", (run_id,)).fetchone()
            if run is None:
                raise RunNotFound(run_id, repr(self))
            rows = connection.execute(
                "SELECT seq, kind, status, node_id, finishes_step, ts, body FROM railyard_records "
                "WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            records: list[StoredRecord] = []
            for index, (seq, kind, status, node_id, finishes_step, ts, body) in enumerate(rows):
                if seq != index:
                    raise CorruptRunError(run_id, repr(self), index + 1, f"records jump from {index - 1} to {seq}")
                graph = run[0] if index == 0 else None
                try:
                    records.append(StoredRecord(kind, body, RunStatus(status), node_id, bool(finishes_step), ts, graph))
                except ValueError as err:
                    raise CorruptRunError(run_id, repr(self), index + 1, str(err)) from None
            return records

        return await self._call(read)

    async def runs(self, *, status: RunStatus | None = None) -> Sequence[RunInfo]:
        """Summaries of the runs, oldest first."""

        def runs(connection: sqlite3.Connection) -> list[RunInfo]:
            query = "SELECT run_id, status, started_at, steps, last_node, graph FROM railyard_runs"
            rows = (
                connection.execute(f"{query} WHERE status = ? ORDER BY started_at", (status.value,))
                if status is not None
                else connection.execute(f"{query} ORDER BY started_at")
            )
            return [
                RunInfo(run_id, RunStatus(state), datetime.fromtimestamp(started, UTC), steps, last_node, graph)
                for run_id, state, started, steps, last_node, graph in rows
            ]

        return await self._call(runs)

    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's lock file (in `<database>.locks/`)."""
        name = hashlib.sha256(run_id.encode()).hexdigest()[:32]
        lock = FileLock(self.path.with_name(f"{self.path.name}.locks") / f"{name}.lock")
        if not await anyio.to_thread.run_sync(lock.acquire):
            return None

        async def release() -> None:
            lock.release()

        return release

    async def aclose(self) -> None:
        """Give up this store's claims and close the database connection."""
        await self.release_claims()

        def close() -> None:
            with self._guard, self._fast_guard:
                if self._fast is not None:
                    self._fast.close()
                    self._fast = None
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        await anyio.to_thread.run_sync(close, limiter=self._limiter)


_FAST_BYTES = 256 * 1024
"""Appends up to this size are committed on the event loop (when the database is free)."""
_CHECKPOINT_BYTES = 4 * 1024 * 1024
"""The WAL is checkpointed (in the worker thread) after about this much is committed on the loop."""


def _size(records: Sequence[StoredRecord]) -> int:
    return sum(len(record.body) for record in records)


def _checkpoint(connection: sqlite3.Connection) -> None:
    """Copy the WAL into the database without waiting on readers (SQLite's own automatic checkpoint)."""
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _retry_busy(work: Callable[[], object], attempts: int = 50) -> None:
    """Run `work`, retrying while another process holds the database (as at a racing first open)."""
    for attempt in range(attempts):
        try:
            work()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


def _insert(connection: sqlite3.Connection, run_id: str, records: Sequence[StoredRecord], where: str) -> None:
    row = connection.execute(
        "SELECT next_seq, steps, last_node, status FROM railyard_runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        raise RunNotFound(run_id, where)
    seq, steps, last_node, status = row
    for record in records:
        connection.execute(
            "INSERT INTO railyard_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                seq,
                record.kind,
                record.status.value,
                record.node_id,
                int(record.finishes_step),
                record.ts,
                record.body,
            ),
        )
        seq += 1
        steps += int(record.finishes_step)
        last_node = record.node_id or last_node
        status = record.status.value
    updated = records[-1].ts if records else 0.0
    connection.execute(
        "UPDATE railyard_runs SET next_seq = ?, steps = ?, last_node = ?, status = ?, updated_at = ? WHERE run_id = ?",
        (seq, steps, last_node, status, updated, run_id),
    )
