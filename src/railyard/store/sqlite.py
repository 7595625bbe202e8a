"""The SQLite backend: many runs in one database file, the embedded default for durable runs.

Reads, and writes that must wait for another process, run the standard library's
`sqlite3` in a worker thread, off the event loop. A small append (a step's records) is
committed on the event loop itself when the database is free: in WAL mode with
`synchronous="NORMAL"` a commit does not touch the disk's cache flush, so it costs tens
of microseconds, less than the hop to a thread; the WAL is checkpointed in the worker
thread. The database is in WAL mode; with `synchronous="NORMAL"` (the
default) a committed record survives the process dying, and with `"FULL"` it also
survives the machine losing power. Records are rows of JSON text, readable with the
`sqlite3` shell. Only one driver advances a run at a time: it holds a lock on a byte of
the database file itself (one byte per run, far past the bytes SQLite locks), which any
path to the file reaches and the kernel drops when the driver dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import anyio.to_thread

from railyard.exceptions import CorruptRunError, PersistenceError, RunExists, RunNotFound
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.store import _range_lock as range_locks
from railyard.store._range_lock import SUPPORTED as RANGE_LOCKS
from railyard.store._range_lock import RangeLock, run_offset
from railyard.store._sqlite_rows import (
    CHECKPOINT_BYTES,
    FAST_BYTES,
    INFO_COLUMNS,
    TakenOver,
    busy,
    checkpoint,
    info,
    insert,
    retry_busy,
    size,
    undecodable,
)
from railyard.store.base import (
    DEFAULT_LEASE,
    RECORD_COLUMNS,
    RUN_COLUMNS,
    LockingStore,
    Release,
    RunQuery,
    unknown_cursor,
    where_sql,
)
from railyard.store.locks import FileLock
from railyard.store.summary import Lease

__all__ = ("SCHEMA_VERSION", "SqliteStore")

SCHEMA_VERSION = 3
"""The version of the database layout this railyard writes and reads.

Version 2 added `railyard_runs.graph`, the name of each run's graph. Version 3 added
each run's note (its error, waits or cancel reason), timer, lease (`owner`,
`lease_expires`) and `cancel_requested`. An older database is upgraded in place (one
transaction adding the columns) when first opened.
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
    graph TEXT,
    note TEXT,
    wake_at REAL,
    owner TEXT,
    lease_expires REAL,
    cancel_requested TEXT
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

_RUN_COLUMNS = RUN_COLUMNS
_ADDED_IN = {
    2: ("graph TEXT",),
    3: ("note TEXT", "wake_at REAL", "owner TEXT", "lease_expires REAL", "cancel_requested TEXT"),
}
"""The columns of `railyard_runs` each schema version added."""
_RECORD_COLUMNS = RECORD_COLUMNS


class SqliteStore(LockingStore):
    """A `RunStore` in one SQLite database file.

    Fenced: taking a run writes a token of the taker's as its owner, and a driver's writes
    check it in their transaction, so a driver whose run was taken over writes nothing.
    """

    fenced = True

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        share_database: bool = False,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        """Keep runs in the SQLite database at `path`, made there if the path does not exist.

        `synchronous="FULL"` also survives the machine losing power, at a cost per step.
        A database holding other applications' tables is refused, unless `share_database`
        (then railyard adds its `railyard_*` tables beside them). `lease`: seconds a driver's
        lease on a run lasts (see `RunInfo.lease_expires`).
        """
        super().__init__(lease=lease)
        self.path = Path(path)
        self.synchronous = synchronous
        self.share_database = share_database
        self._connection: sqlite3.Connection | None = None
        self._guard = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        self._fast: sqlite3.Connection | None = None
        """The connection appends are committed on in the caller's thread (never waits for a lock)."""
        self._fast_guard = threading.Lock()
        self._unchecked = 0
        """Bytes committed on the fast connection since the WAL was last checkpointed."""
        self._retained = False
        """Whether this store counts among the file's users for its run-lock descriptors (`_range_lock`)."""

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- connection and schema ------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        if not self.path.exists():
            self._create_database()
        self._check_file()
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        try:
            self._check_schema(connection)  # before anything is written: a foreign database is left as it is
            retry_busy(lambda: connection.execute("PRAGMA journal_mode=WAL"))
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.DatabaseError as err:
            connection.close()
            raise PersistenceError(
                f"{self.path} is not a usable railyard SQLite database: {err}. Nothing was written to it; "
                f"check it with `sqlite3 {self.path} 'PRAGMA integrity_check'`, or use another file."
            ) from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        if not self._retained:  # this process keeps the file's run-lock descriptors open while this store is
            range_locks.retain(self.path)
            self._retained = True
        return connection

    def _create_database(self) -> None:
        """Make a new database at `path`, whole: built aside, then linked into place (never half made).

        Another process creating it at the same moment wins or loses the link; either way
        the path only ever holds a complete railyard database.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        try:
            connection = sqlite3.connect(temporary, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(
                    f"BEGIN; {_SCHEMA} INSERT INTO railyard_meta (key, value) "
                    f"VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
                )
            finally:
                connection.close()  # checkpoints the WAL into the file
            with contextlib.suppress(FileExistsError):  # made meanwhile by another process: checked like any
                os.link(temporary, self.path)  # atomic, and fails if the path exists
        finally:
            for leftover in (temporary, *(temporary.with_name(temporary.name + end) for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)

    def _check_file(self) -> None:
        """Refuse, before SQLite opens it, a file that is not a SQLite database at all."""
        try:
            with open(self.path, "rb") as file:
                header = file.read(16)
        except IsADirectoryError:
            raise PersistenceError(f"{self.path} is a directory, not a SQLite database file.") from None
        if not header:
            raise PersistenceError(
                f"{self.path} is an empty file, not a railyard database (railyard makes its database itself). "
                f"Nothing was written to it: delete it, or give SqliteStore a path that does not exist yet."
            )
        if header != b"SQLite format 3\x00":
            raise PersistenceError(
                f"{self.path} is not a SQLite database (it starts with {header[:16]!r}). Nothing was written "
                f"to it: give SqliteStore a path that does not exist yet, or an existing railyard database."
            )

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        ours = {"railyard_meta", "railyard_runs", "railyard_records"}
        if not names & ours and (not names or self.share_database):  # empty, or shared on purpose: set it up
            script = (
                f"BEGIN IMMEDIATE; {_SCHEMA} INSERT OR IGNORE INTO railyard_meta (key, value) "
                f"VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            )
            retry_busy(lambda: connection.executescript(script))
            names |= ours
        tables = names & ours
        if not tables:
            others = sorted(name for name in names if not name.startswith("sqlite_"))
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise PersistenceError(
                f"{self.path} is not a railyard database: it holds another application's tables ({shown}) "
                f"and none of railyard's. Nothing was written to it; give SqliteStore a file of its own, or "
                f"pass share_database=True to add railyard's tables beside the others."
            )
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
        if version < SCHEMA_VERSION:
            version = self._upgrade(connection)
        for table, expected in (("railyard_runs", _RUN_COLUMNS), ("railyard_records", _RECORD_COLUMNS)):
            columns = tuple(row[1] for row in connection.execute(f"PRAGMA table_info({table})"))
            if columns != expected:
                raise PersistenceError(
                    f"{self.path}: table {table} has columns {list(columns)}, expected {list(expected)}; "
                    f"the database does not have railyard's schema version {version}."
                )

    def _upgrade(self, connection: sqlite3.Connection) -> int:
        """Add the columns of the versions after the database's, in one transaction (another process may race)."""

        def upgrade() -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute("SELECT value FROM railyard_meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0])  # read again: upgraded by another process meanwhile, perhaps
                if version < SCHEMA_VERSION:
                    known = len(_RUN_COLUMNS) - sum(len(_ADDED_IN[v]) for v in range(version + 1, SCHEMA_VERSION + 1))
                    columns = tuple(r[1] for r in connection.execute("PRAGMA table_info(railyard_runs)"))
                    if columns != _RUN_COLUMNS[:known]:
                        raise PersistenceError(
                            f"{self.path}: table railyard_runs has columns {list(columns)}, expected "
                            f"{list(_RUN_COLUMNS[:known])}; the database does not have railyard's schema version "
                            f"{version}."
                        )
                    for added in range(version + 1, SCHEMA_VERSION + 1):
                        for column in _ADDED_IN[added]:
                            connection.execute(f"ALTER TABLE railyard_runs ADD COLUMN {column}")
                    connection.execute(
                        "UPDATE railyard_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                    )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        retry_busy(upgrade)
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
            and size <= FAST_BYTES
            and self._connection is not None
            and self._fast_guard.acquire(blocking=False)
        ):
            try:
                connection = self._fast or self._fast_connect()
                try:
                    result = work(connection)
                except sqlite3.OperationalError as err:
                    if not busy(err):
                        raise
                else:
                    self._unchecked += size
                    if self._unchecked >= CHECKPOINT_BYTES:
                        self._unchecked = 0
                        await self._call(checkpoint)
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
                    "INSERT INTO railyard_runs VALUES (?, ?, ?, ?, 0, NULL, 0, ?, NULL, NULL, ?, ?, NULL)",
                    (
                        run_id,
                        RunStatus.CREATED.value,
                        first_ts,
                        first_ts,
                        records[0].graph if records else None,
                        lease.owner if lease is not None else None,
                        lease.expires if lease is not None else None,
                    ),
                )
                insert(connection, run_id, records, repr(self))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        def guarded(connection: sqlite3.Connection) -> None:
            try:
                create(connection)
            except sqlite3.DatabaseError as err:
                if busy(err):
                    raise  # the fast path hands it to the worker thread, which waits
                raise self._damaged(err, run_id) from None

        lease = self._lease_of(run_id)
        await self._write(guarded, size(records))

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records to the run in one transaction.

        Raises:
            RunNotFound: the database holds no such run.
            LeaseLost: this store's driver held the run, and another took it over (nothing is written).
        """
        fence = self._fence(run_id)
        lease = self._lease_of(run_id)

        def append(connection: sqlite3.Connection) -> str | None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                asked = insert(connection, run_id, records, repr(self), lease, fence)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return asked

        def guarded(connection: sqlite3.Connection) -> str | None:
            try:
                return append(connection)
            except sqlite3.DatabaseError as err:
                if busy(err):
                    raise  # the fast path hands it to the worker thread, which waits
                raise self._damaged(err, run_id) from None

        try:
            asked = await self._write(guarded, size(records))
        except TakenOver as taken:
            raise self._taken_over(run_id, taken.holder) from None
        self._noticed(run_id, asked)

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """Every record of the run, in order.

        Raises:
            RunNotFound: the database holds no such run.
            CorruptRunError: a record is missing or damaged (the message names the run, the
                record and the file).
            PersistenceError: the database file itself is damaged.
        """

        def read(connection: sqlite3.Connection) -> list[StoredRecord]:
            try:
                return self._read(connection, run_id)
            except sqlite3.OperationalError as err:
                if "decode" not in str(err):
                    raise self._damaged(err, run_id) from None
                raise CorruptRunError(
                    run_id, repr(self), undecodable(connection, run_id), "its text is not valid UTF-8"
                ) from None
            except sqlite3.DatabaseError as err:
                raise self._damaged(err, run_id) from None

        return await self._call(read)

    def _read(self, connection: sqlite3.Connection, run_id: str) -> list[StoredRecord]:
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
                missing = f"record {index + 1} is" if seq == index + 1 else f"records {index + 1} to {seq} are"
                raise CorruptRunError(
                    run_id, repr(self), index + 1, f"{missing} missing (deleted from the database, or cut off)"
                )
            graph = run[0] if index == 0 else None
            try:
                records.append(StoredRecord(kind, body, RunStatus(status), node_id, bool(finishes_step), ts, graph))
            except ValueError as err:
                raise CorruptRunError(run_id, repr(self), index + 1, str(err)) from None
        return records

    def _damaged(self, error: sqlite3.Error, run_id: str | None = None) -> PersistenceError:
        about = f" reading run {run_id!r}" if run_id is not None else ""
        return PersistenceError(
            f"{self.path} is damaged ({error}){about}. Nothing was changed; check it with "
            f"`sqlite3 {self.path} 'PRAGMA integrity_check'` and restore it from a backup."
        )

    async def _select(self, query: RunQuery) -> Sequence[RunInfo]:
        """The runs `query` asks for, filtered and paged in SQL."""
        where, params = where_sql(query, "?")

        def runs(connection: sqlite3.Connection) -> list[RunInfo]:
            if query.cursor is not None:
                at = connection.execute(
                    "SELECT started_at FROM railyard_runs WHERE run_id = ?", (query.cursor,)
                ).fetchone()
                if at is None:
                    raise ValueError(unknown_cursor(query.cursor, repr(self)))
                cursor_where, cursor_params = (
                    " AND (started_at > ? OR (started_at = ? AND run_id > ?))",
                    [
                        at[0],
                        at[0],
                        query.cursor,
                    ],
                )
            else:
                cursor_where, cursor_params = "", []
            limit = f" LIMIT {query.limit}" if query.limit is not None else ""
            rows = connection.execute(
                f"SELECT {INFO_COLUMNS} FROM railyard_runs WHERE {where}{cursor_where} "
                f"ORDER BY started_at, run_id{limit}",
                [*params, *cursor_params],
            )
            return [info(row, query.now) for row in rows]

        def guarded(connection: sqlite3.Connection) -> list[RunInfo]:
            try:
                return runs(connection)
            except sqlite3.DatabaseError as err:
                raise self._damaged(err) from None

        return await self._call(guarded)

    async def _write_lease(self, run_id: str, lease: Lease) -> str | None:
        def write(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "UPDATE railyard_runs SET owner = ?, lease_expires = ? WHERE run_id = ? RETURNING cancel_requested",
                (lease.owner, lease.expires, run_id),
            ).fetchone()
            return None if row is None else row[0]

        if self._connection is None:
            await self._call(lambda connection: None)  # opened (and checked) before the fast path is taken
        return await self._write(write, 0)

    async def _take_fenced(self, run_id: str, token: str, expires: float) -> None:
        """Write `token` as the owner of a run another driver owned; a free run is owned from its first write.

        So a driver refused before it writes (another graph's run, a run that ended) changes
        no byte of the file; the run's lock (`_range_lock`) keeps every other driver out meanwhile.
        """

        def take(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE railyard_runs SET owner = ?, lease_expires = ? WHERE run_id = ? AND owner IS NOT NULL",
                (token, expires, run_id),
            )

        if self._connection is None:
            await self._call(lambda connection: None)  # opened (and checked) before the fast path is taken
        if await self._call(lambda connection: self._owned(connection, run_id)):
            await self._write(take, 0)

    @staticmethod
    def _owned(connection: sqlite3.Connection, run_id: str) -> bool:
        row = connection.execute("SELECT owner FROM railyard_runs WHERE run_id = ?", (run_id,)).fetchone()
        return row is not None and row[0] is not None

    async def _renew_fenced(self, run_id: str, token: str, expires: float) -> str | None:
        def look(connection: sqlite3.Connection) -> tuple[str | None, str | None] | None:
            row = connection.execute(
                "SELECT owner, cancel_requested FROM railyard_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else (row[0], row[1])

        def renew(connection: sqlite3.Connection) -> tuple[bool, str | None]:
            row = connection.execute(
                "UPDATE railyard_runs SET lease_expires = ? WHERE run_id = ? AND owner = ? RETURNING cancel_requested",
                (expires, run_id, token),
            ).fetchone()
            if row is not None:
                return True, row[0]
            found = connection.execute("SELECT owner FROM railyard_runs WHERE run_id = ?", (run_id,)).fetchone()
            return found is None or found[0] is None, None if found is None else found[0]

        seen = await self._call(look)
        if seen is None:
            return None
        owner, asked = seen
        if owner is None:  # not written yet (a free run is owned from its first write): nothing to renew
            return asked
        renewed, value = await self._write(renew, 0)
        if not renewed:
            raise self._taken_over(run_id, value)
        return value

    async def _clear_fenced(self, run_id: str, token: str) -> None:
        def clear(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE railyard_runs SET owner = NULL, lease_expires = NULL WHERE run_id = ? AND owner = ?",
                (run_id, token),
            )

        await self._write(clear, 0)

    async def _ask_cancel(self, run_id: str, reason: str) -> None:
        def ask(connection: sqlite3.Connection) -> None:
            cursor = connection.execute(
                "UPDATE railyard_runs SET cancel_requested = ? "
                "WHERE run_id = ? AND status NOT IN ('ended', 'cancelled')",
                (reason, run_id),
            )
            found = (
                cursor.rowcount > 0
                or connection.execute(  # else: finished meanwhile (`cancel` says so)
                    "SELECT 1 FROM railyard_runs WHERE run_id = ?", (run_id,)
                ).fetchone()
            )
            if not found:
                raise RunNotFound(run_id, repr(self))

        await self._call(ask)

    async def _remove(self, run_id: str) -> None:
        def remove(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute("DELETE FROM railyard_records WHERE run_id = ?", (run_id,))
                if connection.execute("DELETE FROM railyard_runs WHERE run_id = ?", (run_id,)).rowcount == 0:
                    raise RunNotFound(run_id, repr(self))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        await self._call(remove)
        if not RANGE_LOCKS:  # pragma: no cover - platforms without open file description locks
            self._lock_file(run_id).path.unlink(missing_ok=True)

    def _lock_file(self, run_id: str) -> FileLock:  # pragma: no cover - platforms without range locks
        real = self.path.resolve()
        name = hashlib.sha256(run_id.encode()).hexdigest()[:32]
        return FileLock(real.with_name(f"{real.name}.locks") / f"{name}.lock")

    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's lock: a lock on a byte of the database file itself (see `_range_lock`).

        Where the platform has no such locks, a lock file in `<database>.locks/`, next to
        the database's real path (so a symlink to it finds the same lock).
        """
        if self._connection is None:
            await self._call(lambda connection: None)  # the database exists (and is ours) before it is locked
        # where the platform has no byte-range locks: a lock file (pragma: no cover)
        lock: RangeLock | FileLock = (
            RangeLock(self.path, run_offset(run_id)) if RANGE_LOCKS else self._lock_file(run_id)
        )
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
                if self._retained:  # after SQLite's connections: closing a descriptor drops their locks
                    self._retained = False
                    range_locks.let_go(self.path)

        await anyio.to_thread.run_sync(close, limiter=self._limiter)
