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
    "DIALECT",
    "ErrorInfo",
    "JoinClosed",
    "RunCreated",
    "RunEndRecorded",
    "RunRecord",
    "RunStatus",
    "RunCancelledRecorded",
    "RunSuspendedRecorded",
    "SignalReceived",
    "StepFailed",
    "StepSuspended",
    "StepFinished",
    "StepStarted",
    "TaskClaimed",
    "TasksScheduled",
)


DIALECT = 2
"""The version of the record dialect this railyard writes (and the newest it reads).

1: the first (no `run_created`; join closings were `step_finished` records with `join:`
ids; a step's finish named no node of its own). 2: `run_created` opens a run, with its
graph's name and fingerprint and the railyard that made it; `join_closed` records a join's
value going on; `step_finished` names its node; `run_ended` records an end given apart from a step
(dialect 1: a `step_finished` with an empty task id); states may be stored by change. Logs of
dialect 1 are read as they are, translated record by record.

Versions of a graph (`railyard.versioning`): `run_created` carries the graph's `shape`, whose
`version` is the graph's (1 when not recorded). When a newer version or another shape of the
graph resumes a run, it first appends another `run_created` (the run's status unchanged):
the records after it are written by that version, those before it by the one before. A
reader migrates each record from the version in force where it stands, so what the new code
wrote is never migrated again, however often the run is resumed; stored records are never
rewritten.
"""


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
    CANCELLED = "cancelled"
    """Cancelled by `cancel(store, run_id, reason)`: never resumed, never claimed."""
    SUSPENDED = "suspended"
    """A step waits for a signal (`ctx.wait_for`): no worker takes the run until `signal` answers it."""
    STALLED = "stalled"
    """Reported, never stored: the run was cut off mid-way and its driver's lease ran out (it died, or let go
    mid-step). A worker takes it up; `runs(status=RunStatus.STALLED)` lists them."""


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
class RunCreated:
    """A run was created: the first record of every run (of dialect 2 on)."""

    graph: str | None
    """The name of the run's graph."""
    fingerprint: str | None
    """A digest of the graph's shape when the run was created (see `railyard._fingerprint`)."""
    railyard_version: str
    """The version of railyard that created the run."""
    dialect: int
    """The record dialect the run is written in (`DIALECT`)."""
    ts: float
    """When, as a POSIX timestamp."""
    shape: dict[str, Any] | None = None
    """The graph's shape: its version, state schema, nodes, edges and node schemas (see
    `railyard._fingerprint`); `None` in runs recorded before railyard recorded it (unknown: a
    resume compares nothing). A `run_created` after a run's first says the run goes on from
    there by this version and shape of its graph (see `DIALECT`)."""
    parent: dict[str, str] | None = None
    """The run this one is a child of (`ctx.run_child`): `{"run_id", "step_id", "key"}` of the
    parent's step that runs it; `None` for a run of its own (and in runs recorded before it was).
    Only a run's first `run_created` carries it (see `railyard.children`)."""


@dataclass(slots=True)
class TasksScheduled:
    """Tasks were scheduled from outside a step: the start of a run, or a caller's override."""

    tasks: tuple[Task, ...]
    """The tasks, in the order they will run."""
    state: Any
    """The state when they were scheduled."""
    ts: float
    """When, as a POSIX timestamp."""
    replaces: tuple[str, ...] = ()
    """Ids of tasks scheduled before and not started that these replace (a caller's `next(...)`):
    they will never run."""


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
    node_id: str | None = None
    """The id of the node that ran (`None` in dialect 1 logs)."""


@dataclass(slots=True)
class RunEndRecorded:
    """The run's end was recorded apart from any step: a persistence's `snapshot_end`."""

    state: Any
    """The state at the end."""
    end: End[Any]
    """The run's end."""
    ts: float
    """When, as a POSIX timestamp."""


@dataclass(slots=True)
class JoinClosed:
    """A join closed (every branch of its fork had arrived): its value went on to `next_tasks`."""

    join_id: str
    """The join's node id."""
    close_id: str
    """The id of this closing: one per join instance (`join:<join id>:<fork run id>`)."""
    state: Any
    """The state when it closed."""
    next_tasks: tuple[Task, ...]
    """The tasks the join's value went on to."""
    ts: float
    """When, as a POSIX timestamp."""


@dataclass(slots=True)
class StepFailed:
    """A task raised: the run stops here, unless its retry policy runs it again (`retry_at`)."""

    task_id: str
    """The task's id."""
    duration: float
    """How long the node ran before raising, in seconds."""
    error: ErrorInfo
    """What it raised."""
    ts: float
    """When, as a POSIX timestamp."""
    attempt: int = 1
    """Which attempt of the task this was (1 for the first)."""
    retry_at: float | None = None
    """When the next attempt is due (a POSIX timestamp), or `None`: the failure is final."""


@dataclass(slots=True)
class StepSuspended:
    """A task waits for a signal (`ctx.wait_for(key, payload_type)`): the run is suspended."""

    task_id: str
    """The waiting task's id; it runs again from its start once the signal is in."""
    key: str
    """What it waits for: the key a `signal` answers."""
    payload_type: str
    """The payload's type, as `module:qualified name` (what `signal` validates the payload with)."""
    payload_schema: dict[str, Any]
    """The payload's JSON schema, for whoever answers (a form, a command line)."""
    prompt: str | None
    """What the step asks, for a person."""
    ts: float
    """When, as a POSIX timestamp."""
    wake_at: float | None = None
    """When the wait ends by itself (a POSIX timestamp): a timer (`ctx.sleep_until`), or a `wait_for`'s timeout."""


@dataclass(slots=True)
class RunSuspendedRecorded:
    """The run stopped: every step that could go on has, and the rest wait for signals."""

    keys: tuple[str, ...]
    """What the waiting steps wait for."""
    ts: float
    """When, as a POSIX timestamp."""
    wake_at: float | None = None
    """When its first timer is due (a POSIX timestamp): a worker takes the run up then."""


@dataclass(slots=True)
class RunCancelledRecorded:
    """The run was cancelled: it stops here for good."""

    reason: str
    """Why, as given to `cancel`."""
    ts: float
    """When, as a POSIX timestamp."""


@dataclass(slots=True)
class SignalReceived:
    """The answer to a waiting step: `signal(store, run_id, key, payload)`; the run is ready to go on."""

    key: str
    """The key the answer is for."""
    payload: Any
    """The payload, as JSON (validated against the waiting step's type when it was given)."""
    ts: float
    """When, as a POSIX timestamp."""


RunRecord = (
    RunCreated
    | TasksScheduled
    | TaskClaimed
    | StepStarted
    | StepFinished
    | StepFailed
    | JoinClosed
    | RunEndRecorded
    | StepSuspended
    | RunSuspendedRecorded
    | RunCancelledRecorded
    | SignalReceived
)
"""Any record of a run log."""
