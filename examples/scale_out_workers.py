"""Scale out with workers: many processes share one store, each driving several runs at once.

The script records 40 order runs without running them (`graph.initialize`), then starts
three `railyard worker` processes with `--concurrency 4`. Each claims ready runs and
drives them; a run is held by one worker at a time (a lease its every write checks), and
a worker that dies leaves its runs to the others. The workers stop once nothing has been
ready for a second; the script then reads the store: every run ended, no step twice.

    python examples/scale_out_workers.py                                  # a SQLite file here
    python examples/scale_out_workers.py postgresql://user@host/database   # many machines' workers

On PostgreSQL (`pip install 'railyard-graph[postgres]'`) the workers may run anywhere
that reaches the database; a SQLite store serves the workers of one machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.store import RunStatus
from railyard.store.urls import open_store

RUNS = 40
WORKERS = 3
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Order:
    order_id: int
    total_cents: int = 0


@dataclass
class Price(BaseNode[Order, None, str]):
    async def run(self, ctx: GraphRunContext[Order]) -> Pack:
        await asyncio.sleep(0.01)  # a call to a pricing service
        ctx.state.total_cents = 1000 + ctx.state.order_id
        return Pack()


@dataclass
class Pack(BaseNode[Order, None, str]):
    async def run(self, ctx: GraphRunContext[Order]) -> Ship:
        await asyncio.sleep(0.01)
        return Ship()


@dataclass
class Ship(BaseNode[Order, None, str]):
    async def run(self, ctx: GraphRunContext[Order]) -> End[str]:
        return End(f"order {ctx.state.order_id} shipped for ${ctx.state.total_cents / 100:.2f}")


orders = Graph(nodes=[Price, Pack, Ship], name="orders")


async def record_runs(url: str) -> None:
    store = open_store(url)
    try:
        for n in range(RUNS):
            await orders.initialize(Price(), store=store, run_id=f"order-{n}", state=Order(order_id=n))
    finally:
        await store.aclose()


def start_workers(url: str) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "railyard", "worker", "examples.scale_out_workers:orders"]
    command += ["--concurrency", "4", "--idle-timeout", "1", "--store", url]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(WORKERS)
    ]


async def report(url: str) -> None:
    store = open_store(url)
    try:
        infos = await store.runs(graph="orders", limit=None)
        ended = [info for info in infos if info.status is RunStatus.ENDED]
        finished: Counter[str] = Counter()
        for info in infos:
            for record in await store.read(info.run_id):
                if record.kind == "step_finished":  # counted by step id: stable across re-runs of a step
                    finished[json.loads(record.body)["task_id"]] += 1
        print(f"{len(ended)} of {len(infos)} runs ended, {sum(info.steps for info in infos)} steps")
        print("a step finished twice:", any(count > 1 for count in finished.values()))
    finally:
        await store.aclose()


def main(url: str) -> None:
    asyncio.run(record_runs(url))
    workers = start_workers(url)
    codes = [worker.wait(timeout=300) for worker in workers]
    print(f"{len(workers)} workers, --concurrency 4 each, exited with {sorted(set(codes))}")
    asyncio.run(report(url))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(f"sqlite:{Path(folder) / 'orders.db'}")
