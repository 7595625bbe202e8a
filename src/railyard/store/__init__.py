"""The run log: one append-only Protocol that every backend implements.

A run is a sequence of records (`railyard.store.records`). Backends keep them as JSON
(`StoredRecord.body`, written by `railyard.store.codec.RecordCodec`) with a little
metadata, so that a backend never needs the graph's Python types:

- `railyard.store.memory.MemoryStore`: in this process.
- `railyard.store.file.FileStore`: one JSON Lines file per run.
- `railyard.store.sqlite.SqliteStore`: one SQLite database for many runs (the embedded default).
- `railyard.store.postgres.PostgresStore`: PostgreSQL, for many workers on many machines.

pydantic-graph's persistence classes and the seeds' history are views over a run's
records (`railyard.durable.DurablePersistence` for the durable stores), not storage of
their own. `railyard.testing.check_store` is the conformance suite every backend passes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from railyard.store._deltas import PatchError as StatePatchError
from railyard.store._deltas import StateRebuild as StateReader
from railyard.store.records import (
    ErrorInfo,
    RunRecord,
    RunStatus,
    StepFailed,
    StepFinished,
    StepStarted,
    TaskClaimed,
    TasksScheduled,
)
from railyard.store.summary import (  # noqa: F401 - summarize: importable, not public
    Lease,
    RunDetail,
    RunInfo,
    fold_note,
    info_fields,
    reported_status,
    summarize,
)

# `info_from_stored` (below) and `summarize` help the backends summarize a run; they are
# importable from here but not public API, so not listed.
__all__ = (
    "ErrorInfo",
    "RunDetail",
    "RunInfo",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "StatePatchError",
    "StateReader",
    "StepFailed",
    "StepFinished",
    "StepStarted",
    "StoredRecord",
    "TaskClaimed",
    "TasksScheduled",
)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record as a backend keeps it: its JSON, and what it says about the run."""

    kind: str
    """The record's kind: `tasks_scheduled`, `task_claimed`, `step_started`, `step_finished`
    or `step_failed`."""
    body: str
    """The record as JSON (see `RecordCodec`)."""
    status: RunStatus
    """The run's status once this record is written."""
    node_id: str | None
    """The node the record is about, if any."""
    finishes_step: bool
    """Whether the record finishes a step (counted in `RunInfo.steps`)."""
    ts: float
    """When the record was made, as a POSIX timestamp."""
    graph: str | None = None
    """The name of the run's graph, on a run's first record (`None` elsewhere, or if it has none)."""


def info_from_stored(
    run_id: str, records: Sequence[StoredRecord], lease: Lease | None = None, now: float | None = None
) -> RunInfo:
    """Summarize a run from its stored records (and its lease, as the store keeps it)."""
    from time import time

    last_node = next((r.node_id for r in reversed(records) if r.node_id is not None), None)
    stored = records[-1].status if records else RunStatus.CREATED
    note, wake_at = fold_note(None, None, None, records)
    owner = lease.owner if lease is not None else None
    expires = lease.expires if lease is not None and lease.owner is not None else None
    return RunInfo(
        run_id=run_id,
        status=reported_status(stored, owner, expires, time() if now is None else now),
        started_at=datetime.fromtimestamp(records[0].ts, UTC) if records else None,
        steps=sum(1 for r in records if r.finishes_step),
        last_node=last_node,
        graph=records[0].graph if records else None,
        updated_at=datetime.fromtimestamp(records[-1].ts, UTC) if records else None,
        owner=owner,
        lease_expires=datetime.fromtimestamp(expires, UTC) if expires is not None else None,
        cancel_requested=(
            lease.cancel_requested
            if lease is not None and stored not in (RunStatus.ENDED, RunStatus.CANCELLED)
            else None
        ),
        **info_fields(stored, note, wake_at),  # type: ignore[arg-type]  # the fields' own types
    )


class RunStore(Protocol):
    """An append-only log of graph runs.

    Records are appended, never changed; a run's status, step count and last node follow
    from its records. Every method may be called from any task; `lock` is what keeps two
    drivers from advancing one run.
    """

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create a run holding `records`, atomically: afterwards the run exists with all of them.

        Raises:
            RunExists: the store already has a run with this id (it is left unchanged).
        """
        ...

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append records to a run, all or none.

        Raises:
            RunNotFound: the store has no run with this id.
        """
        ...

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """All records of a run, in the order they were appended.

        Raises:
            RunNotFound: the store has no run with this id.
            CorruptRunError: a stored record is damaged (the message names the run and record).
        """
        ...

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
        """Summaries of the stored runs, oldest first: filtered by status, graph and start time, and paged.

        A run cut off mid-way whose driver's lease ran out is reported `RunStatus.STALLED`.
        `cursor` is the run id of the last run of the previous page.

        Raises:
            ValueError: an argument is out of range, or the cursor names no run.
        """
        ...

    async def delete(self, run_id: str) -> None:
        """Delete a run with its records, its lease and its lock artefacts.

        Raises:
            RunNotFound: the store has no such run.
            RunLocked: a driver holds it (nothing is deleted).
        """
        ...

    async def prune(
        self, *, older_than: timedelta | float, status: RunStatus | Collection[RunStatus] = ...
    ) -> list[str]:
        """Delete the runs with `status` (ended or cancelled by default) unchanged for `older_than`; return the ids."""
        ...

    async def request_cancel(self, run_id: str, reason: str) -> None:
        """Ask the driver holding a run to cancel it at its next step boundary.

        Raises:
            RunNotFound: the store has no such run.
        """
        ...

    async def run(self, run_id: str) -> RunDetail:
        """One run in full: its summary, when it last changed, its error with the traceback, what it waits for.

        Raises:
            RunNotFound: the store has no such run.
        """
        ...

    def lock(self, run_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the run exclusively while driving it; released on exit, or when the process dies.

        Raises:
            RunLocked: another driver holds the run (raised on entering, without waiting).
        """
        ...

    async def claim(
        self,
        *,
        statuses: Collection[RunStatus] = ...,
        exclude: Collection[str] = (),
        graphs: Collection[str | None] | None = None,
    ) -> str | None:
        """Lock a run that is ready to go on and return its id (`None` if there is none).

        By default a run is ready when it is created, waiting, or was cut off mid-step;
        runs whose driver is alive, and runs in `exclude`, are skipped. With `graphs`,
        only runs of those graphs are claimed (`None` in it: runs whose graph was not
        recorded). `lock(run_id)` on this store takes the claim over.
        """
        ...

    async def release_claim(self, run_id: str) -> None:
        """Give up a claim without driving the run."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections and files."""
        ...
