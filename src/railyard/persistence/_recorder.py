"""The recorder that drives a user's `BaseStatePersistence` subclass through its methods."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from railyard.exceptions import GraphRuntimeError
from railyard.nodes import End
from railyard.persistence import BaseStatePersistence
from railyard.runtime._recorder import Outcome
from railyard.runtime._tasks import Task

if TYPE_CHECKING:
    from railyard.suspension import Waiting

__all__ = ("PersistenceRecorder",)


class PersistenceRecorder:
    """Translates run events into `snapshot_node`, `record_run` and `snapshot_end` calls."""

    __slots__ = ("_open", "persistence")

    def __init__(self, persistence: BaseStatePersistence[Any, Any]) -> None:
        self.persistence = persistence
        self._open: dict[str, AbstractAsyncContextManager[None]] = {}

    async def tasks_created(self, tasks: Sequence[Task], state: Any, replaces: Sequence[str] = ()) -> None:
        """Record each task's node unless it is recorded already (a persistence has no notion of `replaces`)."""
        for task in tasks:
            await self.persistence.snapshot_node_if_new(task.task_id, state, task.inputs)

    async def step_started(self, task: Task, state: Any) -> None:
        """Enter `record_run` for the task's snapshot (once: a retried step's attempts share it)."""
        if task.task_id in self._open:
            return
        manager = self.persistence.record_run(task.task_id)
        await manager.__aenter__()
        self._open[task.task_id] = manager

    async def steps_started(self, tasks: Sequence[Task], state: Any) -> None:
        """Enter `record_run` for each task's snapshot, in order."""
        for task in tasks:
            await self.step_started(task, state)

    async def structural_started(self, task: Task, state: Any) -> None:
        """As `step_started`: the persistence sees every step alike."""
        await self.step_started(task, state)

    async def step_finished(self, task: Task, outcome: Outcome, state: Any, duration: float) -> None:
        """Leave `record_run` cleanly, then record what the step led to."""
        await self._close(task, None)
        if isinstance(outcome, End):
            await self.persistence.snapshot_end(state, outcome)
        else:
            for next_task in outcome:
                await self.persistence.snapshot_node(state, next_task.inputs)

    async def step_failed(self, task: Task, error: BaseException, duration: float, attempt: int = 1) -> None:
        """Leave `record_run` with the node's exception."""
        await self._close(task, error)

    async def attempt_failed(
        self, task: Task, error: BaseException, duration: float, attempt: int, retry_at: float
    ) -> None:
        """Nothing yet: the snapshot stays `running` until the step's last attempt ends."""

    async def step_suspended(self, task: Task, waiting: Waiting) -> None:
        """Leave `record_run` as for an interruption: the node runs again once answered."""
        await self._close(task, GraphRuntimeError(f"`{task.node_id}` waits for {waiting.key!r}"))

    async def run_suspended(self, waits: Sequence[Waiting]) -> None:
        """Nothing to record: a persistence has no suspended state."""

    async def join_closed(self, join_id: str, close_id: str, tasks: Sequence[Task], state: Any) -> None:
        """Record the nodes a join's value went on to."""
        for next_task in tasks:
            await self.persistence.snapshot_node(state, next_task.inputs)

    def flush(self) -> None:
        """Nothing to do: every call above has reached the persistence before it returned."""

    async def _close(self, task: Task, error: BaseException | None) -> None:
        manager = self._open.pop(task.task_id, None)
        if manager is None:
            raise GraphRuntimeError(f"Step `{task.task_id}` finished without having started.")
        if error is None:
            await manager.__aexit__(None, None, None)
        else:
            await manager.__aexit__(type(error), error, error.__traceback__)
