"""A run's summary (`RunInfo`), derived from its records; shared by every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from railyard.store.records import (
    ErrorInfo,
    RunCancelledRecorded,
    RunRecord,
    RunStatus,
    RunSuspendedRecorded,
    SignalReceived,
    StepFailed,
    StepFinished,
    StepStarted,
    StepSuspended,
    TasksScheduled,
)

__all__ = ("RunDetail", "RunInfo", "summarize")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A summary of one stored run."""

    run_id: str
    """The run's id."""
    status: RunStatus
    """Where the run stands."""
    started_at: datetime | None
    """When its first record was written."""
    steps: int
    """How many steps finished."""
    last_node: str | None
    """The id of the node that ran (or was scheduled) last."""
    graph: str | None = None
    """The name of the run's graph, as recorded when the run was created."""


def summarize(run_id: str, records: Sequence[RunRecord]) -> RunInfo:
    """Summarize a run from its records."""
    status = RunStatus.CREATED
    steps = 0
    last_node: str | None = None
    running: set[str] = set()
    node_of: dict[str, str] = {}
    for record in records:
        match record:
            case TasksScheduled(tasks=tasks):
                for task in tasks:
                    node_of[task.task_id] = task.node_id
                    last_node = task.node_id
                if status is not RunStatus.ENDED:
                    status = RunStatus.WAITING if steps or running else RunStatus.CREATED
            case StepStarted(task_id=task_id):
                running.add(task_id)
                last_node = node_of.get(task_id, last_node)
                status = RunStatus.RUNNING
            case StepFinished(task_id=task_id, next_tasks=next_tasks, end=end):
                running.discard(task_id)
                steps += 1
                for task in next_tasks:
                    node_of[task.task_id] = task.node_id
                if end is not None:
                    status = RunStatus.ENDED
                elif not running:
                    status = RunStatus.WAITING
            case StepSuspended(task_id=task_id):
                running.discard(task_id)
            case RunSuspendedRecorded():
                status = RunStatus.SUSPENDED
            case RunCancelledRecorded():
                status = RunStatus.CANCELLED
            case SignalReceived():
                status = RunStatus.WAITING
            case StepFailed(task_id=task_id, retry_at=None):
                running.discard(task_id)
                status = RunStatus.FAILED
            case StepFailed(task_id=task_id):  # retried: its next attempt is due
                running.discard(task_id)
                if not running:
                    status = RunStatus.WAITING
            case _:
                pass
    started = datetime.fromtimestamp(records[0].ts, UTC) if records else None
    return RunInfo(run_id=run_id, status=status, started_at=started, steps=steps, last_node=last_node)


@dataclass(frozen=True, slots=True)
class RunDetail:
    """One stored run in full: its summary, when it last changed, and why it stands where it does."""

    info: RunInfo
    """The run's summary, as `runs()` lists it."""
    updated_at: datetime | None
    """When its last record was written."""
    error: ErrorInfo | None
    """The error a failed run stopped with (type, message, traceback); `None` unless it is failed."""
    attempts: int
    """How many failed attempts its retry policies ran again (0: none)."""
    waiting_for: tuple[str, ...]
    """What a suspended run waits for: the keys a `signal` answers (see `waiting_for` for the prompts)."""
    cancel_reason: str | None
    """Why a cancelled run was cancelled."""
