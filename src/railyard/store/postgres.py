"""The PostgreSQL backend: many runs, many workers, many machines (`pip install 'railyard-graph[postgres]'`).

psycopg 3, async, with pooled sessions. Records are rows of JSON, readable in `psql`
(`SELECT seq, kind, body->>'state' FROM railyard_records WHERE run_id = '...'`). A batch
of records is one statement and one commit (`_postgres_sql.APPEND`), so one round trip.

Exactly one driver advances a run, and one that lost it cannot write. Taking a run writes
the taker's token in the run's row (its lease, renewed while it drives), and every write
of a driver checks it in the same statement (fencing). A taker may take a run whose lease
ran out (its driver was cut off from the database, or hangs), or whose driver's session
is gone: each store keeps one session holding a session-level advisory lock per run it
holds, which PostgreSQL drops when that session ends, so a crashed driver's runs are free
at once. Workers find runs ready to go on with `SELECT ... FOR UPDATE SKIP LOCKED` (see
`claim`), so many workers claim runs at once without waiting on each other, and hear of
runs becoming ready by LISTEN/NOTIFY (`wait_ready`). However many runs a store drives, it
uses its pool, one lock session and, for a worker, one listening session.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Collection, Sequence
from time import time
from typing import Any

import anyio

from railyard.exceptions import CorruptRunError, PersistenceError, RunExists, RunNotFound
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.store._postgres_sql import (
    APPEND,
    CHANNEL,
    CLAIM,
    CREATE,
    INFO_COLUMNS,
    LOCK_SALT,
    RELEASE,
    RENEW,
    TAKE,
    batch,
    check_alive,
    check_schema,
    connection_settings,
    info,
    session_setup,
)
from railyard.store.base import (
    DEFAULT_LEASE,
    READY,
    LeaseLost,
    LockingStore,
    Release,
    RunQuery,
    unknown_cursor,
    where_sql,
)
from railyard.store.summary import Lease

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
    from psycopg_pool import AsyncConnectionPool
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("The PostgreSQL store needs psycopg: pip install 'railyard-graph[postgres]'") from err

__all__ = ("SCHEMA_VERSION", "PostgresStore")

logger = logging.getLogger("railyard.store")

SCHEMA_VERSION = 3
"""The version of the table layout this railyard writes and reads.

Version 2 added `railyard_runs.graph`, the name of each run's graph. Version 3 added
each run's note (its error, waits or cancel reason), timer, lease (`owner`,
`lease_expires`) and `cancel_requested`. An older database is upgraded in place (one
transaction adding the columns) when first opened.
"""

_CANDIDATES = 16
"""Ready runs one claim looks at (and locks the rows of, for the moment of the claim)."""


def _redact(conninfo: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", conninfo)


class PostgresStore(LockingStore):
    """A `RunStore` in a PostgreSQL database.

    A pool of up to `max_size` sessions serves reads and writes; beside it, one session
    holds the advisory locks of every run this store drives or has claimed (at most
    `max_locks` at once), and a worker waiting for runs listens on one more. So a worker's
    connections are bounded by `max_size + 2` however many runs it drives.

    Each run this store holds carries its lease (`lease` seconds, renewed every third of
    that while it is driven); a write by a driver whose run was taken over fails with
    `LeaseLost` and writes nothing.

    Sessions use TCP keepalives, so a partitioned peer is noticed in about a minute at
    both ends and the server frees its runs: by default `keepalives_idle=30`,
    `keepalives_interval=10`, `keepalives_count=3` and `tcp_user_timeout=60000` (ms), each
    overridable in `conninfo` (`keepalives=0` turns keepalives off). A statement runs at
    most `statement_timeout` seconds (`None`: no limit); the server ends a session idle
    inside a transaction for a minute.
    """

    fenced = True

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        max_locks: int = 1000,
        lease: float = DEFAULT_LEASE,
        statement_timeout: float | None = 60.0,
    ) -> None:
        super().__init__(lease=lease)
        self.conninfo = conninfo
        self.min_size = min_size
        self.max_size = max_size
        self.max_locks = max_locks
        self.statement_timeout = statement_timeout
        self._pool: AsyncConnectionPool[Any] | None = None
        self._opening = anyio.Lock()
        self._settings: dict[str, Any] = {}
        self._locker: psycopg.AsyncConnection[Any] | None = None
        """The session holding this store's advisory locks (made again if the server ends it)."""
        self._generation = 0
        """How many lock sessions this store has opened: a lock is held on the session of its generation."""
        self._advisory: dict[str, int] = {}
        """The runs whose advisory lock this store took, and on which lock session."""
        self._taking = anyio.Lock()
        self._reconnecting = anyio.Lock()
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._listening = anyio.Lock()
        self._own: dict[str, AsyncConnectionPool[Any]] = {}
        """The pools of one of the lock session and the listening session, by role."""

    def __repr__(self) -> str:
        return f"PostgresStore({_redact(self.conninfo)!r})"

    # -- connections and schema -----------------------------------------------------------

    def _session_kwargs(self, role: str) -> dict[str, Any]:
        """The libpq parameters of this store's sessions; `role` names them in `pg_stat_activity`."""
        kwargs: dict[str, Any] = {"autocommit": True, **self._settings}
        if "application_name" not in self._conninfo_keys():
            kwargs["application_name"] = f"{role} {self.owner}"[:63]
        return kwargs

    def _conninfo_keys(self) -> set[str]:
        try:
            return set(conninfo_to_dict(self.conninfo))
        except psycopg.ProgrammingError:
            return set()

    async def _connection_pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._settings = connection_settings(self.conninfo)
                try:  # fail at once, with the server's own words, when it cannot be reached
                    probe = await psycopg.AsyncConnection.connect(
                        self.conninfo, connect_timeout=10, **self._session_kwargs("railyard")
                    )
                except psycopg.OperationalError as err:
                    raise PersistenceError(f"Cannot connect to {self!r}: {str(err).strip()}") from None
                try:
                    await check_schema(probe, repr(self), SCHEMA_VERSION)
                finally:
                    await probe.close()
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self.conninfo,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    kwargs=self._session_kwargs("railyard"),
                    configure=session_setup(self._settings, self.statement_timeout),
                    check=check_alive,
                    open=False,
                    name="railyard",
                )
                try:
                    await pool.open(wait=True, timeout=10.0)
                except psycopg.OperationalError as err:
                    await pool.close()
                    raise PersistenceError(f"Cannot connect to {self!r}: {err}") from None
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def _session(self, role: str) -> psycopg.AsyncConnection[Any]:
        """A session of this store's own, set up like the pool's: the lock session, or the listening one.

        Each comes from a pool of one of its own (so a session the server ended is replaced, and
        one left open when the store is not closed goes with the program, as pooled ones do).
        """
        await self._connection_pool()  # the schema is checked before any lock is taken
        pool = self._own.get(role)
        if pool is None:
            pool = AsyncConnectionPool(
                self.conninfo,
                min_size=0,
                max_size=1,
                kwargs=self._session_kwargs(role),
                configure=session_setup(self._settings, None),
                open=False,
                name=role,
                timeout=10.0,
            )
            await pool.open()
            self._own[role] = pool
        try:
            connection: psycopg.AsyncConnection[Any] = await pool.getconn()
        except psycopg.OperationalError as err:
            raise PersistenceError(f"Cannot connect to {self!r}: {str(err).strip()}") from None
        return connection

    async def _drop(self, role: str, connection: psycopg.AsyncConnection[Any]) -> None:
        """End a session of this store's own (its advisory locks go with it) and free its place."""
        await connection.close()
        pool = self._own.pop(role, None)  # the next session of this role comes from a new pool of one
        if pool is not None:
            await pool.close()  # (handing the pool back a closed session would log a warning on stderr)

    # -- the RunStore protocol ------------------------------------------------------------

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create the run with its first records: one statement, one commit.

        A run created by no driver is announced to listening workers.
        """
        lease = self._lease_of(run_id)
        params = {
            **batch(records),
            "run_id": run_id,
            "status": records[-1].status.value if records else RunStatus.CREATED.value,
            "started_at": records[0].ts if records else 0.0,
            "updated_at": records[-1].ts if records else 0.0,
            "graph": records[0].graph if records else None,
            "owner": lease.owner if lease is not None else None,
            "lease_expires": lease.expires if lease is not None else None,
        }
        if await self._write(CREATE, params, run_id) is None:
            raise RunExists(run_id, repr(self))

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records: one statement, one commit, so all or none.

        A driver's append renews its lease, and writes only while the run's row still names
        it (in the same statement). A cancelled append wrote nothing or everything.

        Raises:
            RunNotFound: the store has no such run.
            LeaseLost: this store's driver held the run, and another took it over (nothing is written).
        """
        fence = self._fence(run_id)
        lease = self._lease_of(run_id)  # written by the run's driver: its lease is renewed with it
        params = {
            **batch(records),
            "run_id": run_id,
            "fence": fence,
            "owner": lease.owner if lease is not None else None,
            "lease_expires": lease.expires if lease is not None else None,
        }
        moved, asked, exists, holder = await self._write(APPEND, params, run_id)
        if not exists:
            raise RunNotFound(run_id, repr(self))
        if not moved:
            raise self._taken_over(run_id, holder)
        self._noticed(run_id, asked)

    async def _write(self, statement: str, params: dict[str, Any], run_id: str | None = None) -> Any:
        """Run one writing statement; return the row it returns (`None`: none).

        A write to a run this store holds goes on the lock session holding the run's lock,
        so a driver that lost that session (and so its lock) cannot write another step.
        """
        if run_id is not None and run_id in self._holding:
            return await self._held_write(run_id, statement, params)
        pool = await self._connection_pool()
        try:
            async with pool.connection() as connection:
                return await (await connection.execute(statement, params)).fetchone()
        except psycopg.OperationalError as err:
            raise PersistenceError(
                f"Lost the connection to {self!r} while writing ({str(err).strip()}); the write may or may not "
                f"have been stored. Try again."
            ) from None

    async def _held_write(self, run_id: str, statement: str, params: dict[str, Any]) -> Any:
        connection = self._locker
        generation = self._advisory.get(run_id)
        if generation is not None and (
            generation != self._generation or connection is None or connection.closed or connection.broken
        ):
            raise self._cut_off(run_id, "the session was ended")
        if connection is None or connection.closed or connection.broken:  # held by its lease alone
            connection = await self._lock_session()
        with anyio.CancelScope(shield=True):  # one session serves every run held: no statement is cut off
            try:
                return await (await connection.execute(statement, params)).fetchone()
            except psycopg.OperationalError as err:
                await connection.close()
                raise self._cut_off(run_id, str(err).strip()) from None

    def _cut_off(self, run_id: str, why: str) -> LeaseLost:
        """The session holding a run's lock is gone: its driver stops (another may take the run at once)."""
        lost = self._lost.get(run_id)
        if lost is not None:
            lost.set()
        return LeaseLost(
            run_id,
            repr(self),
            message=(
                f"Lost the connection holding run {run_id!r}'s lock in {self!r} ({why}); another driver may take "
                f"the run over, so this one stops. Resume the run to go on."
            ),
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
                f"SELECT {INFO_COLUMNS} FROM railyard_runs WHERE {where} ORDER BY started_at, run_id{limit}",
                params,
            )
            rows = await cursor.fetchall()
        return [info(row, query.now) for row in rows]

    async def _write_lease(self, run_id: str, lease: Lease) -> str | None:
        row = await self._write(
            "UPDATE railyard_runs SET owner = %(owner)s, lease_expires = %(expires)s WHERE run_id = %(run_id)s "
            "RETURNING cancel_requested",
            {"owner": lease.owner, "expires": lease.expires, "run_id": run_id},
            run_id,
        )
        return None if row is None else row[0]

    async def _renew_fenced(self, run_id: str, token: str, expires: float) -> str | None:
        renewed, asked, exists, holder = await self._write(
            RENEW, {"run_id": run_id, "token": token, "expires": expires}, run_id
        )
        if exists and not renewed:
            raise self._taken_over(run_id, holder)
        if renewed and run_id not in self._advisory:
            await self._relock(run_id)
        return asked if isinstance(asked, str) else None

    async def _clear_fenced(self, run_id: str, token: str) -> None:
        """Nothing here: the release clears the lease with the advisory lock, in one statement."""

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

    async def _lock_session(self) -> psycopg.AsyncConnection[Any]:
        """The session holding this store's advisory locks, made anew if the server ended it."""
        async with self._reconnecting:
            connection = self._locker
            if connection is None or connection.closed or connection.broken:
                if connection is not None:  # its locks went with it: the runs held on it stop (`_held_write`)
                    self._locker = None
                    await self._drop("railyard-locks", connection)
                self._locker = connection = await self._session("railyard-locks")
                self._generation += 1
            return connection

    async def _on_locker(self, statement: str, params: dict[str, Any]) -> Any:
        """Run a statement on the lock session (made anew once if the server ended it); return its row."""
        for attempt in range(2):
            connection = await self._lock_session()
            try:
                return await (await connection.execute(statement, params)).fetchone()
            except psycopg.OperationalError as err:
                await connection.close()
                if attempt == 1:
                    raise PersistenceError(f"Lost the connection to {self!r}: {str(err).strip()}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _take(self, run_id: str) -> tuple[str, Release] | None:
        """Take a run by id: its advisory lock and its lease; `None` if another driver holds it."""
        async with self._taking:
            if run_id in self._holding:
                return None  # this store's drivers share its lock session: it refuses a second holder itself
            self._check_room()
            token, now = self._new_token(), time()
            params = {
                "run_id": run_id,
                "salt": LOCK_SALT,
                "token": token,
                "expires": now + self.lease,
                "now": now,
            }
            with anyio.CancelScope(shield=True):  # taken or not, never half
                locked, taken, exists = await self._on_locker(TAKE, params)
                if taken or (locked and not exists):
                    if locked:
                        self._advisory[run_id] = self._generation
                    return token, self._releaser(run_id, token)
                if locked:
                    await self._on_locker("SELECT pg_advisory_unlock(hashtextextended(%(run_id)s, %(salt)s))", params)
            return None

    def _check_room(self) -> None:
        if len(self._holding) >= self.max_locks:
            raise PersistenceError(
                f"{self!r} holds {len(self._holding)} runs, its max_locks. Drive fewer runs at once, or make the "
                f"store with a larger max_locks."
            )

    def _releaser(self, run_id: str, token: str) -> Release:
        async def release() -> None:
            params = {"run_id": run_id, "token": token, "salt": LOCK_SALT, "locked": False}
            try:
                locker = self._locker
                current = locker is not None and not locker.closed and not locker.broken
                if self._advisory.pop(run_id, None) == self._generation and current:
                    params["locked"] = True
                    await self._on_locker(RELEASE, params)
                else:  # its lock went with an earlier session: only the lease is left to clear
                    await self._write(RELEASE, params)
            except Exception as error:  # the lease runs out by itself, and the lock goes with the session
                params["locked"] = False
                try:
                    await self._write(RELEASE, params)
                except Exception:
                    logger.warning("could not let go of run %s in %r: %s", run_id, self, error)

        return release

    async def _relock(self, run_id: str) -> None:
        """Take the advisory lock of a run held by its lease alone, once no other session holds it.

        A run taken over from a holder cut off (whose session the server has not ended yet)
        is held without it; until this driver has it, claimers would take the run for dead.
        """
        async with self._taking:
            token = self._tokens.get(run_id)
            if token is None or run_id in self._advisory:
                return
            params = {"run_id": run_id, "salt": LOCK_SALT}
            with anyio.CancelScope(shield=True):  # had, or not: never left behind
                row = await self._on_locker(
                    "SELECT pg_try_advisory_lock(hashtextextended(%(run_id)s, %(salt)s))", params
                )
                if row is None or not row[0]:
                    return
                if self._tokens.get(run_id) == token:
                    self._advisory[run_id] = self._generation
                else:  # let go of meanwhile: the lock is not kept
                    await self._on_locker("SELECT pg_advisory_unlock(hashtextextended(%(run_id)s, %(salt)s))", params)

    async def _acquire(self, run_id: str) -> Release | None:
        taken = await self._take(run_id)
        if taken is None:
            return None
        token, release = taken
        return await self._leased(run_id, release, token)

    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run (as `delete` does): its release lets go of the lock and the lease."""
        taken = await self._take(run_id)
        return None if taken is None else taken[1]

    async def claim(
        self,
        *,
        statuses: Collection[RunStatus] = READY,
        exclude: Collection[str] = (),
        graphs: Collection[str | None] | None = None,
    ) -> str | None:
        """Take a run that is ready to go on, skipping rows other workers are looking at.

        Returns the run's id (`None` if no run is ready); drive it with
        `graph.resume(store, run_id)`, which takes the claim over. Runs in `exclude`,
        runs whose driver is alive and, with `graphs`, runs of other graphs are passed over;
        a run whose lease ran out, or whose driver's session is gone, is taken over.
        One statement on this store's lock session: polling opens no connection.
        """
        async with self._taking:
            self._check_room()
            token, now = self._new_token(), time()
            params = {
                "now": now,
                "statuses": [RunStatus(status).value for status in statuses],
                "passed": list(set(exclude) | set(self._claimed) | self._holding),
                "any_graph": graphs is None,
                "graphs": [name for name in graphs or () if name is not None],
                "unnamed": graphs is not None and None in graphs,
                "candidates": _CANDIDATES,
                "salt": LOCK_SALT,
                "token": token,
                "expires": now + self.lease,
            }
            with anyio.CancelScope(shield=True):  # claimed or not, never half
                row = await self._on_locker(CLAIM, params)
                if row is None:
                    return None
                run_id, locked = str(row[0]), bool(row[1])
                if locked:
                    self._advisory[run_id] = self._generation
                self._claimed[run_id] = await self._leased(run_id, self._releaser(run_id, token), token)
        return run_id

    # -- hearing of ready runs --------------------------------------------------------------

    async def wait_ready(self, within: float) -> bool:
        """Wait up to `within` seconds for a run to become ready (LISTEN); say whether one did.

        A run is announced when it is created by no driver, and when a driver lets go of it
        unfinished (it was signalled, or its driver stopped). Runs whose driver died, and
        timers coming due, are not announced: a worker finds them by polling `claim`.
        """
        if self._listening.locked():  # someone is listening already: this one waits as the base does
            return await super().wait_ready(within)
        async with self._listening:
            try:
                listener = self._listener
                if listener is None or listener.closed or listener.broken:
                    if listener is not None:
                        self._listener = None
                        await self._drop("railyard-listen", listener)
                    listener = await self._session("railyard-listen")
                    await listener.execute(f"LISTEN {CHANNEL}")
                    self._listener = listener
                heard = False
                notifies = listener.notifies(timeout=within, stop_after=1)  # (those heard meanwhile come first)
                async with contextlib.aclosing(notifies):  # it holds the session until it is closed
                    async for _ in notifies:
                        heard = True
                return heard
            except (psycopg.OperationalError, PersistenceError) as error:
                logger.warning("could not listen for ready runs in %r (%s); polling instead", self, error)
                await anyio.sleep(within)
                return False
            return False

    async def aclose(self) -> None:
        """Release held locks and close the sessions and the pool."""
        await self.release_claims()
        for role, connection in (("railyard-locks", self._locker), ("railyard-listen", self._listener)):
            if connection is not None:
                await self._drop(role, connection)  # ending the lock session releases its locks
        self._locker = self._listener = None
        self._advisory.clear()
        pools = [self._pool, *self._own.values()]
        self._pool = None
        self._own.clear()
        for pool in pools:
            if pool is not None:
                await pool.close()
