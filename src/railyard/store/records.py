"""The records of a run log, and the run's status derived from them.

A run log is append-only: a record is never changed once written. Everything else —
pydantic-graph's snapshots, the seeds' history, a run's status — is a view computed
from these records.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from railyard.runtime._end import End
from railyard.runtime._tasks import Task

__all__ = (
    "ErrorInfo",
    "RunRecord",
    "RunStatus",
    "StepFailed",
    "StepFinished",
    "StepStarted",
    "TaskClaimed",
    "TasksScheduled",
)


class RunStatus(StrEnum):
    """Where a run stands."""

    CREATED = "created"
    """Stored, no step has started yet."""
    RUNNING = "running"
    """A step is running (or was, when its process died)."""
    WAITING = "waiting"
    """Between steps: the next tasks are recorded and nothing runs them yet."""
    ENDED = "ended"
    """A node returned `End`; the run cannot go on."""
    FAILED = "failed"
    """A node raised; the run may be resumed after a fix."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A node's exception, as recorded in the log."""

    type: str
    """The exception's qualified class name."""
    message: str
    """`str(exception)`."""
    traceback: str
    """The formatted traceback."""

    @classmethod
    def from_exception(cls, error: BaseException) -> ErrorInfo:
        """Describe `error` for the log."""
        kind = type(error)
        return cls(
            type=f"{kind.__module__}.{kind.__qualname__}",
            message=str(error),
            traceback="".join(traceback.format_exception(error)),
        )


@dataclass(slots=True)
class TasksScheduled:
    """Tasks were scheduled from outside a step: the start of a run, or a caller's override."""

    tasks: tuple[Task, ...]
    """The tasks, in the order they will run."""
    state: Any
    """The state when they were scheduled."""
    ts: float
    """When, as a POSIX timestamp."""


@dataclass(slots=True)
class TaskClaimed:
    """A driver claimed a scheduled task to run it next (pydantic-graph's `pending`)."""

    task_id: str
    """The task's id."""
    ts: float
    """When, as a POSIX timestamp."""


@dataclass(slots=True)
class StepStarted:
    """A task started running."""

    task_id: str
    """The task's id (a node's snapshot id)."""
    ts: float
    """When, as a POSIX timestamp."""


@dataclass(slots=True)
class StepFinished:
    """A task returned; its outcome and the new state are recorded with it, in one record."""

    task_id: str
    """The task's id."""
    duration: float
    """How long the node ran, in seconds."""
    state: Any
    """The state after the step."""
    next_tasks: tuple[Task, ...]
    """The tasks the step led to (empty when it ended the run)."""
    end: End[Any] | None
    """The run's end, if the step ended it."""
    ts: float
    """When the step finished, as a POSIX timestamp."""


@dataclass(slots=True)
class StepFailed:
    """A task raised; the run stops here."""

    task_id: str
    """The task's id."""
    duration: float
    """How long the node ran before raising, in seconds."""
    error: ErrorInfo
    """What it raised."""
    ts: float
    """When, as a POSIX timestamp."""


RunRecord = TasksScheduled | TaskClaimed | StepStarted | StepFinished | StepFailed
"""Any record of a run log."""
