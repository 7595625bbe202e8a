"""`run_child`'s types, checked by mypy (strict): the child's output type comes back, from every context.

A wrong use carries a `# type: ignore[code]`, which `warn_unused_ignores` turns into a
failure the day the error is no longer reported. Nothing here is run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_type

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.agent import Agent, RunContext
from railyard.builder import GraphBuilder, StepContext


@dataclass
class Basket:
    items: list[str]


@dataclass
class Weigh(BaseNode[Basket, None, float]):
    async def run(self, ctx: GraphRunContext[Basket]) -> End[float]:
        return End(float(len(ctx.state.items)))


weighing = Graph(nodes=[Weigh], name="weighing")

g: GraphBuilder[None, str, list[str], int] = GraphBuilder(
    name="counting", deps_type=str, input_type=list[str], output_type=int
)


@g.step
async def count(ctx: StepContext[None, str, list[str]]) -> int:
    return len(ctx.inputs)


g.add(g.edge_from(g.start_node).to(count), g.edge_from(count).to(g.end_node))
counting = g.build()

advisor = Agent(deps_type=int, result_type=bool, name="advisor")


async def in_a_node(ctx: GraphRunContext[None, None]) -> None:
    assert_type(await ctx.run_child(weighing, Weigh(), state=Basket(["a"])), float)
    assert_type(await ctx.run_child(counting, inputs=["a", "b"], deps="eu"), int)
    assert_type(await ctx.run_child(advisor, "buy?", deps=3, key="advice"), bool)


async def in_a_step(ctx: StepContext[None, None, str]) -> None:
    assert_type(await ctx.run_child(weighing, Weigh(), state=Basket([ctx.inputs])), float)
    assert_type(await ctx.run_child(counting, inputs=[ctx.inputs], deps="eu"), int)
    assert_type(await ctx.run_child(advisor, ctx.inputs, deps=1), bool)


async def in_a_tool(ctx: RunContext[int]) -> None:
    assert_type(await ctx.run_child(counting, inputs=["a"], deps="eu"), int)
    assert_type(await ctx.run_child(advisor, "again?", deps=ctx.deps), bool)


async def wrong(ctx: GraphRunContext[None, None]) -> None:
    await ctx.run_child(counting, inputs=[1, 2], deps="eu")  # type: ignore[misc]  # not the graph's input type
    await ctx.run_child(weighing, Weigh(), state=3)  # type: ignore[misc]  # not the graph's state type
    await ctx.run_child(counting, ["a"])  # type: ignore[call-overload]  # a builder's inputs go by keyword
    await ctx.run_child(advisor, "buy?", deps="three")  # type: ignore[misc]  # not the agent's deps type
    await ctx.run_child(weighing)  # type: ignore[call-overload]  # a node graph needs its start node
