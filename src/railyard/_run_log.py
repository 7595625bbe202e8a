"""The one recorder of every durable run: a run's events written to its `RunStore`, in order, under its lock.

Node runs (through `DurablePersistence`), builder runs and agent runs all record
through `StoreRecorder`: it holds the run's lock, encodes each event as one record
with the graph's codec, and appends it before the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

import anyio
import pydantic_core
from opentelemetry import trace

from railyard._logging import extra as _extra
from railyard._version import railyard_version
from railyard.exceptions import PersistenceError, RunExists, RunNotFound
from railyard.runtime._end import End
from railyard.runtime._recorder import Outcome
from railyard.runtime._tasks import Task
from railyard.store import RunStatus, RunStore, StoredRecord
from railyard.store._deltas import StateDeltas
from railyard.store.base import LeaseLost
from railyard.store.codec import RecordCodec
from railyard.store.records import (
    DIALECT,
    ErrorInfo,
    JoinClosed,
    RunCancelledRecorded,
    RunCreated,
    RunRecord,
    RunSuspendedRecorded,
    StepFailed,
    StepFinished,
    StepStarted,
    StepSuspended,
    TaskClaimed,
    TasksScheduled,
)

if TYPE_CHECKING:
    from railyard.suspension import Waiting

__all__ = ("StoreRecorder",)

logger = logging.getLogger("railyard.store")
run_logger = logging.getLogger("railyard.run")
"""Run-level events of durable runs: started, resumed, suspended, failed, ended, cancelled, retries."""


class StoreRecorder:
    """Records one run's events in its store; each record is written before the run goes on.

    Records land in the order they were made (concurrent branches wait their turn), so a
    record's state never runs ahead of the records before it. Once a step of this
    attempt has failed, the records after it keep the run `failed`; claiming a step
    changes nothing about the run's status.
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        codec: RecordCodec,
        *,
        graph: str | None = None,
        fingerprint: str | None = None,
        exists: bool | None = None,
        on_record: Callable[[RunRecord], None] | None = None,
    ) -> None:
        self.store = store
        """Where the run is kept."""
        self.run_id = run_id
        """The run's id in the store."""
        self.codec = codec
        """Encodes the records with the graph's types."""
        self.graph = graph
        """The graph's name, recorded with a new run."""
        self.fingerprint = fingerprint
        """A digest of the graph's shape, recorded with a new run."""
        self.exists = exists
        """Whether the store holds the run (`None`: not known yet, asked at the first write)."""
        self.status: RunStatus | None = None
        """The run's status after the last record written."""
        self.failed = False
        """Whether a step of this attempt failed."""
        self.on_record = on_record
        """Told every record as it is queued to be stored (a persistence's in-memory view)."""
        self._lock: AbstractAsyncContextManager[None] | None = None
        self._pending: list[StoredRecord] = []
        self._told = 0
        self._durable = 0
        self._flushing: anyio.Event | None = None
        self._broken: BaseException | None = None
        self._creating = False
        self._deltas = StateDeltas()
        self.on_cancel: Callable[[str], None] | None = None
        """Told the reason when the store says a cancellation was asked of the run (the loop stops it)."""
        self._asked: Callable[[str], str | None] | None = getattr(store, "cancel_requested", None)
        self._beat: asyncio.Task[None] | None = None
        self._beating = False
        """Whether the heartbeat is renewing the lease right now (it is let finish, not cut off)."""
        self.traced = False
        """Whether the run is traced: then each commit is a `railyard.store.commit` event on the current span."""

    @property
    def locked(self) -> bool:
        """Whether this recorder holds the run's lock."""
        return self._lock is not None

    async def open(self, *, new: bool, existing_ok: bool = False) -> bool:
        """Take the run's lock; for a new run, refuse an id the store holds (unless `existing_ok`).

        Returns:
            Whether the store holds the run.

        Raises:
            RunLocked: another driver holds the run.
            RunExists: `new`, and the store already holds a run under this id.
        """
        lock = self.store.lock(self.run_id)
        await lock.__aenter__()
        self._lock = lock
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("took the lock on run %s in %r", self.run_id, self.store, extra=_extra(self.run_id))
        self._start_heartbeat()
        self._deltas.reset()  # the first state this driver stores is whole: it trusts no earlier writer
        try:
            if new:
                self.exists = await self._stored()
                if self.exists and not existing_ok:
                    raise RunExists(self.run_id, repr(self.store))
        except BaseException:
            await self.close()
            raise
        if run_logger.isEnabledFor(logging.INFO):
            what = "started" if new and not self.exists else "resumed"
            run_logger.info("run %s %s (graph %s)", self.run_id, what, self.graph, extra=_extra(self.run_id))
        return bool(self.exists)

    async def close(self) -> None:
        """Commit what is queued and release the run's lock (shielded: a cancelled driver still lets go)."""
        lock = self._lock
        if lock is None:
            return
        beat, self._beat = self._beat, None
        with anyio.CancelScope(shield=True):
            try:
                if beat is not None:  # stopped, and done, before the lease is cleared: it never writes after
                    if not self._beating:  # asleep: woken by the cancellation; renewing: it stops after this one
                        beat.cancel()
                    await asyncio.wait([beat])
                if self._broken is None:
                    pending = self.flush()
                    if pending is not None:
                        await pending
                    await self._cancel_asked_meanwhile()
            finally:
                self._lock = None
                await lock.__aexit__(None, None, None)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("released the lock on run %s", self.run_id, extra=_extra(self.run_id))

    async def _cancel_asked_meanwhile(self) -> None:
        """Record a cancellation asked of the run since its last write, before letting go of it.

        A driver that stops between steps (or whose drive was cut short) would otherwise
        leave the request for the next one: the run is stored cancelled now, while it is held.
        """
        heartbeat = getattr(self.store, "heartbeat", None)
        if heartbeat is None or not self.exists or self.status in (RunStatus.ENDED, RunStatus.CANCELLED):
            return
        reason = await heartbeat(self.run_id)
        if reason is not None:
            await self.write(RunCancelledRecorded(reason, time()), None)

    async def write(self, record: RunRecord, node_id: str | None) -> None:
        """Store one record (with any told before it); outside an open run, take the run's lock for it.

        Raises:
            RunLocked: outside an open run, while another driver holds the run.
            PersistenceError: a value in the record cannot be stored as JSON, or the store
                failed to write.
        """
        if self._lock is None:
            async with self.store.lock(self.run_id):
                self._deltas.reset()  # another driver may have written since: store this state whole
                await self._write(record, node_id)
        else:
            await self._write(record, node_id)

    async def _write(self, record: RunRecord, node_id: str | None) -> None:
        if self.exists is None:
            self.exists = await self._stored()
        self.tell(record, node_id)
        await self._commit()

    def tell(self, record: RunRecord, node_id: str | None) -> None:
        """Queue one record for the next commit (it is durable once `flush` or a later `write` returns).

        Raises:
            PersistenceError: a value in the record cannot be stored as JSON (nothing is queued).
        """
        first = not self.exists and not self._creating  # the record that creates the run
        if first and not isinstance(record, RunCreated):
            self.tell(self._created(), None)  # every run opens with what made it
            first = False
        creating = not self.exists
        try:
            stored = self.codec.stored(
                record, node_id=node_id, first=creating, graph=self.graph if first else None, deltas=self._deltas
            )
        except pydantic_core.PydanticSerializationError as err:
            raise PersistenceError(
                f"Run {self.run_id!r} cannot be recorded: a value flowing into `{node_id}` cannot be stored as "
                f"JSON ({err}). Durable runs need JSON-serializable values (a map over an async iterable is not)."
            ) from None
        if isinstance(record, StepFailed) and record.retry_at is None:
            self.failed = True
        elif isinstance(record, TaskClaimed) and self.status is not None:
            stored = replace(stored, status=self.status)  # claiming a step changes nothing: failed stays failed
        elif self.failed and stored.status is not RunStatus.ENDED:
            stored = replace(stored, status=RunStatus.FAILED)  # a branch that finishes after a failure
        self._creating = self._creating or first
        self._pending.append(stored)
        self._told += 1
        self.status = stored.status
        if self.on_record is not None:
            self.on_record(record)

    def _created(self) -> RunCreated:
        return RunCreated(self.graph, self.fingerprint, railyard_version(), DIALECT, time())

    def flush(self) -> Awaitable[None] | None:
        """Make every record told so far durable (`None`: nothing is waiting to be written)."""
        if self._durable == self._told:
            return None
        return self._commit()

    async def _commit(self) -> None:
        """Write the queued records in one transaction; records told meanwhile go in the next one.

        Group commit: a writer whose record is queued while another commit is in flight
        waits for that commit, then writes everything queued since, its own record with it.
        """
        target = self._told
        while self._durable < target:
            if isinstance(self._broken, LeaseLost):  # the run was taken over: nothing more is written
                raise LeaseLost(self.run_id, repr(self.store), self._broken.holder, message=str(self._broken))
            if self._broken is not None:
                raise PersistenceError(
                    f"Run {self.run_id!r} in {self.store!r} could not be recorded: {self._broken}"
                ) from self._broken
            flushing = self._flushing
            if flushing is not None:
                await flushing.wait()
                continue
            batch, self._pending = self._pending, []
            self._flushing = done = anyio.Event()
            began = perf_counter() if self.traced else 0.0
            try:
                with anyio.CancelScope(shield=True):  # a write is finished, not cut off: the log stays whole
                    if self.exists:
                        await self.store.append(self.run_id, batch)
                    else:
                        await self.store.create(self.run_id, batch)
                        self.exists = True
            except BaseException as error:
                self._broken = error  # what was told is lost: nothing after it may be written
                raise
            finally:
                self._flushing = None
                done.set()
            self._durable += len(batch)
            if self.traced:
                trace.get_current_span().add_event(
                    "railyard.store.commit",
                    {"railyard.store.records": len(batch), "railyard.store.duration": perf_counter() - began},
                )
            asked = self._asked
            if asked is not None and self.on_cancel is not None and (reason := asked(self.run_id)) is not None:
                self.on_cancel(reason)

    async def _stored(self) -> bool:
        try:
            await self.store.read(self.run_id)
        except RunNotFound:
            return False
        return True

    # -- the loop's events (the runtime's `Recorder`) -------------------------------------------

    def _queue(self, record: RunRecord, node_id: str | None) -> Awaitable[None] | None:
        """Queue a record for the next commit, when the run is open and known; else write it now."""
        if self._lock is None or self.exists is None:
            return self.write(record, node_id)
        self.tell(record, node_id)
        return None

    def tasks_created(self, tasks: Sequence[Task], state: Any, replaces: Sequence[str] = ()) -> Awaitable[None] | None:
        """Queue tasks scheduled from outside a step: the start, `next(node)`, a map's items.

        They are durable before any of them starts (`step_started` commits them).
        """
        if not tasks:
            return None
        return self._queue(TasksScheduled(tuple(tasks), state, time(), tuple(replaces)), tasks[0].node_id)

    async def step_started(self, task: Task, state: Any) -> None:
        """Record that a task starts, with every record queued before it, in one commit."""
        await self.write(StepStarted(task.task_id, time()), task.node_id)

    async def steps_started(self, tasks: Sequence[Task], state: Any) -> None:
        """Record that `tasks` start side by side, in one commit (with every record queued before)."""
        if self._lock is None or self.exists is None:
            for task in tasks:
                await self.step_started(task, state)
            return
        ts = time()
        for task in tasks:
            self.tell(StepStarted(task.task_id, ts), task.node_id)
        await self._commit()

    def structural_started(self, task: Task, state: Any) -> None:
        """Nothing to record: a task the loop runs itself leaves the log only its `step_finished`.

        It runs whole, in the driver; cut off before its finish, it is replayed from the log.
        """

    def step_finished(self, task: Task, outcome: Outcome, state: Any, duration: float) -> Awaitable[None] | None:
        """Queue a task's outcome and the state after it, in one record.

        It is committed with the next step's start (one transaction for both), or by
        `flush` when the run hands control back to its caller.
        """
        if isinstance(outcome, End):
            record = StepFinished(task.task_id, duration, state, (), outcome, time(), task.node_id)
            if run_logger.isEnabledFor(logging.INFO):
                run_logger.info(
                    "run %s ended at step %s", self.run_id, task.task_id, extra=_extra(self.run_id, task.task_id)
                )
        else:
            record = StepFinished(task.task_id, duration, state, tuple(outcome), None, time(), task.node_id)
        return self._queue(record, task.node_id)

    async def step_failed(self, task: Task, error: BaseException, duration: float, attempt: int = 1) -> None:
        """Record a task's exception (a cancellation is not a failure: nothing is recorded)."""
        if isinstance(error, Exception):
            info = ErrorInfo.from_exception(error)
            await self.write(StepFailed(task.task_id, duration, info, time(), attempt), task.node_id)
            run_logger.error(
                "run %s failed: step %s (%s, attempt %d) raised %s: %s",
                self.run_id,
                task.task_id,
                task.node_id,
                attempt,
                type(error).__qualname__,
                error,
                extra=_extra(self.run_id, task.task_id),
            )

    async def attempt_failed(
        self, task: Task, error: BaseException, duration: float, attempt: int, retry_at: float
    ) -> None:
        """Record a failed attempt and when the next is due, before the wait for it."""
        info = ErrorInfo.from_exception(error)
        await self.write(StepFailed(task.task_id, duration, info, time(), attempt, retry_at), task.node_id)
        if run_logger.isEnabledFor(logging.INFO):
            run_logger.info(
                "run %s: attempt %d of step %s (%s) failed with %s; the next is due in %.3gs",
                self.run_id,
                attempt,
                task.task_id,
                task.node_id,
                type(error).__qualname__,
                max(retry_at - time(), 0.0),
                extra={**_extra(self.run_id, task.task_id), "railyard_attempt": attempt, "railyard_retry_at": retry_at},
            )

    async def step_suspended(self, task: Task, waiting: Waiting) -> None:
        """Record what the task waits for (the run is `suspended` once this is written)."""
        record = StepSuspended(
            task.task_id,
            waiting.key,
            waiting.payload_type,
            waiting.payload_schema,
            waiting.prompt,
            time(),
            waiting.wake_at,
        )
        await self.write(record, task.node_id)

    async def run_suspended(self, waits: Sequence[Waiting]) -> None:
        """Record that the run is suspended (what it waits for is in its steps' records)."""
        from railyard.suspension import first_timer

        await self.write(RunSuspendedRecorded(tuple(w.key for w in waits), time(), first_timer(waits)), None)
        if run_logger.isEnabledFor(logging.INFO):
            run_logger.info(
                "run %s suspended, waiting for %s",
                self.run_id,
                ", ".join(w.key for w in waits),
                extra=_extra(self.run_id, waits[0].step_id if waits else None),
            )

    async def run_cancelled(self, reason: str) -> None:
        """Record that the run was cancelled while it was driven (it stopped at a step boundary)."""
        with anyio.CancelScope(shield=True):
            await self.write(RunCancelledRecorded(reason, time()), None)
        run_logger.info("run %s cancelled: %s", self.run_id, reason, extra=_extra(self.run_id))

    def _start_heartbeat(self) -> None:
        """While this recorder holds the run: renew the store's lease on it, and hear of a cancellation asked.

        A task of its own, every third of the store's lease (on asyncio; elsewhere the lease
        is renewed with each record the run writes).
        """
        if not isinstance(getattr(self.store, "lease", None), (int, float)) or not hasattr(self.store, "heartbeat"):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on asyncio
            return
        self._beat = loop.create_task(self._heartbeat(), name=f"railyard lease {self.run_id}")

    async def _heartbeat(self) -> None:
        store: Any = self.store
        while self._beat is not None:  # until `close` stops it
            await anyio.sleep(store.lease / 3)
            if self._lock is None or self._beat is None:
                return
            self._beating = True
            try:
                reason = await store.heartbeat(self.run_id)
            except LeaseLost as lost:  # taken over: this driver writes nothing more (its watchers stop it)
                if self._broken is None:
                    self._broken = lost
                logger.warning("lost the lease on run %s: %s", self.run_id, lost, extra=_extra(self.run_id))
                return
            except Exception as error:  # the store is unreachable now: the next beat tries again
                logger.warning("could not renew the lease on run %s: %s", self.run_id, error, extra=_extra(self.run_id))
                continue
            finally:
                self._beating = False
            if reason is not None and self.on_cancel is not None:
                self.on_cancel(reason)

    def join_closed(self, join_id: str, close_id: str, tasks: Sequence[Task], state: Any) -> Awaitable[None] | None:
        """Queue a join's closing as a finished step of its own, with the tasks its value went on to."""
        return self._queue(JoinClosed(join_id, close_id, state, tuple(tasks), time()), join_id)
