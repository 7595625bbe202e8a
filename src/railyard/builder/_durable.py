"""Durable builder runs: the run log of a parallel run, and resuming it after a crash.

Every task's start and finish is recorded in the store, with the tasks it led to and
the state, as for node-API runs; so are the tasks a map pulls and the value a join sends
on when it closes. What a run holds in memory (pending tasks, fork stacks, join values,
maps part-way through) is rebuilt from those records on resume by the one replay every
kind of run shares (`railyard._replay`): a join's value is replayed from the values that
reached it, and a map goes on from its first item not yet handed out. Only branches
that had not finished run again.
"""

from __future__ import annotations

import inspect
import typing
from typing import TYPE_CHECKING, Annotated, Any, get_args

import pydantic

from railyard._replay import Position
from railyard._replay import replay as replay_records
from railyard.builder.join import ItemFailure
from railyard.builder.step import NodeStep, Step
from railyard.durable import decode_run
from railyard.exceptions import GraphMismatchError, RunCancelled, RunEnded
from railyard.store import RunStatus, RunStore
from railyard.store.codec import RecordCodec

if TYPE_CHECKING:
    from railyard.builder.graph import Graph

__all__ = ("builder_codec", "fork_builder_run", "replay")


def builder_codec(graph: Graph[Any, Any, Any, Any]) -> RecordCodec:
    """A codec for a builder graph's records: each task's inputs by its node's input type."""
    adapters: dict[str, pydantic.TypeAdapter[Any]] = {}
    anything: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)
    collecting = graph._program.collecting_joins  # pyright: ignore[reportPrivateUsage]
    # a collecting join's values, or the failures of its map's branches (told apart by their `kind`)
    value_or_failure: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
        Annotated[ItemFailure | Any, pydantic.Field(union_mode="left_to_right")]
    )

    def inputs(node_id: str) -> pydantic.TypeAdapter[Any]:
        adapter = adapters.get(node_id)
        if adapter is None:
            if node_id in collecting:
                adapter = adapters[node_id] = value_or_failure
            else:
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


async def replay(graph: Graph[Any, Any, Any, Any], store: RunStore, run_id: str, deps: Any) -> Position:
    """Read a stored builder run and rebuild its position (the one replay: `railyard._replay`).

    Raises:
        RunNotFound: no such run.
        RunEnded: the run has ended.
        CorruptRunError: a record cannot be decoded.
        GraphMismatchError: the run was created by another graph.
        GraphVersionError: the graph changed in ways the run needs (`railyard.versioning`).
    """
    from railyard.versioning import check_resume, graph_version, stamp

    stored = await store.read(run_id)
    version = graph_version(graph)
    codec = builder_codec(graph)
    due = check_resume(version, store, run_id, stored, codec)  # before decoding: a changed graph may not read it
    records = decode_run(run_id, store, stored, codec, version=version)
    position = replay_records(records, graph._program, deps, run_id)  # pyright: ignore[reportPrivateUsage]
    recorded = position.graph if position.graph is not None else (stored[0].graph if stored else None)
    GraphMismatchError.check(run_id, repr(store), recorded, graph.name)
    if position.cancelled is not None:
        raise RunCancelled(run_id, repr(store), position.cancelled)
    if position.end is not None:
        raise RunEnded(run_id, repr(store))
    if due is not None:  # the run goes on at this version: said before the resumed run writes anything
        await stamp(store, run_id, codec, due, stored[-1].status)
    return position


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
    from railyard.versioning import graph_version

    # refuse a run this graph cannot read
    decode_run(run_id, store, stored, builder_codec(graph), version=graph_version(graph))
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
