"""Code the backends share: the driver lock and claiming a run that is ready to go on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio

from railyard.exceptions import RunLocked
from railyard.store import RunStatus, StoredRecord
from railyard.store.summary import RunDetail, RunInfo

__all__ = ("READY", "LockingStore", "Release", "describe_run")

Release = Callable[[], Awaitable[None]]
"""Releases a run's lock."""

READY: frozenset[RunStatus] = frozenset({RunStatus.CREATED, RunStatus.WAITING, RunStatus.RUNNING})
"""Statuses of runs a worker may pick up: not started, between steps, or cut off mid-step
(a run whose driver is alive holds its lock, so claiming skips it)."""


class LockingStore(ABC):
    """Base of the backends: `lock` and `claim` on top of a backend's `_try_lock`.

    A backend implements `_try_lock(run_id)`, which takes the run's lock without waiting
    and returns the function that releases it (or `None` when another holder has it).
    """

    def __init__(self) -> None:
        self._claimed: dict[str, Release] = {}

    @abstractmethod
    async def _try_lock(self, run_id: str) -> Release | None:
        """Take the run's lock without waiting; return its release, or `None` if it is held."""

    @abstractmethod
    async def runs(self, *, status: RunStatus | None = None) -> Sequence[RunInfo]:
        """Summaries of the stored runs."""

    @abstractmethod
    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """All records of a run, in the order they were appended."""

    async def run(self, run_id: str) -> RunDetail:
        """One run in full: its summary, when it last changed, its error (with the traceback), what it waits for.

        Raises:
            RunNotFound: the store has no such run.
            CorruptRunError: a stored record is damaged.
        """
        return describe_run(run_id, await self.read(run_id))

    @asynccontextmanager
    async def lock(self, run_id: str) -> AsyncIterator[None]:
        """Hold the run exclusively while driving it (taking over a claim this store made).

        Raises:
            RunLocked: another driver holds the run.
        """
        release = self._claimed.pop(run_id, None) or await self._try_lock(run_id)
        if release is None:
            raise RunLocked(run_id, repr(self))
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled driver still lets go of its run
                await release()

    async def claim(
        self,
        *,
        statuses: Collection[RunStatus] = READY,
        exclude: Collection[str] = (),
        graphs: Collection[str | None] | None = None,
    ) -> str | None:
        """Lock a run that is ready to go on and return its id (`None` if there is none).

        Runs in `exclude` are passed over, and with `graphs`, runs of other graphs. The claim is taken over by the next
        `lock(run_id)` on this store (for instance by
        `graph.resume(DurablePersistence(store, run_id))`); `release_claim` gives it up.
        """
        for info in await self.runs():
            if info.status not in statuses or info.run_id in self._claimed or info.run_id in exclude:
                continue
            if graphs is not None and info.graph not in graphs:
                continue
            release = await self._try_lock(info.run_id)
            if release is None:
                continue
            try:
                current = [i for i in await self.runs() if i.run_id == info.run_id]
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await release()
                raise
            if current and current[0].status in statuses:  # still ready, now that it is ours
                self._claimed[info.run_id] = release
                return info.run_id
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


def describe_run(run_id: str, records: Sequence[StoredRecord]) -> RunDetail:
    """A run's `RunDetail`, read from its stored records (their JSON bodies, without the graph's types)."""
    import json

    from railyard.store import info_from_stored
    from railyard.store.records import ErrorInfo

    info = info_from_stored(run_id, records)
    error: ErrorInfo | None = None
    attempts = 0
    waits: dict[str, None] = {}
    cancel_reason: str | None = None
    for record in records:
        if record.kind == "step_failed":
            body = json.loads(record.body)
            if body.get("retry_at") is not None:
                attempts += 1
            else:
                error = ErrorInfo(**body["error"])
        elif record.kind in ("step_finished", "run_ended"):
            error = None  # resumed after the failure, and went on
        elif record.kind == "step_suspended":
            waits[json.loads(record.body)["key"]] = None
        elif record.kind == "signal_received":
            waits.pop(json.loads(record.body)["key"], None)
        elif record.kind == "run_cancelled":
            cancel_reason = json.loads(record.body)["reason"]
    return RunDetail(
        info=info,
        updated_at=datetime.fromtimestamp(records[-1].ts, UTC) if records else None,
        error=error if info.status is RunStatus.FAILED else None,
        attempts=attempts,
        waiting_for=tuple(waits) if info.status is RunStatus.SUSPENDED else (),
        cancel_reason=cancel_reason,
    )
