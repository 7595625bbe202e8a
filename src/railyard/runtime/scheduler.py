"""The scheduler: runs tasks one step at a time and tells the recorder what happened."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Sequence
from time import perf_counter
from typing import Any, Protocol

from opentelemetry import trace

from railyard.exceptions import GraphStepLimitError
from railyard.runtime.recorder import Outcome, Recorder
from railyard.runtime.tasks import Task

__all__ = ("Program", "Scheduler")


class Program(Protocol):
    """A compiled graph: how to execute a task, and where its result leads."""

    @property
    def name(self) -> str | None:
        """The graph's name, for messages and spans."""
        ...

    def execute(self, task: Task, ctx: Any) -> Awaitable[Any]:
        """Run the task's node on its inputs."""
        ...

    def route(self, task: Task, result: Any) -> Outcome:
        """Turn what the node returned into the next tasks, or the end of the run.

        Raises:
            GraphRuntimeError: the result is not something this node may lead to.
        """
        ...


class Scheduler:
    """Drives a run: holds its pending tasks, executes them and records every step.

    The node API keeps at most one task pending; nothing here depends on that.
    """

    __slots__ = ("ctx", "max_steps", "pending", "program", "recorder", "steps", "tracer")

    def __init__(
        self,
        program: Program,
        recorder: Recorder,
        ctx: Any,
        *,
        max_steps: int | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.program = program
        self.recorder = recorder
        self.ctx = ctx
        self.pending: deque[Task] = deque()
        self.steps = 0
        self.max_steps = max_steps
        self.tracer = tracer

    async def step(self, task: Task) -> Outcome:
        """Run one task to completion and record it; return what it leads to.

        The recorder hears `step_started` before the node runs and `step_finished`
        (with the outcome and the new state) before this returns. If the node raises,
        the recorder hears `step_failed` and the exception propagates unchanged.
        """
        self.steps += 1
        if self.max_steps is not None and self.steps > self.max_steps:
            raise GraphStepLimitError(
                f"Graph `{self.program.name}` exceeded max_steps={self.max_steps}: about to run "
                f"`{task.node_id}` as step {self.steps}. Raise max_steps if the run is meant to be "
                f"this long, or check the graph for a loop that never ends.",
                self.max_steps,
            )
        recorder = self.recorder
        ctx = self.ctx
        state = ctx.state
        pending = recorder.step_started(task, state)
        if pending is not None:
            await pending
        start = perf_counter()
        try:
            if self.tracer is None:
                result = await self.program.execute(task, ctx)
            else:
                with self.tracer.start_as_current_span(
                    f"run node {task.node_id}",
                    attributes={"node_id": task.node_id, "node_snapshot_id": task.task_id},
                ):
                    result = await self.program.execute(task, ctx)
            outcome = self.program.route(task, result)
        except BaseException as error:
            pending = recorder.step_failed(task, error, perf_counter() - start)
            if pending is not None:
                await pending
            raise
        pending = recorder.step_finished(task, outcome, state, perf_counter() - start)
        if pending is not None:
            await pending
        return outcome

    def schedule(self, tasks: Sequence[Task]) -> None:
        """Add tasks to the end of the pending queue."""
        self.pending.extend(tasks)
