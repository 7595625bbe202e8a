"""A run's summary (`RunInfo`), derived from its records; shared by every backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

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

__all__ = (
    "Lease",
    "RunDetail",
    "RunInfo",
    "StoredRecordLike",
    "batch_note",
    "fold_note",
    "info_fields",
    "note_of",
    "reported_status",
    "summarize",
)


class StoredRecordLike(Protocol):
    """What `fold_note` reads of a stored record."""

    @property
    def kind(self) -> str:
        """The record's kind."""
        ...

    @property
    def body(self) -> str:
        """The record as JSON."""
        ...

    @property
    def status(self) -> RunStatus:
        """The run's status once the record is written."""
        ...


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
    updated_at: datetime | None = None
    """When its last record was written."""
    error: str | None = None
    """What a failed run stopped with: `<exception type>: <message>` (`store.run(run_id)` has the traceback)."""
    waiting_for: tuple[str, ...] = ()
    """What a suspended run waits for: the keys a `signal` answers (or a timer's, `timer:...`)."""
    wake_at: datetime | None = None
    """When a suspended run's first timer is due (`ctx.sleep_until`, `wait_for(..., timeout=)`): a worker
    takes it up then."""
    owner: str | None = None
    """Who drives the run right now (`host:pid`), as its lease says; `None` when nobody holds it."""
    lease_expires: datetime | None = None
    """When the owner's lease runs out unless renewed; a run whose lease ran out is reported `stalled`."""
    cancel_requested: str | None = None
    """The reason of a `cancel` asked of a run while a driver held it (it stops at its next step boundary)."""

    @property
    def stalled(self) -> bool:
        """Whether the run was cut off: its driver's lease ran out (it died), and no one drives it now."""
        return self.status is RunStatus.STALLED


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
class Lease:
    """Who holds a run, and until when (a store's bookkeeping beside the log, not a record)."""

    owner: str | None
    """`host:pid` of the driver, or `None` once it let go."""
    expires: float | None
    """When the lease runs out (a POSIX timestamp) unless renewed."""
    cancel_requested: str | None = None
    """The reason of a cancellation asked of the run while it was held."""


_NOTED = frozenset({"step_failed", "run_suspended", "run_cancelled"})
_NOTE_LIMIT = 500


def note_of(kind: str, body: str) -> tuple[str | None, float | None] | None:
    """What a record says about its run for `RunInfo` (its error, waits, or cancel reason; a timer), or `None`.

    A final failure gives `<type>: <message>`, a suspension its keys (one per line) and
    its first timer, a cancellation its reason. Other records say nothing of their own.
    """
    if kind not in _NOTED:
        return None
    import json

    try:
        data = json.loads(body)
        if kind == "step_failed":
            if data.get("retry_at") is not None:
                return None  # an attempt its policy runs again: the run goes on
            error = data["error"]
            message = str(error["message"]).strip().splitlines()
            text = f"{error['type']}: {message[0]}" if message else str(error["type"])
            return (text[:_NOTE_LIMIT], None)
        if kind == "run_suspended":
            wake_at = data.get("wake_at")
            return ("\n".join(str(key) for key in data["keys"]), float(wake_at) if wake_at is not None else None)
        return (str(data["reason"])[:_NOTE_LIMIT], None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # not a record railyard wrote: it says nothing for the summary


def fold_note(
    status: RunStatus | None, note: str | None, wake_at: float | None, records: Sequence[StoredRecordLike]
) -> tuple[str | None, float | None]:
    """A run's note and timer after `records` (appended to a run whose last record left `status`, `note`, `wake_at`).

    A record with a note of its own sets it; any other record keeps the note while the
    status stays the same, and drops it when the status changes.
    """
    for record in records:
        noted = note_of(record.kind, record.body)
        if noted is not None:
            note, wake_at = noted
        elif record.status is not status:
            note, wake_at = None, None
        status = record.status
    return note, wake_at


def batch_note(records: Sequence[StoredRecordLike]) -> tuple[bool, str | None, float | None, RunStatus | None]:
    """`fold_note` of a batch, for a backend that cannot read the run's note first (one SQL statement).

    Returns `(decided, note, wake_at, status)`: when `decided`, the batch sets the note and
    timer itself; else they stay as they are if the run's status was `status` (the status
    of every record of the batch), and are dropped otherwise.
    """
    noted_at = None
    for index, record in enumerate(records):
        if note_of(record.kind, record.body) is not None:
            noted_at = index
    if noted_at is not None:
        note, wake_at = fold_note(None, None, None, records[noted_at:])
        return True, note, wake_at, None
    statuses = {record.status for record in records}
    if len(statuses) > 1:
        return True, None, None, None
    return False, None, None, next(iter(statuses), None)


def reported_status(status: RunStatus, owner: str | None, lease_expires: float | None, now: float) -> RunStatus:
    """The status `runs()` reports: `stalled` for a run cut off mid-way whose driver's lease ran out.

    A run stored `running` that no one holds (its driver let go mid-step, or a store from
    before leases), and a `running` or `waiting` run whose lease expired (its driver died),
    are stalled. A `waiting` run that nobody holds is simply ready.
    """
    if status is RunStatus.RUNNING or status is RunStatus.WAITING:
        if owner is not None:
            if lease_expires is not None and lease_expires < now:
                return RunStatus.STALLED
        elif status is RunStatus.RUNNING:
            return RunStatus.STALLED
    return status


def info_fields(status: RunStatus, note: str | None, wake_at: float | None) -> dict[str, object]:
    """`RunInfo`'s `error`, `waiting_for` and `wake_at`, from a run's stored status, note and timer."""
    return {
        "error": note if status is RunStatus.FAILED else None,
        "waiting_for": tuple(note.split("\n")) if status is RunStatus.SUSPENDED and note else (),
        "wake_at": datetime.fromtimestamp(wake_at, UTC) if status is RunStatus.SUSPENDED and wake_at else None,
    }


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
