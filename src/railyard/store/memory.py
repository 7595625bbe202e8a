"""The memory backend: run logs held in this process, and the default run's recorder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from time import time
from typing import TYPE_CHECKING, Any

from railyard.exceptions import GraphNodeStatusError, RunExists, RunNotFound
from railyard.runtime._end import End
from railyard.runtime._recorder import Outcome
from railyard.runtime._tasks import Task
from railyard.store import RunInfo, StoredRecord, info_from_stored
from railyard.store.base import DEFAULT_LEASE, LockingStore, Release, RunQuery
from railyard.store.records import (
    ErrorInfo,
    JoinClosed,
    RunEndRecorded,
    RunRecord,
    RunStatus,
    RunSuspendedRecorded,
    StepFailed,
    StepFinished,
    StepStarted,
    StepSuspended,
    TaskClaimed,
    TasksScheduled,
)
from railyard.store.summary import Lease
from railyard.suspension import first_timer

if TYPE_CHECKING:
    from railyard.suspension import Waiting

__all__ = ("MemoryStore",)

_NO_TASKS: tuple[Task, ...] = ()


class MemoryRunLog:
    """One run's records in memory, with each task's snapshot status kept up to date.

    With `keep_all=False` only the records since the last scheduling are kept: enough
    to know the run's current step, for runs too long to keep whole.
    """

    __slots__ = ("keep_all", "keep_status", "records", "task_status")

    def __init__(self, *, keep_all: bool = True, keep_status: bool = False) -> None:
        self.records: list[RunRecord] = []
        """The records, oldest first."""
        self.task_status: dict[str, str] = {}
        """Snapshot status of each task: created, pending, running, success or error."""
        self.keep_all = keep_all
        """Whether every record is kept, or only those of the current step."""
        self.keep_status = keep_all or keep_status
        """Whether the status of every task is kept (also when only the current step's records are)."""

    def reset(self, records: Sequence[RunRecord]) -> None:
        """Replace every record by `records` (used when a view is assigned whole)."""
        self.records.clear()
        self.task_status.clear()
        for record in records:
            self.append(record)

    def append(self, record: RunRecord) -> None:
        """Append one record and update the task statuses it changes."""
        status = self.task_status
        match record:
            case StepStarted(task_id=task_id):
                status[task_id] = "running"
            case StepFinished(task_id=task_id, next_tasks=next_tasks):
                if not self.keep_all:
                    self.records.clear()
                if not self.keep_status:
                    status.clear()
                else:
                    status[task_id] = "success"
                for task in next_tasks:
                    status[task.task_id] = "created"
            case TasksScheduled(tasks=tasks):
                if not self.keep_all:
                    self.records.clear()
                if not self.keep_status:
                    status.clear()
                for task in tasks:
                    status.setdefault(task.task_id, "created")
            case TaskClaimed(task_id=task_id):
                status[task_id] = "pending"
            case RunEndRecorded():
                if not self.keep_all:
                    self.records.clear()
                if not self.keep_status:
                    status.clear()
            case JoinClosed(next_tasks=next_tasks):
                for task in next_tasks:
                    status[task.task_id] = "created"
            case StepSuspended(task_id=task_id):
                status[task_id] = "pending"  # runs again once its signal is in
            case StepFailed(task_id=task_id, retry_at=retry_at):
                status[task_id] = "error" if retry_at is None else "pending"  # retried: due to run again
        self.records.append(record)


class MemoryRecorder:
    """Records a run's events into a `MemoryRunLog`; the recorder of the default run.

    `copy_state` makes the copy of the state kept with each step; `None` keeps the state
    object itself (when the log does not need independent copies).
    """

    __slots__ = ("copy_state", "log")

    def __init__(self, log: MemoryRunLog, copy_state: Callable[[Any], Any] | None) -> None:
        self.log = log
        self.copy_state = copy_state

    def tasks_created(self, tasks: Sequence[Task], state: Any, replaces: Sequence[str] = ()) -> None:
        """Record tasks scheduled from outside a step (and which they replace)."""
        known = self.log.task_status
        new = tuple(task for task in tasks if task.task_id not in known)
        if new:
            copy_state = self.copy_state
            copied = state if copy_state is None else copy_state(state)
            self.log.append(TasksScheduled(new, copied, time(), tuple(replaces)))

    def step_started(self, task: Task, state: Any) -> None:
        """Record that `task` runs now; refuse a task that already ran."""
        log = self.log
        task_id = task.task_id
        status = log.task_status.get(task_id)
        if status is not None and status not in {"created", "pending"}:
            GraphNodeStatusError.check(status)
        log.task_status[task_id] = "running"
        log.records.append(StepStarted(task_id, time()))

    def steps_started(self, tasks: Sequence[Task], state: Any) -> None:
        """Record that each task runs now."""
        for task in tasks:
            self.step_started(task, state)

    def structural_started(self, task: Task, state: Any) -> None:
        """A task the loop runs itself starts: recorded as any other."""
        self.step_started(task, state)

    def step_finished(self, task: Task, outcome: Outcome, state: Any, duration: float) -> None:
        """Record the step's outcome with a copy of the new state."""
        log = self.log
        if type(outcome) is list:
            next_tasks: tuple[Task, ...] = tuple(outcome)
            end = None
        elif isinstance(outcome, End):
            next_tasks, end = _NO_TASKS, outcome
        else:
            next_tasks, end = tuple(outcome), None
        copy_state = self.copy_state
        record = StepFinished(
            task.task_id,
            duration,
            state if copy_state is None else copy_state(state),
            next_tasks,
            end,
            time(),
            task.node_id,
        )
        status = log.task_status
        if log.keep_all:
            status[task.task_id] = "success"
            log.records.append(record)
        else:
            status.clear()
            log.records[:] = (record,)
        for next_task in next_tasks:
            status[next_task.task_id] = "created"

    def step_failed(self, task: Task, error: BaseException, duration: float, attempt: int = 1) -> None:
        """Record the node's exception."""
        if isinstance(error, Exception):
            self.log.append(StepFailed(task.task_id, duration, ErrorInfo.from_exception(error), time(), attempt))

    def attempt_failed(self, task: Task, error: BaseException, duration: float, attempt: int, retry_at: float) -> None:
        """Record a failed attempt; the task is due to run again."""
        self.log.append(StepFailed(task.task_id, duration, ErrorInfo.from_exception(error), time(), attempt, retry_at))

    def step_suspended(self, task: Task, waiting: Waiting) -> None:
        """Record what the task waits for."""
        self.log.append(
            StepSuspended(
                task.task_id,
                waiting.key,
                waiting.payload_type,
                waiting.payload_schema,
                waiting.prompt,
                time(),
                waiting.wake_at,
            )
        )

    def run_suspended(self, waits: Sequence[Waiting]) -> None:
        """Record that the run is suspended."""
        self.log.append(RunSuspendedRecorded(tuple(w.key for w in waits), time(), first_timer(waits)))

    def join_closed(self, join_id: str, close_id: str, tasks: Sequence[Task], state: Any) -> None:
        """Record a join's closing as a finished step, with the tasks its value went on to."""
        copy_state = self.copy_state
        self.log.append(
            JoinClosed(join_id, close_id, state if copy_state is None else copy_state(state), tuple(tasks), time())
        )

    def flush(self) -> None:
        """Nothing to do: every event is in the log as soon as it is told."""


class MemoryStore(LockingStore):
    """A `RunStore` that keeps every run in this process; lost when it exits."""

    def __init__(self, *, lease: float = DEFAULT_LEASE) -> None:
        super().__init__(lease=lease)
        self._runs: dict[str, list[StoredRecord]] = {}
        self._locked: set[str] = set()
        self._leases: dict[str, Lease] = {}

    def __repr__(self) -> str:
        return "MemoryStore()"

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create the run with `records`."""
        if run_id in self._runs:
            raise RunExists(run_id, repr(self))
        self._runs[run_id] = list(records)
        lease = self._lease_of(run_id)
        if lease is not None:
            self._leases[run_id] = lease

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records to the run."""
        log = self._runs.get(run_id)
        if log is None:
            raise RunNotFound(run_id, repr(self))
        log.extend(records)
        held = self._lease_of(run_id)
        lease = self._leases.get(run_id, Lease(None, None))
        if held is not None:
            lease = self._leases[run_id] = replace(held, cancel_requested=lease.cancel_requested)
        self._noticed(run_id, lease.cancel_requested)

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """All records of the run, oldest first."""
        log = self._runs.get(run_id)
        if log is None:
            raise RunNotFound(run_id, repr(self))
        return list(log)

    async def _select(self, query: RunQuery) -> Sequence[RunInfo]:
        infos = [
            info_from_stored(run_id, records, self._leases.get(run_id), query.now)
            for run_id, records in self._runs.items()
        ]
        return query.page(infos, repr(self))

    async def _write_lease(self, run_id: str, lease: Lease) -> str | None:
        if run_id not in self._runs:
            return None
        asked = self._leases.get(run_id, Lease(None, None)).cancel_requested
        self._leases[run_id] = replace(lease, cancel_requested=asked)  # kept until the run is cancelled
        return asked

    async def _ask_cancel(self, run_id: str, reason: str) -> None:
        records = self._runs.get(run_id)
        if records is None:
            raise RunNotFound(run_id, repr(self))
        if records and records[-1].status in (RunStatus.ENDED, RunStatus.CANCELLED):
            return  # finished meanwhile: `cancel` says so
        self._leases[run_id] = replace(self._leases.get(run_id, Lease(None, None)), cancel_requested=reason)

    async def _remove(self, run_id: str) -> None:
        if self._runs.pop(run_id, None) is None:
            raise RunNotFound(run_id, repr(self))
        self._leases.pop(run_id, None)

    async def _try_lock(self, run_id: str) -> Release | None:
        if run_id in self._locked:
            return None
        self._locked.add(run_id)

        async def release() -> None:
            self._locked.discard(run_id)

        return release

    async def aclose(self) -> None:
        """Give up this store's claims (files and memory need no closing)."""
        await self.release_claims()
