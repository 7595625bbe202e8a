"""A graph whose nodes give `BaseNode` only a state type (as in the seeds)."""

from __future__ import annotations

from dataclasses import dataclass

from railyard import BaseNode, End, Graph, GraphRunContext


@dataclass
class UntypedState:
    counter: int


@dataclass
class Untyped(BaseNode[UntypedState]):
    async def run(self, ctx: GraphRunContext[UntypedState]) -> Untyped | End[int]:
        return End(ctx.state.counter)


untyped_graph = Graph(nodes=[Untyped])
