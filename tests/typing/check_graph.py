"""Typed usage of the node API, checked by mypy (`./dev test`); not collected by pytest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_type

from railyard import BaseNode, End, FullStatePersistence, Graph, GraphRunContext, GraphRunResult


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
