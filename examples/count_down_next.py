"""Driving a run by hand with `GraphRun.next`, as in pydantic-graph's March-2025 docs.

Uses `railyard.v0` and the graph of `count_down.py`; the loop stops early, when the
counter reaches 2, so the run never ends: `run.result` stays `None` and the history
holds only the steps that ran, each with the state after it.
"""

from __future__ import annotations as _annotations

import asyncio

from count_down import CountDown, CountDownState, count_down_graph

from railyard.v0 import End


async def main() -> None:
    state = CountDownState(counter=5)
    async with count_down_graph.iter(CountDown(), state=state) as run:
        node = run.next_node
        while not isinstance(node, End):
            print("Node:", node)
            # > Node: CountDown()
            # > Node: CountDown()
            # > Node: CountDown()
            # > Node: CountDown()
            if state.counter == 2:
                break
            node = await run.next(node)
        print(run.result)
        # > None
        for step in run.history:
            print("History Step:", step.data_snapshot(), step.state)
            # > History Step: CountDown() CountDownState(counter=4)
            # > History Step: CountDown() CountDownState(counter=3)
            # > History Step: CountDown() CountDownState(counter=2)


if __name__ == "__main__":
    asyncio.run(main())
