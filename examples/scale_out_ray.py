"""Scale a CPU-heavy map out to a Ray cluster while this process keeps the run's durable log.

The map's branches (`crunch`, each a second of pure Python work at full size) run as Ray
tasks, one CPU each; the rest of the graph (the split, the join, the report) runs here,
and so does the run log: each branch's result is recorded here as it comes back, so a
driver killed mid-map resumes with only the unfinished branches sent again.

    python examples/scale_out_ray.py [ITEMS [ROUNDS]]   # a local Ray instance on this machine's cores
    RAY_ADDRESS=ray://head:10001 python ...            # a cluster

Needs `pip install 'railyard-graph[ray]'`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import ray

from railyard import SqliteStore
from railyard.builder import GraphBuilder, StepContext, reduce_list_append
from railyard.ray import RayExecutor, RayOptions

ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
"""Hash rounds per item: about a second of CPU each at the default."""

g = GraphBuilder(name="crunch_numbers", input_type=int, output_type=str)


@g.step
async def split(ctx: StepContext[None, None, int]) -> list[int]:
    return list(range(ctx.inputs))


@g.step
async def crunch(ctx: StepContext[None, None, int]) -> str:
    digest = str(ctx.inputs).encode()
    for _ in range(ROUNDS):  # CPU-bound: this is what goes to the cluster (ROUNDS travels with the code)
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:8]


@g.step
async def report(ctx: StepContext[None, None, list[str]]) -> str:
    return f"{len(ctx.inputs)} items crunched; first digests: {', '.join(sorted(ctx.inputs)[:3])}"


digests = g.join(reduce_list_append, initial_factory=list[str], node_id="digests")
g.add(
    g.edge_from(g.start_node).to(split),
    g.edge_from(split).map().to(crunch),
    g.edge_from(crunch).to(digests),
    g.edge_from(digests).to(report),
    g.edge_from(report).to(g.end_node),
)
crunch_numbers = g.build()


async def main(items: int) -> None:
    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    try:
        here = await crunch_numbers.run(inputs=items)
        with tempfile.TemporaryDirectory() as folder:
            store = SqliteStore(Path(folder) / "runs.db")
            on_ray = await crunch_numbers.run(
                inputs=items,
                store=store,
                run_id="crunch-1",
                executor=RayExecutor({"crunch": RayOptions(num_cpus=1)}),  # only the map's branches
            )
            finished = [r for r in await store.read("crunch-1") if r.kind == "step_finished"]
            await store.aclose()
        print(on_ray)
        print("same result as in process:", on_ray == here)
        print("branches recorded by this driver:", sum(1 for r in finished if r.node_id == "crunch"))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
