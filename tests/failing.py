"""A graph whose node raises."""

from __future__ import annotations

from dataclasses import dataclass

from railyard import BaseNode, End, Graph, GraphRunContext


@dataclass
class Boom(BaseNode[None, None, int]):
    async def run(self, ctx: GraphRunContext[None]) -> End[int]:
        raise ValueError("boom!")


boom_graph = Graph(nodes=[Boom])
