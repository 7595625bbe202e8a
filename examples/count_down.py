"""The count-down graph of pydantic-graph's March-2025 docs, run with `railyard.v0`.

Shows `Graph.iter` with `async for`: with the 0.0.x API the loop yields the node each
step returns (not the start node), and `run.history` records every step.
"""

from __future__ import annotations as _annotations

import asyncio
from dataclasses import dataclass

from railyard.v0 import BaseNode, End, Graph, GraphRunContext


@dataclass
class CountDownState:
    counter: int


@dataclass
class CountDown(BaseNode[CountDownState]):
    async def run(self, ctx: GraphRunContext[CountDownState]) -> CountDown | End[int]:
        if ctx.state.counter <= 0:
            return End(ctx.state.counter)
        ctx.state.counter -= 1
        return CountDown()


count_down_graph = Graph(nodes=[CountDown])


async def main() -> None:
    state = CountDownState(counter=3)
    async with count_down_graph.iter(CountDown(), state=state) as run:
        async for node in run:
            print("Node:", node)
            # > Node: CountDown()
            # > Node: CountDown()
            # > Node: CountDown()
            # > Node: End(data=0)
    assert run.result is not None
    print("Final result:", run.result.output)
    # > Final result: 0
    print("History snapshots:", [step.data_snapshot() for step in run.history])
    # > History snapshots: [CountDown(), CountDown(), CountDown(), CountDown(), End(data=0)]


if __name__ == "__main__":
    asyncio.run(main())
