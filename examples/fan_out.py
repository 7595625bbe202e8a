"""A builder graph: fetch pages in parallel (at most three at a time), join, then decide.

Shows `railyard.builder`: steps, a bounded `.map()`, a join with a reducer, a decision,
and the graph's mermaid diagram.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import anyio

from railyard.builder import GraphBuilder, StepContext, reduce_dict_update

PAGES = {"home": "welcome " * 3, "docs": "read the manual " * 40, "blog": "news " * 10, "about": "who we are"}


@dataclass
class Crawl:
    fetched: list[str] = field(default_factory=list[str])
    busiest: int = 0
    running: int = 0


g = GraphBuilder(state_type=Crawl, input_type=list[str], output_type=str)


@g.step
async def fetch(ctx: StepContext[Crawl, None, str]) -> dict[str, int]:
    crawl = ctx.state
    crawl.running += 1
    crawl.busiest = max(crawl.busiest, crawl.running)
    await anyio.sleep(0.01)  # the network
    crawl.running -= 1
    crawl.fetched.append(ctx.inputs)
    return {ctx.inputs: len(PAGES[ctx.inputs].split())}


sizes = g.join(reduce_dict_update, initial_factory=dict[str, int], node_id="sizes")


@g.step
async def report_big(ctx: StepContext[Crawl, None, dict[str, int]]) -> str:
    big = sorted(name for name, words in ctx.inputs.items() if words > 20)
    return f"big pages: {', '.join(big)}"


@g.step
async def report_small(ctx: StepContext[Crawl, None, dict[str, int]]) -> str:
    return f"all {len(ctx.inputs)} pages are small"


g.add(
    g.edge_from(g.start_node).map(max_concurrency=3).to(fetch),
    g.edge_from(fetch).to(sizes),
    g.edge_from(sizes).to(
        g.decision(note="any page over 20 words?")
        .branch(g.match(dict, matches=lambda s: max(s.values()) > 20).label("yes").to(report_big))
        .branch(g.match(dict).label("no").to(report_small))
    ),
    g.edge_from(report_big, report_small).to(g.end_node),
)
crawl_graph = g.build()


async def main() -> None:
    print(crawl_graph.render(title="crawl"))
    crawl = Crawl()
    result = await crawl_graph.run(state=crawl, inputs=list(PAGES))
    print()
    print(result)
    print(f"fetched {sorted(crawl.fetched)}, at most {crawl.busiest} at a time")


if __name__ == "__main__":
    asyncio.run(main())
