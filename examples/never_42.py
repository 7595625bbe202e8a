"""The never-42 graph of pydantic-graph's `Graph` docs: a number is incremented, never to 42.

`Increment` adds one and hands over to `Check42`, which ends the run with the number
unless it is 42, in which case it goes round again. Run from 1 the result is 2; run
from 41 it skips 42 and ends at 43.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from railyard import BaseNode, End, Graph, GraphRunContext


@dataclass
class MyState:
    number: int


@dataclass
class Increment(BaseNode[MyState]):
    async def run(self, ctx: GraphRunContext[MyState]) -> Check42:
        ctx.state.number += 1
        return Check42()


@dataclass
class Check42(BaseNode[MyState, None, int]):
    async def run(self, ctx: GraphRunContext[MyState]) -> Increment | End[int]:
        if ctx.state.number == 42:
            return Increment()
        else:
            return End(ctx.state.number)


never_42_graph = Graph(nodes=(Increment, Check42))


async def main() -> None:
    state = MyState(1)
    result = await never_42_graph.run(Increment(), state=state)
    print(state)
    # > MyState(number=2)
    print(result.output)
    # > 2

    state = MyState(41)
    result = await never_42_graph.run(Increment(), state=state)
    print(state)
    # > MyState(number=43)
    print(result.output)
    # > 43


if __name__ == "__main__":
    asyncio.run(main())
