"""Typed usage of the node API, checked by mypy (`./dev test`); not collected by pytest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, assert_type

from tests.typing.check_builder import graph as builder_graph

import railyard
from railyard import BaseNode, End, FullStatePersistence, Graph, GraphRunContext, GraphRunResult
from railyard.graph import GraphRun
from railyard.runtime._executor import ThreadExecutor
from railyard.store.sqlite import SqliteStore
from railyard.worker import run_worker


@dataclass
class State:
    count: int


@dataclass
class Deps:
    step: int


@dataclass
class Up(BaseNode[State, Deps, int]):
    async def run(self, ctx: GraphRunContext[State, Deps]) -> Up | Done | End[int]:
        assert_type(ctx.state, State)
        assert_type(ctx.deps, Deps)
        assert_type(ctx.run_id, str | None)
        ctx.state.count += ctx.deps.step
        return Done() if ctx.state.count > 3 else Up()


@dataclass
class Done(BaseNode[State, Deps, int]):
    async def run(self, ctx: GraphRunContext[State, Deps]) -> End[int]:
        return End(ctx.state.count)


graph: Graph[State, Deps, int] = Graph(nodes=[Up, Done])


async def typed_run() -> None:
    result = await graph.run(Up(), state=State(0), deps=Deps(1))
    assert_type(result, GraphRunResult[State, int])
    assert_type(result.output, int)
    assert_type(result.state, State)

    async with graph.iter(Up(), state=State(0), deps=Deps(1), persistence=FullStatePersistence()) as run:
        next_node = await run.next()
        assert_type(next_node, BaseNode[State, Deps, Any] | End[int])
        assert_type(run.next_node, BaseNode[State, Deps, int] | End[int])
        async for node in run:
            assert_type(node, BaseNode[State, Deps, int] | End[int])
        assert_type(run.result, GraphRunResult[State, int] | None)


def typed_sync() -> int:
    return graph.run_sync(Up(), state=State(0), deps=Deps(2)).output


end: End[str] = End("x")
assert_type(end.data, str)


inferred = Graph(nodes=(Up, Done))
assert_type(inferred, Graph[State, Deps, int])


async def typed_durable(store: SqliteStore) -> None:
    result = await graph.run(Up(), state=State(0), deps=Deps(1), store=store, run_id="r")
    assert_type(result, GraphRunResult[State, int])
    async with graph.iter(Up(), state=State(0), deps=Deps(1), store=store, executor=ThreadExecutor()) as run:
        assert_type(run.run_id, str | None)
        assert_type(run.ctx, GraphRunContext[State, Deps])
    resumed = await graph.resume(store, "r", deps=Deps(1))
    assert_type(resumed, GraphRunResult[State, int])
    async with graph.iter_resume(store, "r", deps=Deps(1)) as again:
        assert_type(again, GraphRun[State, Deps, int])
    assert_type(await graph.fork(store, "r", 1), str)
    assert_type(await graph.initialize(Up(), store=store, state=State(0)), str | None)
    assert_type(await run_worker([graph, builder_graph], store, deps={"up": Deps(1)}), list[str])


async def typed_top_level_names() -> None:
    # the names `railyard` loads on first use are typed as their modules define them
    assert_type(railyard.SqliteStore, type[SqliteStore])
    assert_type(railyard.ThreadExecutor, type[ThreadExecutor])
    assert railyard.run_worker is run_worker
    store: railyard.RunStore = railyard.open_store("memory:")
    assert_type(await store.runs(status=railyard.RunStatus.ENDED), Sequence[railyard.RunInfo])
    persistence: railyard.DurablePersistence[State, int] = railyard.DurablePersistence(store, "r")
    assert_type(persistence.run_id, str)
