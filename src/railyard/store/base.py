"""Code the backends share: the driver lock and its lease, claiming a run, listing, deleting and pruning runs."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from time import time

import anyio

from railyard.exceptions import PersistenceError, RunLocked
from railyard.store import RunStatus, StoredRecord
from railyard.store._listing import REPORTED_STATUS_SQL, RunQuery, describe_run, unknown_cursor, where_sql
from railyard.store.summary import Lease, RunDetail, RunInfo

__all__ = (
    "DEFAULT_LEASE",
    "FINISHED",
    "READY",
    "LeaseLost",
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

TOKEN_MARK = "#"
"""Separates a lease's owner (`host:pid`) from its token in the SQL backends' `owner` column."""


class LeaseLost(RunLocked):
    """Another driver took over a run this store's driver held, so this one may not write to it.

    Raised by a write (or a lease renewal) of a driver whose lease was taken over: after
    it ran out (the driver was cut off from the database, or stalled), or after the
    database ended the session that marked the driver alive. Nothing of the refused write
    is stored; the run goes on under its new driver. A `RunLocked`, so code that leaves a
    run another driver holds to it does the same here.
    """

    def __init__(self, run_id: str, where: str, holder: str | None = None, *, message: str | None = None) -> None:
        now = f"it is held by {holder}" if holder else "nobody holds it now"
        PersistenceError.__init__(
            self,
            message
            or (
                f"Run {run_id!r} in {where} was taken over by another driver ({now}): this driver's lease on it "
                f"ran out or its database session was cut off, so it stops and writes nothing more. The run goes "
                f"on under its new driver; if it is left stalled, resume it."
            ),
            run_id=run_id,
        )
        self.run_id = run_id
        self.holder = holder
        """Who holds the run now (`host:pid`), as far as the store could tell (`None`: nobody)."""


def owner_of(column: object) -> str | None:
    """The `host:pid` of an `owner` column (which may carry the lease's token after `TOKEN_MARK`)."""
    return column.partition(TOKEN_MARK)[0] if isinstance(column, str) else None


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
        self._tokens: dict[str, str] = {}
        """Fenced stores: the owner token this store wrote when it took each run it holds."""
        self._lost: dict[str, anyio.Event] = {}
        """Each held run's event, set once this store learns another driver took the run over."""
        self._ready: anyio.Event | None = None
        """Set when this store lets go of a run (it may be ready for another driver of this process)."""

    fenced: bool = False
    """Whether taking a run writes a token of its own as the run's owner, which every write of the
    holder must find (fencing: a driver whose lease was taken over cannot write). The SQL backends are;
    the file and memory backends write the lease with the driver's first record instead."""

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
        if self.fenced and run_id in self._holding:
            return None  # one holder per store too: its drivers share the store's locks
        release = await self._try_lock(run_id)
        return None if release is None else await self._hold_locked(run_id, release)

    async def _hold_locked(self, run_id: str, release: Release) -> Release:
        """Hold a run whose lock this store just took: a fenced store writes its token as the run's owner."""
        if not self.fenced:
            return await self._leased(run_id, release)
        token = self._new_token()
        try:
            await self._take_fenced(run_id, token, time() + self.lease)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await release()
            raise
        return await self._leased(run_id, release, token)

    async def _leased(self, run_id: str, release: Release, token: str | None = None) -> Release:
        """Hold a run whose lock this store just took.

        Unfenced, taking a run writes nothing: its lease is written with the run's next
        record, so a driver that is refused (another graph's run, a run that ended) leaves
        every stored byte as it was. Fenced, `token` is what the store wrote as the run's
        owner. The release clears the lease, if written (fenced: if the run is still ours).
        """
        self._holding.add(run_id)
        self._lost[run_id] = anyio.Event()
        if token is not None:
            self._tokens[run_id] = token
            self._shown.add(run_id)

        async def let_go() -> None:
            self._holding.discard(run_id)
            self._cancels.pop(run_id, None)
            held = self._tokens.pop(run_id, None)
            lost = self._lost.pop(run_id, None)
            try:
                if run_id in self._shown:
                    self._shown.discard(run_id)
                    if held is None:
                        await self._write_lease(run_id, Lease(None, None))
                    elif lost is None or not lost.is_set():
                        await self._clear_fenced(run_id, held)
            except Exception as error:  # the lease runs out by itself: letting go of the lock matters
                logger.warning("could not clear the lease on run %s in %r: %s", run_id, self, error)
            finally:
                await release()
                self._wake()

        return let_go

    def _new_token(self) -> str:
        """An owner token for one taking of a run: `host:pid`, then a part no other taking has."""
        return f"{self.owner}{TOKEN_MARK}{secrets.token_hex(8)}"

    def _fence(self, run_id: str) -> str | None:
        """The owner token a write to a run this (fenced) store holds must find (`None`: not held).

        Raises:
            LeaseLost: this store knows already that the run was taken over (nothing is tried).
        """
        lost = self._lost.get(run_id)
        if lost is not None and lost.is_set():
            raise LeaseLost(run_id, repr(self))
        return self._tokens.get(run_id)

    def _taken_over(self, run_id: str, holder: object) -> LeaseLost:
        """A write found the run taken over: remember it (the driver's watchers hear of it) and say so."""
        lost = self._lost.get(run_id)
        if lost is not None:
            lost.set()
        logger.warning("run %s in %r was taken over by another driver; this one stops", run_id, self)
        return LeaseLost(run_id, repr(self), owner_of(holder))

    def lease_lost(self, run_id: str) -> anyio.Event | None:
        """An event set once this store learns another driver took over a run it holds (`None`: not held).

        A worker cancels the run's drive when it is set: the drive could not write another step.
        """
        return self._lost.get(run_id)

    async def _take_fenced(self, run_id: str, token: str, expires: float) -> None:
        """Fenced stores: write `token` as the owner of a run whose lock this store holds (none: no-op)."""
        raise NotImplementedError

    async def _renew_fenced(self, run_id: str, token: str, expires: float) -> str | None:
        """Fenced stores: renew the lease if the run's owner is still `token`; return a cancellation asked.

        Raises:
            LeaseLost: the run's owner is another (from `_taken_over`).
        """
        raise NotImplementedError

    async def _clear_fenced(self, run_id: str, token: str) -> None:
        """Fenced stores: clear the lease if the run's owner is still `token`."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Tell this process's waiting workers that a run may be ready (one was let go of)."""
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.set()

    async def wait_ready(self, within: float) -> bool:
        """Wait up to `within` seconds for a sign that a run became ready; say whether one came.

        A worker polls `claim` between waits. This store hears of the runs it lets go of
        itself; PostgreSQL also hears of runs other processes create or let go of.
        """
        if self._ready is None:
            self._ready = anyio.Event()
        ready = self._ready
        with anyio.move_on_after(within):
            await ready.wait()
            return True
        return False

    def _lease_of(self, run_id: str) -> Lease | None:
        """The lease a write to a run this store holds carries (`None`: not held); it is then shown."""
        if run_id not in self._holding:
            return None
        self._shown.add(run_id)
        return Lease(self._tokens.get(run_id, self.owner), time() + self.lease)

    def _noticed(self, run_id: str, reason: str | None) -> None:
        """A write to a run this store holds found a cancellation asked of it."""
        if reason is not None and run_id in self._holding:
            self._cancels[run_id] = reason

    async def heartbeat(self, run_id: str) -> str | None:
        """Renew this store's lease on a run it holds; return the reason of a cancellation asked of it, if any.

        A driver calls this every third of `lease` while it drives (`railyard` does so itself).

        Raises:
            LeaseLost: another driver took the run over (a fenced store; nothing is written).
        """
        token = self._fence(run_id)
        if token is not None:
            self._noticed(run_id, await self._renew_fenced(run_id, token, time() + self.lease))
        elif run_id in self._holding and run_id in self._shown:
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
            if self.fenced and info.run_id in self._holding:
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
                    self._claimed[info.run_id] = await self._hold_locked(info.run_id, release)
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
