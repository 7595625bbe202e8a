"""The one recorder of every durable run: a run's events written to its `RunStore`, in order, under its lock.

Node runs (through `DurablePersistence`), builder runs and agent runs all record
through `StoreRecorder`: it holds the run's lock, encodes each event as one record
with the graph's codec, and appends it before the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from time import time
from typing import Any

import anyio
import pydantic_core

from railyard.exceptions import PersistenceError, RunExists, RunNotFound
from railyard.runtime._end import End
from railyard.runtime._recorder import Outcome
from railyard.runtime._tasks import Task
from railyard.store import RunStatus, RunStore
from railyard.store.codec import RecordCodec
from railyard.store.records import (
    ErrorInfo,
    RunRecord,
    StepFailed,
    StepFinished,
    StepStarted,
    TaskClaimed,
    TasksScheduled,
)

__all__ = ("StoreRecorder",)


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
        self.exists = exists
        """Whether the store holds the run (`None`: not known yet, asked at the first write)."""
        self.status: RunStatus | None = None
        """The run's status after the last record written."""
        self.failed = False
        """Whether a step of this attempt failed."""
        self.on_record = on_record
        """Told every record once it is stored (a persistence's in-memory view)."""
        self._lock: AbstractAsyncContextManager[None] | None = None
        self._order = anyio.Lock()

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
        try:
            if new:
                self.exists = await self._stored()
                if self.exists and not existing_ok:
                    raise RunExists(self.run_id, repr(self.store))
        except BaseException:
            await self.close()
            raise
        return bool(self.exists)

    async def close(self) -> None:
        """Release the run's lock (shielded: a cancelled driver still lets go of its run)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            with anyio.CancelScope(shield=True):
                await lock.__aexit__(None, None, None)

    async def write(self, record: RunRecord, node_id: str | None) -> None:
        """Store one record; outside an open run, take the run's lock for this one write.

        Raises:
            RunLocked: outside an open run, while another driver holds the run.
            PersistenceError: a value in the record cannot be stored as JSON.
        """
        if self._lock is None:
            async with self.store.lock(self.run_id):
                await self._write(record, node_id)
        else:
            await self._write(record, node_id)

    async def _write(self, record: RunRecord, node_id: str | None) -> None:
        if self.exists is None:
            self.exists = await self._stored()
        try:
            stored = self.codec.stored(record, node_id=node_id, first=not self.exists, graph=self.graph)
        except pydantic_core.PydanticSerializationError as err:
            raise PersistenceError(
                f"Run {self.run_id!r} cannot be recorded: a value flowing into `{node_id}` cannot be stored as "
                f"JSON ({err}). Durable runs need JSON-serializable values (a map over an async iterable is not)."
            ) from None
        if isinstance(record, StepFailed):
            self.failed = True
        elif isinstance(record, TaskClaimed) and self.status is not None:
            stored = replace(stored, status=self.status)  # claiming a step changes nothing: failed stays failed
        elif self.failed and stored.status is not RunStatus.ENDED:
            stored = replace(stored, status=RunStatus.FAILED)  # a branch that finishes after a failure
        async with self._order:  # fair: writers go in the order they came
            if self.exists:
                await self.store.append(self.run_id, [stored])
            else:
                await self.store.create(self.run_id, [stored])
                self.exists = True
        self.status = stored.status
        if self.on_record is not None:
            self.on_record(record)

    async def _stored(self) -> bool:
        try:
            await self.store.read(self.run_id)
        except RunNotFound:
            return False
        return True

    # -- the loop's events (the runtime's `Recorder`) -------------------------------------------

    async def tasks_created(self, tasks: Sequence[Task], state: Any) -> None:
        """Record tasks scheduled from outside a step: the start, `next(node)`, a map's items."""
        if tasks:
            await self.write(TasksScheduled(tuple(tasks), state, time()), tasks[0].node_id)

    async def step_started(self, task: Task, state: Any) -> None:
        """Record that a task starts."""
        await self.write(StepStarted(task.task_id, time()), task.node_id)

    async def step_finished(self, task: Task, outcome: Outcome, state: Any, duration: float) -> None:
        """Record a task's outcome and the state after it, in one record."""
        if isinstance(outcome, End):
            record = StepFinished(task.task_id, duration, state, (), outcome, time())
            node_id = task.node_id
        else:
            record = StepFinished(task.task_id, duration, state, tuple(outcome), None, time())
            node_id = outcome[0].node_id if outcome else task.node_id  # where the run goes next
        await self.write(record, node_id)

    async def step_failed(self, task: Task, error: BaseException, duration: float) -> None:
        """Record a task's exception (a cancellation is not a failure: nothing is recorded)."""
        if isinstance(error, Exception):
            await self.write(StepFailed(task.task_id, duration, ErrorInfo.from_exception(error), time()), task.node_id)

    async def join_closed(self, join_id: str, close_id: str, tasks: Sequence[Task], state: Any) -> None:
        """Record a join's closing as a finished step of its own, with the tasks its value went on to."""
        record = StepFinished(close_id, 0.0, state, tuple(tasks), None, time())
        await self.write(record, tasks[0].node_id if tasks else join_id)
