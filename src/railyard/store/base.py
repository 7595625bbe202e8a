"""Code the backends share: the driver lock and its lease, claiming a run, listing, deleting and pruning runs."""

from __future__ import annotations

import logging
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import time

import anyio

from railyard.exceptions import RunLocked
from railyard.store import RunStatus, StoredRecord
from railyard.store.summary import Lease, RunDetail, RunInfo

__all__ = (
    "DEFAULT_LEASE",
    "FINISHED",
    "READY",
    "RECORD_COLUMNS",
    "REPORTED_STATUS_SQL",
    "RUN_COLUMNS",
    "LockingStore",
    "Release",
    "RunQuery",
    "describe_run",
    "unknown_cursor",
    "where_sql",
)

logger = logging.getLogger("railyard.store")

Release = Callable[[], Awaitable[None]]
"""Releases a run's lock."""

READY: frozenset[RunStatus] = frozenset({RunStatus.CREATED, RunStatus.WAITING, RunStatus.RUNNING, RunStatus.STALLED})
"""Statuses of runs a worker may pick up: not started, between steps, or cut off mid-step
(a run whose driver is alive holds its lock, so claiming skips it). A suspended run whose
timer is due is picked up too."""

FINISHED: frozenset[RunStatus] = frozenset({RunStatus.ENDED, RunStatus.CANCELLED})
"""Statuses of runs that never go on: what `prune` deletes by default."""

RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "status",
    "started_at",
    "updated_at",
    "steps",
    "last_node",
    "next_seq",
    "graph",
    "note",
    "wake_at",
    "owner",
    "lease_expires",
    "cancel_requested",
)
"""The columns of the SQL backends' `railyard_runs` table, in order (schema version 3)."""
RECORD_COLUMNS: tuple[str, ...] = ("run_id", "seq", "kind", "status", "node_id", "finishes_step", "ts", "body")
"""The columns of the SQL backends' `railyard_records` table, in order."""

DEFAULT_LEASE = 30.0
"""Seconds a driver's lease on a run lasts; it renews it every third of that while it drives."""


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs `runs()` lists: checked arguments, as the backends filter by them."""

    statuses: frozenset[RunStatus] | None
    """Only runs reported with one of these statuses (`None`: any)."""
    graphs: frozenset[str] | None
    """Only runs of these graphs (`None`: any)."""
    since: float | None
    """Only runs started at or after this POSIX timestamp."""
    until: float | None
    """Only runs started before this POSIX timestamp."""
    limit: int | None
    """At most this many runs (`None`: all)."""
    cursor: str | None
    """Only runs after this one, in the listing's order (started, then run id)."""
    now: float
    """The time leases are judged at."""

    @classmethod
    def of(  # noqa: PLR0917 - runs()'s keyword arguments, in their order
        cls,
        status: RunStatus | Collection[RunStatus] | None,
        graph: str | Collection[str] | None,
        since: datetime | float | None,
        until: datetime | float | None,
        limit: int | None,
        cursor: str | None,
    ) -> RunQuery:
        """Check `runs()`'s arguments.

        Raises:
            ValueError: a status is not a `RunStatus`, `limit` is not positive, or `since` is after `until`.
        """
        statuses: frozenset[RunStatus] | None = None
        if status is not None:
            given = (status,) if isinstance(status, (RunStatus, str)) else tuple(status)
            try:
                statuses = frozenset(RunStatus(value) for value in given)
            except ValueError:
                known = ", ".join(s.value for s in RunStatus)
                raise ValueError(f"runs(status={status!r}): a status is one of {known}.") from None
        graphs = None if graph is None else frozenset((graph,) if isinstance(graph, str) else graph)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"runs(limit={limit!r}): the limit is a whole number of runs, 1 or more.")
        start, end = _timestamp(since, "since"), _timestamp(until, "until")
        if start is not None and end is not None and start > end:
            raise ValueError(f"runs(since={since!r}, until={until!r}): `since` is after `until`, so no run is in it.")
        return cls(statuses, graphs, start, end, limit, cursor, time())

    def wants(self, info: RunInfo) -> bool:
        """Whether `info` passes the filters (all but `cursor` and `limit`)."""
        if self.statuses is not None and info.status not in self.statuses:
            return False
        if self.graphs is not None and info.graph not in self.graphs:
            return False
        started = info.started_at.timestamp() if info.started_at is not None else 0.0
        if self.since is not None and started < self.since:
            return False
        return self.until is None or started < self.until

    def page(self, infos: Sequence[RunInfo], where: str) -> list[RunInfo]:
        """`infos` (every run, oldest first) filtered, after the cursor, cut to the limit.

        Raises:
            ValueError: the cursor names no run of the store.
        """
        ordered = sorted(infos, key=_order)
        if self.cursor is not None:
            at = next((i for i, info in enumerate(ordered) if info.run_id == self.cursor), None)
            if at is None:
                raise ValueError(_unknown_cursor(self.cursor, where))
            ordered = ordered[at + 1 :]
        chosen = [info for info in ordered if self.wants(info)]
        return chosen[: self.limit] if self.limit is not None else chosen


def _order(info: RunInfo) -> tuple[float, str]:
    return (info.started_at.timestamp() if info.started_at is not None else 0.0, info.run_id)


def unknown_cursor(cursor: str, where: str) -> str:
    """The message of a `runs(cursor=...)` naming no run of the store."""
    return _unknown_cursor(cursor, where)


REPORTED_STATUS_SQL = (
    "CASE WHEN status = 'running' AND (owner IS NULL OR lease_expires < {now}) THEN 'stalled' "
    "WHEN status = 'waiting' AND owner IS NOT NULL AND lease_expires < {now} THEN 'stalled' ELSE status END"
)
"""`reported_status` in SQL, over a `railyard_runs` row (`{now}`: the placeholder of the time leases are judged at)."""


def where_sql(query: RunQuery, mark: str) -> tuple[str, list[object]]:
    """The SQL condition on `railyard_runs` rows for `query`'s filters (all but the cursor), and its parameters.

    `mark` is the driver's placeholder (`?` for sqlite3, `%s` for psycopg).
    """
    clauses: list[str] = []
    params: list[object] = []
    if query.statuses is not None:
        marks = ", ".join(mark for _ in query.statuses)
        clauses.append(f"({REPORTED_STATUS_SQL.format(now=mark)}) IN ({marks})")
        params += [query.now, query.now, *sorted(s.value for s in query.statuses)]
    if query.graphs is not None:
        if query.graphs:
            clauses.append(f"graph IN ({', '.join(mark for _ in query.graphs)})")
            params += sorted(query.graphs)
        else:
            clauses.append("0 = 1")
    if query.since is not None:
        clauses.append(f"started_at >= {mark}")
        params.append(query.since)
    if query.until is not None:
        clauses.append(f"started_at < {mark}")
        params.append(query.until)
    return (" AND ".join(clauses) or "1 = 1"), params


def _unknown_cursor(cursor: str, where: str) -> str:
    return (
        f"runs(cursor={cursor!r}): {where} has no run {cursor!r}. The cursor is the run id of the last run of "
        f"the page before (it may have been deleted since: start again without a cursor)."
    )


def _timestamp(value: datetime | float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"runs({name}={value!r}): give an aware datetime (for instance datetime.now(UTC)); "
                f"a naive one could be in any timezone."
            )
        # a start is listed as the datetime nearest its timestamp, to the microsecond: compare as listed
        return value.timestamp() - 5e-7
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"runs({name}={value!r}): give a datetime or a POSIX timestamp.")
    return float(value)


_CHILD = ".child-"
"""What a child run's id adds to its parent's (`railyard.children.child_run_id`)."""


def _seconds(value: timedelta | float, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"{name}{value!r}): give a timedelta or a number of seconds, 0 or more.")
    return float(seconds)


class LockingStore(ABC):
    """Base of the backends: locks with leases, `claim`, `runs` filters, `delete` and `prune`.

    A backend implements `_try_lock(run_id)`, which takes the run's lock without waiting
    and returns the function that releases it (or `None` when another holder has it);
    `_write_lease`, which keeps who holds a run beside its log; `_ask_cancel`; `_remove`;
    and `_select`, which lists runs.

    The lock is what keeps two drivers apart (the operating system or the database drops
    it when its holder dies). The lease says who holds the run and until when: a driver
    renews it while it drives, so a run whose lease ran out was cut off (`stalled`).
    """

    def __init__(self, *, lease: float = DEFAULT_LEASE) -> None:
        if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not lease > 0:
            raise ValueError(f"lease={lease!r}: a lease lasts a number of seconds, more than 0.")
        self.lease = float(lease)
        """Seconds a driver's lease on a run lasts (renewed every third of that while it drives)."""
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        """Who this store's drivers are, as their leases name them (`host:pid`)."""
        self._claimed: dict[str, Release] = {}
        self._holding: set[str] = set()
        """The runs this store holds the lock of (its leases)."""
        self._cancels: dict[str, str] = {}
        """Cancellations asked of runs this store holds, by run id (seen on a write or a renewal)."""
        self._shown: set[str] = set()
        """The runs held whose lease is written (with a record): renewed, and cleared on letting go."""

    # -- what a backend implements ------------------------------------------------------

    @abstractmethod
    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's lock without waiting; return its release, or `None` if it is held."""

    @abstractmethod
    async def _write_lease(self, run_id: str, lease: Lease) -> str | None:
        """Store who holds the run and until when (`Lease(None, None)`: nobody); return a cancellation asked of it.

        A run the store does not have is no error (the lease is written again once it is created).
        """

    @abstractmethod
    async def _ask_cancel(self, run_id: str, reason: str) -> None:
        """Store that the run is asked to cancel, for its driver to see.

        Raises:
            RunNotFound: the store has no such run.
        """

    @abstractmethod
    async def _remove(self, run_id: str) -> None:
        """Delete the run's records, its summary, its lease and any lock artefact (the caller holds its lock).

        Raises:
            RunNotFound: the store has no such run.
        """

    @abstractmethod
    async def _select(self, query: RunQuery) -> Sequence[RunInfo]:
        """The runs `query` asks for, in order (started, then run id)."""

    @abstractmethod
    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """All records of a run, in the order they were appended."""

    # -- listing ------------------------------------------------------------------------

    async def runs(
        self,
        *,
        status: RunStatus | Collection[RunStatus] | None = None,
        graph: str | Collection[str] | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Sequence[RunInfo]:
        """Summaries of the stored runs, oldest first, filtered and paged.

        `status`: one status or several (`RunStatus.STALLED` for runs whose driver died);
        `graph`: a graph name or several; `since`/`until`: runs started in `[since, until)`
        (aware datetimes or POSIX timestamps); `limit`: at most so many; `cursor`: the run id
        of the last run of the previous page, for the next one.

        Raises:
            ValueError: an argument is out of range, or the cursor names no run.
        """
        return await self._select(RunQuery.of(status, graph, since, until, limit, cursor))

    async def run(self, run_id: str) -> RunDetail:
        """One run in full: its summary, when it last changed, its error (with the traceback), what it waits for.

        Raises:
            RunNotFound: the store has no such run.
            CorruptRunError: a stored record is damaged.
        """
        records = await self.read(run_id)
        listed = await self._select(RunQuery(None, None, None, None, None, None, time()))
        info = next((i for i in listed if i.run_id == run_id), None)
        return describe_run(run_id, records, info)

    # -- holding a run ------------------------------------------------------------------

    @asynccontextmanager
    async def lock(self, run_id: str) -> AsyncIterator[None]:
        """Hold the run exclusively while driving it (taking over a claim this store made).

        Raises:
            RunLocked: another driver holds the run.
        """
        release = self._claimed.pop(run_id, None) or await self._acquire(run_id)
        if release is None:
            raise RunLocked(run_id, repr(self))
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled driver still lets go of its run
                await release()

    async def _acquire(self, run_id: str) -> Release | None:
        """Take the run's lock and its lease; `None` if another holder has it."""
        release = await self._try_lock(run_id)
        return None if release is None else await self._leased(run_id, release)

    async def _leased(self, run_id: str, release: Release) -> Release:
        """Hold a run whose lock this store just took; its lease is written with the run's next record.

        Taking a run writes nothing: a driver that is refused (another graph's run, a run
        that ended) leaves every stored byte as it was. The release clears the lease, if written.
        """
        self._holding.add(run_id)

        async def let_go() -> None:
            self._holding.discard(run_id)
            self._cancels.pop(run_id, None)
            try:
                if run_id in self._shown:
                    self._shown.discard(run_id)
                    await self._write_lease(run_id, Lease(None, None))
            except Exception as error:  # the lease runs out by itself: letting go of the lock matters
                logger.warning("could not clear the lease on run %s in %r: %s", run_id, self, error)
            finally:
                await release()

        return let_go

    def _lease_of(self, run_id: str) -> Lease | None:
        """The lease a write to a run this store holds carries (`None`: not held); it is then shown."""
        if run_id not in self._holding:
            return None
        self._shown.add(run_id)
        return Lease(self.owner, time() + self.lease)

    def _noticed(self, run_id: str, reason: str | None) -> None:
        """A write to a run this store holds found a cancellation asked of it."""
        if reason is not None and run_id in self._holding:
            self._cancels[run_id] = reason

    async def heartbeat(self, run_id: str) -> str | None:
        """Renew this store's lease on a run it holds; return the reason of a cancellation asked of it, if any.

        A driver calls this every third of `lease` while it drives (`railyard` does so itself).
        """
        if run_id in self._holding and run_id in self._shown:
            self._noticed(run_id, await self._write_lease(run_id, Lease(self.owner, time() + self.lease)))
        return self._cancels.get(run_id)

    def cancel_requested(self, run_id: str) -> str | None:
        """The reason of a cancellation asked of a run this store holds, as last seen (no I/O)."""
        return self._cancels.get(run_id)

    async def request_cancel(self, run_id: str, reason: str) -> None:
        """Ask the driver of a run to cancel it; it stops at its next step boundary (see `railyard.cancel`).

        Raises:
            RunNotFound: the store has no such run.
        """
        await self._ask_cancel(run_id, reason)

    # -- claiming -----------------------------------------------------------------------

    async def claim(
        self,
        *,
        statuses: Collection[RunStatus] = READY,
        exclude: Collection[str] = (),
        graphs: Collection[str | None] | None = None,
    ) -> str | None:
        """Lock a run that is ready to go on and return its id (`None` if there is none).

        Runs in `exclude` are passed over, and with `graphs`, runs of other graphs; a
        suspended run whose timer is due is ready. The claim is taken over by the next
        `lock(run_id)` on this store (for instance by
        `graph.resume(DurablePersistence(store, run_id))`); `release_claim` gives it up.
        """
        wanted = frozenset(RunStatus(s) for s in statuses)
        for info in await self.runs():
            if not _ready(info, wanted) or info.run_id in self._claimed or info.run_id in exclude:
                continue
            if graphs is not None and info.graph not in graphs:
                continue
            release = await self._try_lock(info.run_id)
            if release is None:
                continue
            try:
                current = [i for i in await self.runs() if i.run_id == info.run_id]
                ready = bool(current) and _ready(current[0], wanted)  # still ready, now that it is ours
                if ready:
                    self._claimed[info.run_id] = await self._leased(info.run_id, release)
                    return info.run_id
            except BaseException:
                with anyio.CancelScope(shield=True):
                    if info.run_id not in self._claimed:
                        await release()
                raise
            await release()
        return None

    async def release_claims(self) -> None:
        """Give up every claim this store holds (when it closes)."""
        for run_id in list(self._claimed):
            await self.release_claim(run_id)

    async def release_claim(self, run_id: str) -> None:
        """Give up a claim without driving the run."""
        release = self._claimed.pop(run_id, None)
        if release is not None:
            await release()

    # -- deleting -----------------------------------------------------------------------

    async def delete(self, run_id: str) -> None:
        """Delete a run: its records, its summary, its lease and its lock artefacts, and its child runs.

        Raises:
            RunNotFound: the store has no such run.
            RunLocked: a driver holds the run or one of its child runs (nothing of that run is deleted).
        """
        release = self._claimed.pop(run_id, None) or await self._try_lock(run_id)
        if release is None:
            raise RunLocked(run_id, repr(self), doing="delete it")
        try:
            children = [i.run_id for i in await self.runs() if i.run_id.startswith(f"{run_id}{_CHILD}")]
            for child in sorted(children, key=len, reverse=True):  # the deepest first
                await self._delete_child(child)
            await self._remove(run_id)
        finally:
            with anyio.CancelScope(shield=True):
                await release()

    async def _delete_child(self, run_id: str) -> None:
        release = self._claimed.pop(run_id, None) or await self._try_lock(run_id)
        if release is None:
            raise RunLocked(run_id, repr(self), doing="delete it with its parent")
        try:
            await self._remove(run_id)
        except LookupError:
            pass  # deleted meanwhile
        finally:
            with anyio.CancelScope(shield=True):
                await release()

    async def prune(
        self, *, older_than: timedelta | float, status: RunStatus | Collection[RunStatus] = FINISHED
    ) -> list[str]:
        """Delete the runs with `status` (by default ended or cancelled) unchanged for `older_than`.

        Runs a driver holds are passed over. `older_than` is a timedelta or seconds.

        Returns:
            The ids of the runs deleted.

        Raises:
            ValueError: `older_than` is negative, or a status is not a `RunStatus`.
        """
        cutoff = time() - _seconds(older_than, "prune(older_than=")
        deleted: list[str] = []
        everything = {info.run_id: info for info in await self.runs()}
        for info in await self.runs(status=status):
            if info.updated_at is None or info.updated_at.timestamp() >= cutoff or info.run_id in deleted:
                continue
            parent = everything.get(info.run_id.rpartition(_CHILD)[0]) if _CHILD in info.run_id else None
            if parent is not None and parent.status not in FINISHED:
                continue  # a child its unfinished parent may still read (its output), kept with it
            try:
                await self.delete(info.run_id)
            except RunLocked:
                continue  # driven again meanwhile: not finished after all, or being looked at
            except LookupError:
                continue  # deleted meanwhile by another pruner
            deleted.append(info.run_id)
            deleted += [run_id for run_id in everything if run_id.startswith(f"{info.run_id}{_CHILD}")]
        return deleted


def _ready(info: RunInfo, statuses: frozenset[RunStatus]) -> bool:
    """Whether a worker may take `info` up: a ready status, or suspended with its timer due."""
    if info.status in statuses:
        return True
    return info.status is RunStatus.SUSPENDED and info.wake_at is not None and info.wake_at <= datetime.now(UTC)


def describe_run(run_id: str, records: Sequence[StoredRecord], info: RunInfo | None = None) -> RunDetail:
    """A run's `RunDetail`, read from its stored records (their JSON bodies, without the graph's types).

    `info` is the run's summary as `runs()` lists it (with its lease), if known.
    """
    import json

    from railyard.store import info_from_stored
    from railyard.store.records import ErrorInfo

    if info is None:
        info = info_from_stored(run_id, records)
    error: ErrorInfo | None = None
    attempts = 0
    waits: dict[str, None] = {}
    cancel_reason: str | None = None
    for record in records:
        if record.kind == "step_failed":
            body = json.loads(record.body)
            if body.get("retry_at") is not None:
                attempts += 1
            else:
                error = ErrorInfo(**body["error"])
        elif record.kind in ("step_finished", "run_ended"):
            error = None  # resumed after the failure, and went on
        elif record.kind == "step_suspended":
            waits[json.loads(record.body)["key"]] = None
        elif record.kind == "signal_received":
            waits.pop(json.loads(record.body)["key"], None)
        elif record.kind == "run_cancelled":
            cancel_reason = json.loads(record.body)["reason"]
    return RunDetail(
        info=info,
        updated_at=datetime.fromtimestamp(records[-1].ts, UTC) if records else None,
        error=error if info.status is RunStatus.FAILED else None,
        attempts=attempts,
        waiting_for=tuple(waits) if info.status is RunStatus.SUSPENDED else (),
        cancel_reason=cancel_reason,
    )
