"""Typed usage of the builder API, checked by mypy (`./dev test`); not collected by pytest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_type

from railyard.builder import GraphBuilder, StepContext, reduce_list_append
from railyard.runtime._executor import ThreadExecutor
from railyard.store.sqlite import SqliteStore


@dataclass
class State:
    seen: int = 0


g: GraphBuilder[State, None, list[int], list[int]] = GraphBuilder(
    state_type=State, input_type=list[int], output_type=list[int]
)


@g.step
async def double(ctx: StepContext[State, None, int]) -> int:
    assert_type(ctx.inputs, int)
    assert_type(ctx.state, State)
    assert_type(ctx.run_id, str | None)
    ctx.state.seen += 1
    return ctx.inputs * 2


collect = g.join(reduce_list_append, initial_factory=list[int])
g.add(g.edge_from(g.start_node).map().to(double), g.edge_from(double).to(collect), g.edge_from(collect).to(g.end_node))
graph = g.build()


async def typed() -> None:
    result = await graph.run(state=State(), inputs=[1, 2])
    assert_type(result, list[int])


async def typed_durable(store: SqliteStore) -> None:
    result = await graph.run(state=State(), inputs=[1, 2], store=store, run_id="r", executor=ThreadExecutor(2))
    assert_type(result, list[int])
    async with graph.iter(state=State(), inputs=[1], store=store) as run:
        assert_type(run.run_id, str | None)
    assert_type(await graph.resume(store, "r"), list[int])
    assert_type(await graph.fork(store, "r", 2), str)
    assert_type(await graph.initialize(store, state=State(), inputs=[3]), str)
    graph.mermaid_save("diagram.md")
