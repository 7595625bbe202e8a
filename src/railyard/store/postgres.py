"""The PostgreSQL backend: many runs, many workers, many machines (`pip install 'railyard[postgres]'`).

psycopg 3, async, with a connection pool. Records are rows of JSON, readable in `psql`
(`SELECT seq, kind, body->>'state' FROM railyard_records WHERE run_id = '...'`).

Exactly one driver advances a run: driving takes a session-level advisory lock on a
connection of its own, which PostgreSQL drops when that connection ends, so a crashed
driver's runs become free again. The driver's records are written on that same
connection: a driver that has lost its lock cannot write another step. Workers find
runs ready to go on with `SELECT ... FOR UPDATE SKIP LOCKED` (see `claim`), so many
workers can claim runs at once without waiting on each other.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from railyard.exceptions import CorruptRunError, PersistenceError, RunExists, RunNotFound
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.store.base import READY, LockingStore, Release

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("The PostgreSQL store needs psycopg: pip install 'railyard[postgres]'") from err

__all__ = ("SCHEMA_VERSION", "PostgresStore")

SCHEMA_VERSION = 2
"""The version of the table layout this railyard writes and reads.

Version 2 added `railyard_runs.graph`, the name of each run's graph; a version 1
database is upgraded in place (one transaction adding the column) when first opened.
"""

_SCHEMA_LOCK = 0x7261696C  # an advisory lock key serializing schema creation
_LOCK_SALT = 0x72756E  # mixed into run lock keys, so they do not collide with other uses

_SCHEMA = """
CREATE TABLE IF NOT EXISTS railyard_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS railyard_runs (
    run_id text PRIMARY KEY,
    status text NOT NULL,
    started_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    steps integer NOT NULL,
    last_node text,
    next_seq integer NOT NULL,
    graph text
);
CREATE INDEX IF NOT EXISTS railyard_runs_status ON railyard_runs (status, updated_at);
CREATE TABLE IF NOT EXISTS railyard_records (
    run_id text NOT NULL REFERENCES railyard_runs (run_id),
    seq integer NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    node_id text,
    finishes_step boolean NOT NULL,
    ts double precision NOT NULL,
    body json NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""

_COLUMNS = {
    "railyard_runs": ["run_id", "status", "started_at", "updated_at", "steps", "last_node", "next_seq", "graph"],
    "railyard_records": ["run_id", "seq", "kind", "status", "node_id", "finishes_step", "ts", "body"],
}


def _redact(conninfo: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", conninfo)


class PostgresStore(LockingStore):
    """A `RunStore` in a PostgreSQL database."""

    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 10) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.min_size = min_size
        self.max_size = max_size
        self._pool: AsyncConnectionPool[Any] | None = None
        self._opening = anyio.Lock()
        self._held: dict[str, tuple[psycopg.AsyncConnection[Any], anyio.Lock]] = {}

    def __repr__(self) -> str:
        return f"PostgresStore({_redact(self.conninfo)!r})"

    # -- connections and schema -----------------------------------------------------------

    async def _connection_pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                try:  # fail at once, with the server's own words, when it cannot be reached
                    probe = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=10)
                except psycopg.OperationalError as err:
                    raise PersistenceError(f"Cannot connect to {self!r}: {str(err).strip()}") from None
                try:
                    await self._check_schema(probe)
                finally:
                    await probe.close()
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self.conninfo,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    kwargs={"autocommit": True},
                    open=False,
                )
                try:
                    await pool.open(wait=True, timeout=10.0)
                except psycopg.OperationalError as err:
                    await pool.close()
                    raise PersistenceError(f"Cannot connect to {self!r}: {err}") from None
                except Exception:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def _check_schema(self, connection: psycopg.AsyncConnection[Any]) -> None:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cursor = await connection.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name LIKE 'railyard_%%' ORDER BY ordinal_position"
            )
            columns: dict[str, list[str]] = {}
            for table, column in await cursor.fetchall():
                columns.setdefault(table, []).append(column)
            if not columns:
                await connection.execute(_SCHEMA)
                await connection.execute(
                    "INSERT INTO railyard_meta (key, value) VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
                    (str(SCHEMA_VERSION),),
                )
                return
            if "railyard_meta" not in columns:
                raise PersistenceError(
                    f"{self!r} has railyard tables but no railyard_meta table; it was not made by railyard."
                )
            row = await (
                await connection.execute("SELECT value FROM railyard_meta WHERE key = 'schema_version'")
            ).fetchone()
            version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
            if version is None:
                raise PersistenceError(f"{self!r} has no valid railyard schema version; it was not made by railyard.")
            if version > SCHEMA_VERSION:
                raise PersistenceError(
                    f"{self!r} was written by a newer railyard (schema version {version}; this railyard reads up "
                    f"to {SCHEMA_VERSION}). Upgrade railyard to use it."
                )
            if version == 1 and columns.get("railyard_runs") == _COLUMNS["railyard_runs"][:-1]:
                # version 2 added the graph's name; the schema lock held here keeps other upgraders out
                await connection.execute("ALTER TABLE railyard_runs ADD COLUMN graph text")
                await connection.execute("UPDATE railyard_meta SET value = '2' WHERE key = 'schema_version'")
                columns["railyard_runs"] = _COLUMNS["railyard_runs"]
                version = SCHEMA_VERSION
            for table, expected in _COLUMNS.items():
                if columns.get(table) != expected:
                    raise PersistenceError(
                        f"{self!r}: table {table} has columns {columns.get(table, [])}, expected {expected}; the "
                        f"database does not have railyard's schema version {version}."
                    )

    # -- the RunStore protocol ------------------------------------------------------------

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create the run with its first records in one transaction."""
        pool = await self._connection_pool()
        first_ts = records[0].ts if records else 0.0
        async with pool.connection() as connection, connection.transaction():
            cursor = await connection.execute(
                "INSERT INTO railyard_runs VALUES (%s, %s, %s, %s, 0, NULL, 0, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (run_id, RunStatus.CREATED.value, first_ts, first_ts, records[0].graph if records else None),
            )
            if await cursor.fetchone() is None:
                raise RunExists(run_id, repr(self))
            await self._insert(connection, run_id, records)

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records in one transaction; a driver writes on the connection holding its lock."""
        held = self._held.get(run_id)
        if held is not None:
            connection, guard = held
            async with guard:
                try:
                    async with connection.transaction():
                        await self._insert(connection, run_id, records)
                except psycopg.OperationalError as err:
                    raise PersistenceError(
                        f"Lost the connection holding run {run_id!r}'s lock in {self!r} ({err}); another driver "
                        f"may take the run over, so this one stops. Resume the run to go on."
                    ) from None
            return
        pool = await self._connection_pool()
        async with pool.connection() as connection, connection.transaction():
            await self._insert(connection, run_id, records)

    async def _insert(
        self, connection: psycopg.AsyncConnection[Any], run_id: str, records: Sequence[StoredRecord]
    ) -> None:
        cursor = await connection.execute(
            "SELECT next_seq, steps, last_node, status FROM railyard_runs WHERE run_id = %s FOR UPDATE", (run_id,)
        )
        row = await cursor.fetchone()
        if row is None:
            raise RunNotFound(run_id, repr(self))
        seq, steps, last_node, status = row
        rows = []
        for record in records:
            rows.append(
                (
                    run_id,
                    seq,
                    record.kind,
                    record.status.value,
                    record.node_id,
                    record.finishes_step,
                    record.ts,
                    record.body,
                )
            )
            seq += 1
            steps += int(record.finishes_step)
            last_node = record.node_id or last_node
            status = record.status.value
        async with connection.cursor() as insert:
            await insert.executemany("INSERT INTO railyard_records VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
        await connection.execute(
            "UPDATE railyard_runs SET next_seq = %s, steps = %s, last_node = %s, status = %s, updated_at = %s "
            "WHERE run_id = %s",
            (seq, steps, last_node, status, records[-1].ts if records else 0.0, run_id),
        )

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """Every record of the run, in order."""
        pool = await self._connection_pool()
        async with pool.connection() as connection:
            found = await (
                await connection.execute("SELECT graph FROM railyard_runs WHERE run_id = %s", (run_id,))
            ).fetchone()
            if found is None:
                raise RunNotFound(run_id, repr(self))
            cursor = await connection.execute(
                "SELECT seq, kind, status, node_id, finishes_step, ts, body::text FROM railyard_records "
                "WHERE run_id = %s ORDER BY seq",
                (run_id,),
            )
            rows = await cursor.fetchall()
        records: list[StoredRecord] = []
        for index, (seq, kind, status, node_id, finishes_step, ts, body) in enumerate(rows):
            if seq != index:
                raise CorruptRunError(run_id, repr(self), index + 1, f"records jump from {index - 1} to {seq}")
            graph = found[0] if index == 0 else None
            try:
                records.append(StoredRecord(kind, body, RunStatus(status), node_id, finishes_step, ts, graph))
            except ValueError as err:
                raise CorruptRunError(run_id, repr(self), index + 1, str(err)) from None
        return records

    async def runs(self, *, status: RunStatus | None = None) -> Sequence[RunInfo]:
        """Summaries of the runs, oldest first."""
        pool = await self._connection_pool()
        query = "SELECT run_id, status, started_at, steps, last_node, graph FROM railyard_runs"
        async with pool.connection() as connection:
            if status is None:
                cursor = await connection.execute(f"{query} ORDER BY started_at, run_id")
            else:
                cursor = await connection.execute(
                    f"{query} WHERE status = %s ORDER BY started_at, run_id", (status.value,)
                )
            rows = await cursor.fetchall()
        return [
            RunInfo(run_id, RunStatus(state), datetime.fromtimestamp(started, UTC), steps, last_node, graph)
            for run_id, state, started, steps, last_node, graph in rows
        ]

    # -- locks and claims -----------------------------------------------------------------

    async def _lock_connection(self) -> psycopg.AsyncConnection[Any]:
        await self._connection_pool()  # the schema is checked before any lock is taken
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.OperationalError as err:
            raise PersistenceError(f"Cannot connect to {self!r}: {err}") from None

    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's advisory lock on a connection of its own."""
        connection = await self._lock_connection()
        try:
            cursor = await connection.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, %s))", (run_id, _LOCK_SALT)
            )
            row = await cursor.fetchone()
        except BaseException:
            await connection.close()
            raise
        if row is None or not row[0]:
            await connection.close()
            return None
        return self._hold(run_id, connection)

    def _hold(self, run_id: str, connection: psycopg.AsyncConnection[Any]) -> Release:
        self._held[run_id] = (connection, anyio.Lock())

        async def release() -> None:
            self._held.pop(run_id, None)
            await connection.close()  # ending the session releases its advisory lock

        return release

    async def claim(
        self,
        *,
        statuses: Collection[RunStatus] = READY,
        exclude: Collection[str] = (),
        graphs: Collection[str | None] | None = None,
    ) -> str | None:
        """Lock a run that is ready to go on, skipping rows other workers are looking at.

        Returns the run's id (`None` if no run is ready); drive it with
        `graph.resume(store, run_id)`, which takes the claim over. Runs in `exclude`,
        runs whose driver is alive and, with `graphs`, runs of other graphs are passed over.
        """
        connection = await self._lock_connection()
        passed = set(exclude) | set(self._claimed) | set(self._held)
        try:
            while True:  # a page at a time, past the runs other drivers hold
                async with connection.transaction():
                    cursor = await connection.execute(
                        "SELECT run_id FROM railyard_runs WHERE status = ANY(%s) AND NOT (run_id = ANY(%s)) "
                        "AND (%s OR graph = ANY(%s) OR (%s AND graph IS NULL)) "
                        "ORDER BY updated_at FOR UPDATE SKIP LOCKED LIMIT 32",
                        (
                            [status.value for status in statuses],
                            list(passed),
                            graphs is None,
                            [name for name in graphs or () if name is not None],
                            graphs is not None and None in graphs,
                        ),
                    )
                    page = [run_id for (run_id,) in await cursor.fetchall()]
                    for run_id in page:
                        locked = await connection.execute(
                            "SELECT pg_try_advisory_lock(hashtextextended(%s, %s))", (run_id, _LOCK_SALT)
                        )
                        row = await locked.fetchone()
                        if row is not None and row[0]:
                            self._claimed[run_id] = self._hold(run_id, connection)
                            return str(run_id)
                        passed.add(run_id)
                if not page:
                    break
        except BaseException:
            with anyio.CancelScope(shield=True):
                await connection.close()
            raise
        await connection.close()
        return None

    async def aclose(self) -> None:
        """Release held locks and close the pool."""
        await self.release_claims()
        for connection, _ in list(self._held.values()):
            await connection.close()
        self._held.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
