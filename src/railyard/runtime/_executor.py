"""Where a step runs: the seam between the loop and the code of a node.

The loop decides *when* a task runs and records what happened; an `Executor` decides
*where* its node runs. A task goes in, its node's return value (or exception) comes out,
and cancelling the wait cancels the step. In-process on the run's own event loop is the
default; `ThreadExecutor` runs each step on a worker thread; a cluster engine plugs in
here too (`railyard.ray.RayExecutor`).

An executor that runs a step in another process cannot call `run` there: it needs the
step as data. A program's runner may carry a `describe` attribute (see `Describable`)
that gives one attempt of a step as a `StepCall`: the code to run, the values it runs
on, and the context fields it needs. `InProcessExecutor` never looks at it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.to_thread

from railyard.runtime._tasks import Task

__all__ = ("Describable", "Executor", "InProcessExecutor", "StepCall", "StepFunction", "ThreadExecutor")

StepFunction = Callable[[Task], Awaitable[Any]]
"""Runs a task's node and returns an awaitable of what it returned (the loop's `call`)."""


@dataclass(frozen=True, slots=True)
class StepCall:
    """One attempt of a step as data: what an executor needs to run it in another process.

    The step is either a function called with a builder `StepContext` (`function` set) or
    a node whose `run` is called with a `GraphRunContext` (`function` is `None`, `inputs`
    is the node). `state` is the run's own state object: an executor that runs the step
    elsewhere ships a copy and applies the copy's changes to it before it returns.
    """

    node_id: str
    """The step's node id."""
    function: Callable[..., Any] | None
    """The step's function (called with a `StepContext`), or `None` for a node (`inputs.run(ctx)`)."""
    inputs: Any
    """The value the step runs on (for a node: the node instance)."""
    state: Any
    """The run's state (the object itself, not a copy)."""
    state_type: Any
    """The type the state is read and written as (`None` when the run has none)."""
    deps: Any
    """The run's dependencies."""
    step_id: str
    """The step's id (the same on every attempt)."""
    run_id: str | None
    """The durable run's id (`None` in memory)."""
    attempt: int
    """Which attempt this is, from 1."""


class Describable(Protocol):
    """A `StepFunction` that can also give a step as data (a program's runner may be one)."""

    def __call__(self, task: Task, /) -> Awaitable[Any]:
        """Run the task's node here."""
        ...

    def describe(self, task: Task, /) -> StepCall | None:
        """The attempt `self(task)` would run, as data; `None` for a step that cannot leave the process."""
        ...


class Executor(Protocol):
    """Runs the nodes of a run's tasks.

    The loop calls `bind` once per run; it calls the function `bind` returns once per
    step attempt, from the run's event loop, and awaits what it returns. Contract:

    - The awaitable resolves to what the task's node returned, or raises its exception
      unchanged.
    - Cancelling the task that awaits it cancels the step; once the cancellation is
      delivered, the executor must not deliver the step's result later (the loop drops
      the task, and a durable run re-runs it on resume with the same step id).
    - The step may mutate the run's state; an executor that runs it elsewhere must bring
      those changes back before the awaitable resolves.
    """

    def bind(self, run: StepFunction) -> StepFunction:
        """The function the loop calls to run a task's node, given `run`, which runs it here.

        Called once per run. `InProcessExecutor` returns `run` itself; an executor that
        runs steps elsewhere returns a function that ships the task there and awaits it.
        """
        ...


class InProcessExecutor:
    """Runs each step in this process, on the run's own event loop: the default.

    It adds nothing to a step: `execute` returns the node's own coroutine, so on asyncio
    a step that never waits finishes without a task of its own.
    """

    __slots__ = ()

    def bind(self, run: StepFunction) -> StepFunction:
        """`run` itself: the loop awaits the node's own coroutine."""
        return run

    def __repr__(self) -> str:
        return "InProcessExecutor()"


class ThreadExecutor:
    """Runs each step on a worker thread, in an event loop of its own.

    For steps that block (CPU-bound work, a blocking client): the run's event loop stays
    free while they run, and up to `max_workers` of them run at once. A step's changes to
    the state are seen by the run (the thread shares this process's memory). A cancelled
    step runs on to its end on its thread; its result is dropped.
    """

    __slots__ = ("max_workers",)

    def __init__(self, max_workers: int = 8) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(
                f"ThreadExecutor(max_workers=...) must be a whole number of at least 1, got {max_workers!r}"
            )
        self.max_workers = max_workers
        """At most this many steps of a run run at once, each on its own thread."""

    def bind(self, run: StepFunction) -> StepFunction:
        """A function that runs `run(task)` on a worker thread and waits for it (one limit per run)."""
        limiter: anyio.CapacityLimiter | None = None

        async def on_a_thread(task: Task) -> Any:
            nonlocal limiter
            if limiter is None:  # made on the run's own event loop
                limiter = anyio.CapacityLimiter(self.max_workers)
            return await anyio.to_thread.run_sync(_run_in_own_loop, run, task, limiter=limiter)

        return on_a_thread

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"


def _run_in_own_loop(run: StepFunction, task: Task) -> Any:
    async def step() -> Any:
        return await run(task)

    coroutine: Coroutine[Any, Any, Any] = step()
    return asyncio.run(coroutine)
