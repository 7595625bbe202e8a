"""The PostgreSQL backend: many runs, many workers, many machines (`pip install 'railyard-graph[postgres]'`).

psycopg 3, async, with pooled sessions. Records are rows of JSON, readable in `psql`
(`SELECT seq, kind, body->>'state' FROM railyard_records WHERE run_id = '...'`). A batch
of records is one statement and one commit (`_APPEND`), so one round trip.

Exactly one driver advances a run: driving takes a session-level advisory lock on a
session of its own (from a pool kept for them), which PostgreSQL drops when that session
ends, so a crashed driver's runs become free again; TCP keepalives end a partitioned
one's. The driver's records are written on that same session: a driver that has lost its
lock cannot write another step. Workers find runs ready to go on with
`SELECT ... FOR UPDATE SKIP LOCKED` (see `claim`), so many workers can claim runs at once
without waiting on each other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from time import time
from typing import Any

import anyio

from railyard.exceptions import CorruptRunError, PersistenceError, RunExists, RunNotFound
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.store.base import (
    DEFAULT_LEASE,
    READY,
    RECORD_COLUMNS,
    REPORTED_STATUS_SQL,
    RUN_COLUMNS,
    LockingStore,
    Release,
    RunQuery,
    unknown_cursor,
    where_sql,
)
from railyard.store.summary import Lease, batch_note, info_fields, reported_status

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("The PostgreSQL store needs psycopg: pip install 'railyard-graph[postgres]'") from err

__all__ = ("SCHEMA_VERSION", "PostgresStore")

SCHEMA_VERSION = 3
"""The version of the table layout this railyard writes and reads.

Version 2 added `railyard_runs.graph`, the name of each run's graph. Version 3 added
each run's note (its error, waits or cancel reason), timer, lease (`owner`,
`lease_expires`) and `cancel_requested`. An older database is upgraded in place (one
transaction adding the columns) when first opened.
"""

_SCHEMA_LOCK = 0x7261696C  # an advisory lock key serializing schema creation
_LOCK_SALT = 0x72756E  # mixed into run lock keys, so they do not collide with other uses
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
"""libpq's TCP keepalives: a silent peer is given up on after about a minute (30 s + 3 x 10 s)."""

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
    graph text,
    note text,
    wake_at double precision,
    owner text,
    lease_expires double precision,
    cancel_requested text
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
    "railyard_runs": list(RUN_COLUMNS),
    "railyard_records": list(RECORD_COLUMNS),
}

_ADDED_IN = {
    2: ("graph text",),
    3: (
        "note text",
        "wake_at double precision",
        "owner text",
        "lease_expires double precision",
        "cancel_requested text",
    ),
}
"""The columns of `railyard_runs` each schema version added."""

# The records of a batch, from one JSON array (one parameter: cheaper to send and parse than
# an array per column): one row each, numbered from 1 (`n`) in the batch's order.
_RECORDS = """ROWS FROM (json_to_recordset(%(records)s::json)
        AS (kind text, status text, node_id text, finishes_step boolean, ts double precision, body json))
    WITH ORDINALITY AS r (kind, status, node_id, finishes_step, ts, body, n)"""

# One statement per batch, so one round trip and one commit: the run's row moves on (its
# row lock orders concurrent writers) and hands the batch its first sequence number; no
# row comes back when the run is missing, and then nothing is written.
_APPEND = f"""
WITH run AS (
    UPDATE railyard_runs SET
        next_seq = next_seq + %(count)s::integer,
        steps = steps + %(steps)s::integer,
        last_node = COALESCE(%(last_node)s::text, last_node),
        status = COALESCE(%(status)s::text, status),
        updated_at = COALESCE(%(updated_at)s::double precision, updated_at),
        note = CASE WHEN %(decided)s::boolean THEN %(note)s::text
            WHEN %(same)s::text IS NULL OR status = %(same)s::text THEN note END,
        wake_at = CASE WHEN %(decided)s::boolean THEN %(wake_at)s::double precision
            WHEN %(same)s::text IS NULL OR status = %(same)s::text THEN wake_at END,
        owner = COALESCE(%(owner)s::text, owner),
        lease_expires = COALESCE(%(lease_expires)s::double precision, lease_expires)
    WHERE run_id = %(run_id)s::text
    RETURNING next_seq - %(count)s::integer AS first_seq, cancel_requested
), written AS (
    INSERT INTO railyard_records (run_id, seq, kind, status, node_id, finishes_step, ts, body)
    SELECT %(run_id)s::text, run.first_seq + r.n - 1, r.kind, r.status, r.node_id, r.finishes_step, r.ts, r.body
    FROM run, {_RECORDS}
)
SELECT first_seq, cancel_requested FROM run
"""

# The run's row is written as the batch leaves it; no row comes back (and nothing is
# written) when a run with this id exists.
_CREATE = f"""
WITH run AS (
    INSERT INTO railyard_runs (run_id, status, started_at, updated_at, steps, last_node, next_seq, graph, note,
                               wake_at, owner, lease_expires)
    VALUES (%(run_id)s::text, %(status)s::text, %(started_at)s::double precision, %(updated_at)s::double precision,
            %(steps)s::integer, %(last_node)s::text, %(count)s::integer, %(graph)s::text, %(note)s::text,
            %(wake_at)s::double precision, %(owner)s::text, %(lease_expires)s::double precision)
    ON CONFLICT DO NOTHING
    RETURNING run_id
), written AS (
    INSERT INTO railyard_records (run_id, seq, kind, status, node_id, finishes_step, ts, body)
    SELECT run.run_id, r.n - 1, r.kind, r.status, r.node_id, r.finishes_step, r.ts, r.body
    FROM run, {_RECORDS}
)
SELECT 1 FROM run
"""


def _records_json(records: Sequence[StoredRecord]) -> str:
    """The batch as one JSON array; each record's body (JSON already) goes in as it is."""
    return (
        "["
        + ",".join(
            f'{{"kind":{json.dumps(r.kind)},"status":{json.dumps(r.status.value)},"node_id":{json.dumps(r.node_id)},'
            f'"finishes_step":{"true" if r.finishes_step else "false"},"ts":{float(r.ts)!r},"body":{r.body}}}'
            for r in records
        )
        + "]"
    )


def _batch(records: Sequence[StoredRecord]) -> dict[str, Any]:
    """The parameters `_APPEND` and `_CREATE` take for a batch of records."""
    last = records[-1] if records else None
    decided, note, wake_at, same = batch_note(records)
    return {
        "decided": decided,
        "note": note,
        "wake_at": wake_at,
        "same": same.value if same is not None else None,
        "count": len(records),
        "steps": sum(record.finishes_step for record in records),
        "last_node": next((record.node_id for record in reversed(records) if record.node_id), None),
        "status": last.status.value if last is not None else None,
        "updated_at": last.ts if last is not None else None,
        "records": _records_json(records),
    }


def _redact(conninfo: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", conninfo)


class PostgresStore(LockingStore):
    """A `RunStore` in a PostgreSQL database.

    Two pools of sessions: up to `max_size` for reading and for writes made outside a
    driver, and up to `max_locks` holding runs' locks, one per run this store drives or
    has claimed (a worker polling `claim` reuses one). With all of those in use, `lock`
    and `claim` wait up to 10 s for one, then raise `PersistenceError`.

    Sessions use TCP keepalives, so a partitioned peer is noticed in about a minute at
    both ends and the server frees its runs: by default `keepalives_idle=30`,
    `keepalives_interval=10`, `keepalives_count=3`, each overridable in `conninfo`
    (`keepalives=0` turns them off).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        max_locks: int = 100,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        super().__init__(lease=lease)
        self.conninfo = conninfo
        self.min_size = min_size
        self.max_size = max_size
        self.max_locks = max_locks
        self._pool: AsyncConnectionPool[Any] | None = None
        self._lock_pool: AsyncConnectionPool[Any] | None = None
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
                keepalives = _keepalives(self.conninfo)
                try:  # fail at once, with the server's own words, when it cannot be reached
                    probe = await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True, connect_timeout=10, **keepalives
                    )
                except psycopg.OperationalError as err:
                    raise PersistenceError(f"Cannot connect to {self!r}: {str(err).strip()}") from None
                try:
                    await self._check_schema(probe)
                finally:
                    await probe.close()
                configure = _server_keepalives(keepalives)
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self.conninfo,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    kwargs={"autocommit": True, **keepalives},
                    configure=configure,
                    check=_check_alive,
                    open=False,
                    name="railyard",
                )
                lock_pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self.conninfo,
                    min_size=0,
                    max_size=self.max_locks,
                    kwargs={"autocommit": True, **keepalives},
                    configure=configure,
                    check=_check_alive,
                    open=False,
                    name="railyard-locks",
                    timeout=10.0,
                )
                try:
                    await pool.open(wait=True, timeout=10.0)
                    await lock_pool.open()
                except psycopg.OperationalError as err:
                    await pool.close()
                    await lock_pool.close()
                    raise PersistenceError(f"Cannot connect to {self!r}: {err}") from None
                except BaseException:
                    await pool.close()
                    await lock_pool.close()
                    raise
                self._pool, self._lock_pool = pool, lock_pool
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
            if version < SCHEMA_VERSION:
                # each version's columns, added in order; the schema lock held here keeps other upgraders out
                known = len(_COLUMNS["railyard_runs"]) - sum(
                    len(_ADDED_IN[v]) for v in range(version + 1, SCHEMA_VERSION + 1)
                )
                if columns.get("railyard_runs") == _COLUMNS["railyard_runs"][:known]:
                    for added in range(version + 1, SCHEMA_VERSION + 1):
                        for column in _ADDED_IN[added]:
                            await connection.execute(f"ALTER TABLE railyard_runs ADD COLUMN {column}")
                    await connection.execute(
                        "UPDATE railyard_meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                    )
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
        """Create the run with its first records: one statement, one commit.

        A driver creates on the connection holding the run's lock, so one that has lost it
        cannot write.
        """
        params = {
            **_batch(records),
            "run_id": run_id,
            "status": records[-1].status.value if records else RunStatus.CREATED.value,
            "started_at": records[0].ts if records else 0.0,
            "updated_at": records[-1].ts if records else 0.0,
            "graph": records[0].graph if records else None,
        }
        lease = self._lease_of(run_id)
        params["owner"] = lease.owner if lease is not None else None
        params["lease_expires"] = lease.expires if lease is not None else None
        if await self._write(run_id, _CREATE, params) is None:
            raise RunExists(run_id, repr(self))

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records: one statement, one commit, so all or none.

        A driver appends on the connection holding the run's lock, so one that has lost it
        cannot write another step. A cancelled append wrote nothing or everything (the
        server may finish the statement after the call is cancelled, with the lock still
        held by its session until then).
        """
        lease = self._lease_of(run_id)  # written by the run's driver: its lease is renewed with it
        params = {
            **_batch(records),
            "run_id": run_id,
            "owner": lease.owner if lease is not None else None,
            "lease_expires": lease.expires if lease is not None else None,
        }
        row = await self._write(run_id, _APPEND, params)
        if row is None:
            raise RunNotFound(run_id, repr(self))
        self._noticed(run_id, row[1])

    async def _write(self, run_id: str, statement: str, params: dict[str, Any] | Sequence[Any]) -> Any:
        """Run one writing statement in autocommit; return the row it returns (`None`: it wrote nothing)."""
        held = self._held.get(run_id)
        if held is None:
            pool = await self._connection_pool()
            async with pool.connection() as connection:
                return await (await connection.execute(statement, params)).fetchone()
        connection, guard = held
        async with guard:
            try:
                return await (await connection.execute(statement, params)).fetchone()
            except psycopg.OperationalError as err:
                raise PersistenceError(
                    f"Lost the connection holding run {run_id!r}'s lock in {self!r} ({err}); another driver "
                    f"may take the run over, so this one stops. Resume the run to go on."
                ) from None

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

    async def _select(self, query: RunQuery) -> Sequence[RunInfo]:
        """The runs `query` asks for, filtered and paged in SQL."""
        where, params = where_sql(query, "%s")
        pool = await self._connection_pool()
        async with pool.connection() as connection:
            if query.cursor is not None:
                at = await (
                    await connection.execute("SELECT started_at FROM railyard_runs WHERE run_id = %s", (query.cursor,))
                ).fetchone()
                if at is None:
                    raise ValueError(unknown_cursor(query.cursor, repr(self)))
                where += " AND (started_at, run_id) > (%s, %s)"
                params += [at[0], query.cursor]
            limit = f" LIMIT {query.limit}" if query.limit is not None else ""
            cursor = await connection.execute(
                f"SELECT {_INFO_COLUMNS} FROM railyard_runs WHERE {where} ORDER BY started_at, run_id{limit}",
                params,
            )
            rows = await cursor.fetchall()
        return [_info(row, query.now) for row in rows]

    async def _write_lease(self, run_id: str, lease: Lease) -> str | None:
        row = await self._write(
            run_id,
            "UPDATE railyard_runs SET owner = %s, lease_expires = %s WHERE run_id = %s RETURNING cancel_requested",
            (lease.owner, lease.expires, run_id),
        )
        return None if row is None else row[0]

    async def _ask_cancel(self, run_id: str, reason: str) -> None:
        pool = await self._connection_pool()
        async with pool.connection() as connection:
            cursor = await connection.execute(
                "UPDATE railyard_runs SET cancel_requested = %s "
                "WHERE run_id = %s AND status NOT IN ('ended', 'cancelled')",
                (reason, run_id),
            )
            if cursor.rowcount == 0:  # no such run, or it finished meanwhile: `cancel` says which
                found = await connection.execute("SELECT 1 FROM railyard_runs WHERE run_id = %s", (run_id,))
                if await found.fetchone() is None:
                    raise RunNotFound(run_id, repr(self))

    async def _remove(self, run_id: str) -> None:
        pool = await self._connection_pool()
        async with pool.connection() as connection, connection.transaction():
            await connection.execute("DELETE FROM railyard_records WHERE run_id = %s", (run_id,))
            cursor = await connection.execute("DELETE FROM railyard_runs WHERE run_id = %s", (run_id,))
            if cursor.rowcount == 0:
                raise RunNotFound(run_id, repr(self))

    # -- locks and claims -----------------------------------------------------------------

    async def _lock_session(self) -> tuple[AsyncConnectionPool[Any], psycopg.AsyncConnection[Any]]:
        """A session of the lock pool, holding no lock, and the pool to give it back to."""
        await self._connection_pool()  # the schema is checked before any lock is taken
        pool = self._lock_pool
        assert pool is not None
        try:
            connection: psycopg.AsyncConnection[Any] = await pool.getconn()
        except psycopg.OperationalError as err:
            if len(self._held) >= self.max_locks:
                raise PersistenceError(
                    f"{self!r} holds the locks of {len(self._held)} runs, its max_locks, and none was let go of "
                    f"within {pool.timeout:g} s. Drive fewer runs at once, or make the store with a larger max_locks."
                ) from None
            raise PersistenceError(f"Cannot connect to {self!r}: {err}") from None
        return pool, connection

    @staticmethod
    async def _give_back(
        pool: AsyncConnectionPool[Any], connection: psycopg.AsyncConnection[Any], *, locked: bool = True
    ) -> None:
        """Return a lock session to its pool with its locks released, or end it (which releases them)."""
        if locked and not connection.closed:
            try:
                await connection.execute("SELECT pg_advisory_unlock_all()")
            except Exception:  # in doubt (a broken or busy session): end it
                await connection.close()
        await pool.putconn(connection)  # a closed session is dropped; so is any, once the pool is closed

    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's advisory lock on a session of its own."""
        pool, connection = await self._lock_session()
        try:
            cursor = await connection.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, %s))", (run_id, _LOCK_SALT)
            )
            row = await cursor.fetchone()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._give_back(pool, connection)
            raise
        if row is None or not row[0]:
            await self._give_back(pool, connection, locked=False)
            return None
        return self._hold(run_id, pool, connection)

    def _hold(self, run_id: str, pool: AsyncConnectionPool[Any], connection: psycopg.AsyncConnection[Any]) -> Release:
        self._held[run_id] = (connection, anyio.Lock())

        async def release() -> None:
            held = self._held.get(run_id)
            if held is not None and held[0] is connection:
                del self._held[run_id]
            await self._give_back(pool, connection)

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
        One statement on a pooled session: polling an empty store opens no connection.
        """
        pool, connection = await self._lock_session()
        passed = set(exclude) | set(self._claimed) | set(self._held)
        now = time()
        try:
            # Oldest first, skipping rows other claimers are looking at; a row's lock keeps its
            # status from changing between reading it and taking the run's advisory lock. The
            # CTE is materialized so the volatile lock call is not pushed down into the scan:
            # it runs on the rows as they come, and stops at the first run it gets.
            cursor = await connection.execute(
                "WITH ready AS MATERIALIZED ("
                "SELECT run_id FROM railyard_runs WHERE "
                f"(({REPORTED_STATUS_SQL.format(now='%s')}) = ANY(%s) OR (status = 'suspended' AND wake_at <= %s)) "
                "AND NOT (run_id = ANY(%s)) "
                "AND (%s OR graph = ANY(%s) OR (%s AND graph IS NULL)) "
                "ORDER BY updated_at FOR UPDATE SKIP LOCKED"
                ") SELECT run_id FROM ready WHERE pg_try_advisory_lock(hashtextextended(run_id, %s)) LIMIT 1",
                (
                    now,
                    now,
                    [status.value for status in statuses],
                    now,
                    list(passed),
                    graphs is None,
                    [name for name in graphs or () if name is not None],
                    graphs is not None and None in graphs,
                    _LOCK_SALT,
                ),
            )
            row = await cursor.fetchone()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._give_back(pool, connection)
            raise
        if row is None:
            await self._give_back(pool, connection, locked=False)
            return None
        run_id = str(row[0])
        self._claimed[run_id] = await self._leased(run_id, self._hold(run_id, pool, connection))
        return run_id

    async def aclose(self) -> None:
        """Release held locks and close the pools."""
        await self.release_claims()
        for connection, _ in list(self._held.values()):
            await connection.close()  # ending the session releases its locks
        self._held.clear()
        pools = (self._pool, self._lock_pool)
        self._pool = self._lock_pool = None
        for pool in pools:
            if pool is not None:
                await pool.close()


_INFO_COLUMNS = (
    "run_id, status, started_at, updated_at, steps, last_node, graph, note, wake_at, owner, lease_expires, "
    "cancel_requested"
)
"""The columns `_info` reads, in its order."""


def _info(row: Sequence[Any], now: float) -> RunInfo:
    """A `RunInfo` from a `railyard_runs` row (its `_INFO_COLUMNS`)."""
    run_id, state, started, updated, steps, last_node, graph, note, wake_at, owner, expires, asked = row
    stored = RunStatus(state)
    return RunInfo(
        run_id,
        reported_status(stored, owner, expires, now),
        datetime.fromtimestamp(started, UTC),
        steps,
        last_node,
        graph,
        updated_at=datetime.fromtimestamp(updated, UTC),
        owner=owner,
        lease_expires=datetime.fromtimestamp(expires, UTC) if expires is not None and owner is not None else None,
        cancel_requested=asked if stored not in (RunStatus.ENDED, RunStatus.CANCELLED) else None,
        **info_fields(stored, note, wake_at),  # type: ignore[arg-type]  # the fields' own types
    )


def _keepalives(conninfo: str) -> dict[str, Any]:
    """The TCP keepalive parameters for libpq: railyard's defaults, unless `conninfo` sets them."""
    try:
        given = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return {}  # connecting says what is wrong with the conninfo
    return {name: str(given.get(name, default)) for name, default in _KEEPALIVES.items()}


def _server_keepalives(keepalives: dict[str, Any]) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]] | None:
    """A pool's `configure`: set the server's keepalives of each new session to the client's.

    The server ends a partitioned client's session, and so frees the runs it holds, only
    when its own socket gives up; libpq's keepalives alone only tell the client.
    """
    if keepalives.get("keepalives", "0") == "0":
        return None
    settings = (keepalives["keepalives_idle"], keepalives["keepalives_interval"], keepalives["keepalives_count"])

    async def configure(connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.execute(
            "SELECT set_config('tcp_keepalives_idle', %s, false), set_config('tcp_keepalives_interval', %s, false), "
            "set_config('tcp_keepalives_count', %s, false)",
            settings,
        )

    return configure


async def _check_alive(connection: psycopg.AsyncConnection[Any]) -> None:
    """Refuse a pooled session the server has ended, without a round trip.

    The first read may only take in the server's goodbye; the second sees the socket closed.
    """
    for _ in range(2):
        connection.pgconn.consume_input()  # raises OperationalError once the socket is closed
