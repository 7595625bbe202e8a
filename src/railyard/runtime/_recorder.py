"""What the loop tells the run log, one call per event of a run."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from railyard.runtime._end import End
from railyard.runtime._tasks import Task

if TYPE_CHECKING:
    from railyard.suspension import Waiting

__all__ = ("Outcome", "Recorder")

Outcome = Sequence[Task] | End[Any]
"""What a finished step leads to: the tasks to run next, or the end of the run."""


class Recorder(Protocol):
    """Receives a run's events in order; implemented over a run store or a persistence.

    A method either records the event before it returns (and returns `None`), or returns
    an awaitable that records it. A durable recorder may queue an event instead and
    commit it with a later one (group commit), within one rule: `step_started` and
    `step_failed` are durable, with every event before them, when their awaitable
    returns, and so is everything told before `flush`, which the loop calls whenever it
    hands control back to its caller. A step therefore never starts before what it
    depends on is durable, and no caller sees a step's outcome before it is durable.
    In-memory recorders return `None`: the per-step path then awaits nothing extra.
    """

    def tasks_created(self, tasks: Sequence[Task], state: Any, replaces: Sequence[str] = ()) -> Awaitable[None] | None:
        """`tasks` were scheduled from outside a step (the start of a run, `next(node)`, a map's items).

        `replaces`: the ids of tasks scheduled before, never started, that these take the
        place of (a caller's `next(...)` with other tasks): a replay must not run them.
        """
        ...

    def step_started(self, task: Task, state: Any) -> Awaitable[None] | None:
        """`task` starts running now.

        Raises:
            GraphNodeStatusError: the task already ran, or is running elsewhere.
        """
        ...

    def steps_started(self, tasks: Sequence[Task], state: Any) -> Awaitable[None] | None:
        """`tasks` start running side by side now (as `step_started` for each, in one commit).

        Raises:
            GraphNodeStatusError: a task already ran, or is running elsewhere.
        """
        ...

    def structural_started(self, task: Task, state: Any) -> Awaitable[None] | None:
        """A task the loop runs itself (a fork, a decision, a join's reduction) starts now.

        Such a task has no effect outside the run and is replayed from the log, so a durable
        recorder need not commit its start before it runs (it may queue it).
        """
        ...

    def step_finished(self, task: Task, outcome: Outcome, state: Any, duration: float) -> Awaitable[None] | None:
        """`task` returned, leading to `outcome`; `state` is the state after it.

        A step whose result fans out over a map leads to no tasks here: the map's items
        are told to `tasks_created` as they are pulled.
        """
        ...

    def step_failed(
        self, task: Task, error: BaseException, duration: float, attempt: int = 1
    ) -> Awaitable[None] | None:
        """`task` raised `error` on its last attempt (`attempt`); the run stops and the error propagates."""
        ...

    def attempt_failed(
        self, task: Task, error: BaseException, duration: float, attempt: int, retry_at: float
    ) -> Awaitable[None] | None:
        """Attempt `attempt` of `task` raised `error`; it runs again at `retry_at` (durable before the wait)."""
        ...

    def step_suspended(self, task: Task, waiting: Waiting) -> Awaitable[None] | None:
        """`task` waits for a signal (`waiting`); the run stops (durable before `RunSuspended` propagates)."""
        ...

    def run_suspended(self, waits: Sequence[Waiting]) -> Awaitable[None] | None:
        """Nothing can go on but the waiting steps: the run is suspended (durable before `RunSuspended`)."""
        ...

    def join_closed(self, join_id: str, close_id: str, tasks: Sequence[Task], state: Any) -> Awaitable[None] | None:
        """Join `join_id` closed (every branch of its fork had arrived): its value went on to `tasks`."""
        ...

    def flush(self) -> Awaitable[None] | None:
        """Make every event told so far durable (`None`: nothing is waiting)."""
        ...
