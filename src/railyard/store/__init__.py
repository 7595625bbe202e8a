"""The run log: one append-only Protocol, and the records every backend stores.

Backends (memory here; files, SQLite and PostgreSQL alongside) implement `RunStore`.
pydantic-graph's persistence classes and the seeds' history are views over a run's
records, not separate storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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
from railyard.store.summary import RunInfo, summarize

__all__ = (
    "ErrorInfo",
    "RunInfo",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "StepFailed",
    "StepFinished",
    "StepStarted",
    "TaskClaimed",
    "TasksScheduled",
    "summarize",
)


class RunStore(Protocol):
    """An append-only log of graph runs."""

    async def append(self, run_id: str, records: Sequence[RunRecord]) -> None:
        """Append records to a run, all or none; a record is never changed once written."""
        ...

    async def read(self, run_id: str) -> Sequence[RunRecord]:
        """All records of a run, in the order they were appended (empty if none)."""
        ...

    async def runs(self, *, status: RunStatus | None = None) -> Sequence[RunInfo]:
        """Summaries of the stored runs, optionally only those with `status`."""
        ...
