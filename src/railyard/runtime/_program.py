"""What a front end compiles a graph to: a `Program`, which the loop runs.

A program answers the loop's questions about its graph's nodes — what kind of work a
task is, how to run it, where its result leads, how a join combines its branches —
and holds no run's data: everything about one run lives in the `Loop`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from railyard.retries import RetryPolicy
from railyard.runtime._end import End
from railyard.runtime._tasks import ForkStack, Task

if TYPE_CHECKING:
    from railyard.runtime._joins import JoinState
    from railyard.runtime._loop import Loop

__all__ = ("HasContext", "MapItems", "NodeKind", "Program", "Routed", "StepRules")


class NodeKind(Enum):
    """How the loop runs a task of a node."""

    STEP = "step"
    """User code: handed to the run's `Executor`, may wait, runs beside other steps."""
    INLINE = "inline"
    """Structure that never waits (a fork, a decision, the start or end): run by the loop itself."""
    JOIN = "join"
    """A join: the task's value is reduced into the join's accumulator for its fork."""


@dataclass(frozen=True, slots=True)
class MapItems:
    """A step's result fans out: one branch per item, pulled from `items` as capacity allows."""

    fork_id: str
    """The node id of the map (its branches' fork stack item names it)."""
    items: Iterable[Any] | AsyncIterable[Any]
    """The items; an async iterable is pulled by a task of its own."""
    max_concurrency: int | None
    """At most this many of the map's branches at once (`None`: only the run's limit)."""
    downstream_join_id: str | None
    """The join that collects the branches: it still closes (on its initial value) when there are no items."""


class HasContext(Protocol):
    """What a reducer needs of its run: the context (`state`, `deps`, `run_id`)."""

    @property
    def ctx(self) -> Any:
        """The run's context."""
        ...


Routed = Sequence[Task] | MapItems | End[Any]
"""Where a finished task leads: the next tasks, a map's items, or the end of the run."""

StepRules = tuple[RetryPolicy | None, float | None]
"""A step's retry policy and its timeout per attempt, in seconds; a program may give them in
`step_rules: dict[node id, StepRules]` (a step absent from it runs once, without a timeout)."""


class Program(Protocol):
    """A compiled graph: how to run a task, and where its result leads.

    Every method is called by the loop that runs the graph; `run` is that loop, for the
    run's state, dependencies and new task ids. None of them may block.
    """

    @property
    def name(self) -> str | None:
        """The graph's name, for messages and spans."""
        ...

    @property
    def kinds(self) -> Mapping[str, NodeKind]:
        """How the loop runs a task, by its node id."""
        ...

    def runner(self, run: Loop) -> Callable[[Task], Awaitable[Any]]:
        """The function that runs a `STEP` task's node on its inputs, in run `run` (called once per run).

        The executor is handed this function: what it returns is the node's own awaitable.
        """
        ...

    def inline(self, task: Task, run: Loop) -> Any:
        """The value of an `INLINE` task (routed on like a step's result)."""
        ...

    def route(self, task: Task, result: Any, run: Loop) -> Routed:
        """Turn what a task's node returned into the next tasks, a map's items, or the end.

        Raises:
            GraphRuntimeError: the result is not something this node may lead to.
        """
        ...

    def follow(self, source_id: str, value: Any, fork_stack: ForkStack, run: Loop) -> list[Task]:
        """The tasks `value` leads to when it leaves `source_id` (a map's item, a join's value)."""
        ...

    def join_key(self, join_id: str, fork_stack: ForkStack) -> tuple[tuple[str, str], ForkStack]:
        """The join instance a value arriving at `join_id` belongs to, and the fork stack its value goes on with."""
        ...

    def join_initial(self, join_id: str) -> Any:
        """The value a join starts from."""
        ...

    def map_spec(self, task: Task) -> MapItems | None:
        """The map a finished `task` began (its items as a list, read from the log), or `None`.

        The replay asks this of every finished task, to go on with maps part-way through.
        """
        ...

    def reduce(self, task: Task, state: JoinState, run: HasContext, cancel: Any) -> Any:
        """Combine a `JOIN` task's value into `state.current` and return the new value.

        `cancel()` stops the other branches of the join's fork (first-value joins).
        """
        ...

    def error_note(self, task: Task) -> str | None:
        """A note added to a step's exception, naming where it was raised (or `None`)."""
        ...
