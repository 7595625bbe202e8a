"""Durable builder runs: the run log of a parallel run, and resuming it after a crash.

Every task's start and finish is recorded in the store, with the tasks it led to and
the state, as for node-API runs; so are the tasks a map pulls and the value a join sends
on when it closes. What a run holds in memory (pending tasks, fork stacks, join values,
maps part-way through) is rebuilt from those records on resume: a join's value is
replayed from the values that reached it, and a map goes on from its first item not yet
handed out. Only branches that had not finished run again.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

import pydantic

from railyard._copy import deep_copy
from railyard.builder.join import Join, ReducerContext
from railyard.builder.node import Fork
from railyard.builder.step import NodeStep, Step
from railyard.durable import decode_run
from railyard.exceptions import RunEnded
from railyard.runtime._joins import JoinState, closing_id
from railyard.runtime._tasks import ForkStack, Task
from railyard.store import RunStatus, RunStore
from railyard.store.codec import RecordCodec
from railyard.store.records import JoinClosed, StepFinished, TasksScheduled

if TYPE_CHECKING:
    from railyard.builder.graph import Graph

__all__ = ("ResumePoint", "builder_codec", "fork_builder_run", "replay")


def builder_codec(graph: Graph[Any, Any, Any, Any]) -> RecordCodec:
    """A codec for a builder graph's records: each task's inputs by its node's input type."""
    adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
    anything: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)

    def inputs(node_id: str) -> pydantic.TypeAdapter[Any]:
        adapter = adapters.get(node_id)
        if adapter is None:
            adapter = adapters[node_id] = _input_adapter(graph.nodes.get(node_id)) or anything
        return adapter

    node_classes = [node.node_type for node in graph.nodes.values() if isinstance(node, NodeStep)]
    return RecordCodec(node_classes, graph.state_type, graph.output_type, inputs=inputs)


def _input_adapter(node: Any) -> pydantic.TypeAdapter[Any] | None:
    if isinstance(node, NodeStep):
        return pydantic.TypeAdapter(node.node_type)
    if isinstance(node, Step) and not node.stream:
        try:
            hints = typing.get_type_hints(node.call)
            parameter = next(iter(inspect.signature(node.call).parameters))
        except Exception:  # unresolvable hints: fall back to plain JSON values
            return None
        args = get_args(hints.get(parameter))
        if len(args) == 3:
            try:
                return pydantic.TypeAdapter(args[2])
            except pydantic.PydanticSchemaGenerationError:
                return None
    return None


@dataclass
class ResumePoint:
    """Where a stored builder run stands: what to run next and what is held open."""

    state: Any
    pending: list[Task] = field(default_factory=list[Task])
    joins: dict[tuple[str, str], JoinState] = field(default_factory=dict[tuple[str, str], JoinState])
    closed: set[str] = field(default_factory=set[str])
    maps: list[tuple[Fork, list[Any], ForkStack, str, int]] = field(default_factory=list)
    next_task_number: int = 1


async def replay(graph: Graph[Any, Any, Any, Any], store: RunStore, run_id: str, deps: Any) -> ResumePoint:
    """Rebuild a stored builder run's position from its records.

    Raises:
        RunNotFound: no such run.
        RunEnded: the run has ended.
        CorruptRunError: a record cannot be decoded.
    """
    from railyard.builder._program import join_key

    stored = await store.read(run_id)
    records = decode_run(run_id, store, stored, builder_codec(graph))
    tasks: dict[str, Task] = {}
    finished: list[str] = []
    finished_set: set[str] = set()
    closed: set[str] = set()
    state: Any = None
    for record in records:
        if isinstance(record, TasksScheduled):
            state = record.state
            for task in record.tasks:
                tasks.setdefault(task.task_id, task)
        elif isinstance(record, StepFinished):
            state = record.state if record.state is not None else state
            if record.end is not None:
                raise RunEnded(run_id, repr(store))
            finished.append(record.task_id)
            finished_set.add(record.task_id)
            for task in record.next_tasks:
                tasks.setdefault(task.task_id, task)
        elif isinstance(record, JoinClosed):
            state = record.state
            closed.add(record.close_id)
            for task in record.next_tasks:
                tasks.setdefault(task.task_id, task)
    point = ResumePoint(state=state)
    point.closed = closed
    scratch = _Scratch(deep_copy(state), deps)
    for task_id in finished:  # replay every value that reached a join, in order
        reached = tasks.get(task_id)
        node = graph.nodes.get(reached.node_id) if reached is not None else None
        if reached is None or not isinstance(node, Join):
            continue
        key, downstream = join_key(graph, node.id, reached.fork_stack)
        if closing_id(*key) in point.closed:
            continue
        join_state = point.joins.get(key)
        if join_state is None:
            join_state = point.joins[key] = JoinState(node.initial_factory(), downstream)
        context: ReducerContext[Any] = ReducerContext(
            state=scratch.state, deps=scratch.deps, join_state=join_state, cancel=_no_cancel
        )
        join_state.current = node.reduce(context, join_state.current, reached.inputs)
    cut_short = {key[1] for key, join_state in point.joins.items() if join_state.cancelled_sibling_tasks}
    for task_id, task in tasks.items():
        if task_id in finished_set or any(item.node_run_id in cut_short for item in task.fork_stack):
            continue
        point.pending.append(task)
    for task_id in finished:  # maps part-way through go on from their first item not handed out
        fork_task = tasks.get(task_id)
        fork = graph.nodes.get(fork_task.node_id) if fork_task is not None else None
        if fork_task is None or not isinstance(fork, Fork) or not fork.is_map or task_id in cut_short:
            continue
        if any(item.node_run_id in cut_short for item in fork_task.fork_stack):
            continue
        items = list(fork_task.inputs) if fork_task.inputs is not None else []
        handed_out = [
            t.fork_stack[-1].thread_index
            for t in tasks.values()
            if t.fork_stack and t.fork_stack[-1].node_run_id == task_id
        ]
        start = max(handed_out) + 1 if handed_out else 0
        if start < len(items) or (not items and fork.downstream_join_id is not None):
            point.maps.append((fork, items[start:], fork_task.fork_stack, task_id, start))
    numbers = [int(t.split(":")[1]) for t in tasks if t.startswith("task:") and t.split(":")[1].isdigit()]
    point.next_task_number = max(numbers, default=0) + 1
    return point


@dataclass
class _Scratch:
    """State for replaying reducers (the real state comes from the latest record)."""

    state: Any
    deps: Any


def _no_cancel() -> None:
    """Cancelling siblings while replaying: they are dropped from the pending tasks instead."""


async def fork_builder_run(
    graph: Graph[Any, Any, Any, Any], store: RunStore, run_id: str, at_step: int, *, new_run_id: str | None = None
) -> str:
    """Copy stored run `run_id` as it stood after `at_step` finished steps into a new run; return its id.

    The new run's records are the old run's up to its `at_step`-th finished step (for
    step 0, those before the first): resuming it rebuilds the position the old run had
    then. The old run is not changed.

    Raises:
        ValueError: the run has no step `at_step`, or had ended by then.
        CorruptRunError: a record cannot be read with this graph's types.
    """
    from railyard._ids import new_hex_id

    stored = list(await store.read(run_id))
    decode_run(run_id, store, stored, builder_codec(graph))  # refuse a run this graph cannot read
    finished = [index for index, record in enumerate(stored) if record.finishes_step]
    if at_step == 0:
        cut = finished[0] if finished else len(stored)
    elif 0 < at_step <= len(finished):
        cut = finished[at_step - 1] + 1
    else:
        raise ValueError(f"Run {run_id!r} has {len(finished)} finished steps; cannot fork at step {at_step}.")
    copied = stored[:cut]
    if copied and copied[-1].status == RunStatus.ENDED:
        raise ValueError(f"Step {at_step} of run {run_id!r} ended the run; fork from an earlier step.")
    new_id = new_run_id if new_run_id is not None else new_hex_id()
    await store.create(new_id, copied)
    return new_id
