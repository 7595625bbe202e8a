"""Per-step cost of a durable run on each store, and whether it stays flat as the run grows.

    .venv/bin/python bench/durable.py [postgresql://...]

Each step writes two records (step started, step finished with the next node and the
new state) and waits for the store to accept each before going on. No peer persists a
node-graph run record by record, so this prints railyard's own figures only.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from railyard.durable import DurablePersistence
from railyard.store import RunStore
from railyard.store.file import FileStore
from railyard.store.memory import MemoryStore
from railyard.store.sqlite import SqliteStore
from railyard.testing._sample import CountTo, CrashState, count_graph

SIZES = (200, 2_000)


async def per_step(store: RunStore, steps: int, run_id: str) -> float:
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, run_id)
    start = time.perf_counter()
    await count_graph.run(CountTo(steps), state=CrashState(), persistence=persistence)
    return (time.perf_counter() - start) / (steps + 1) * 1e6


async def main(postgres_url: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="railyard-bench-"))
    stores: dict[str, RunStore] = {
        "memory": MemoryStore(),
        "file (JSON Lines)": FileStore(folder / "runs"),
        "sqlite (WAL, synchronous=NORMAL)": SqliteStore(folder / "runs.db"),
    }
    if postgres_url:
        from railyard.store.postgres import PostgresStore

        stores["postgres"] = PostgresStore(postgres_url)
    print(f"{'store':36} " + " ".join(f"{f'N={n:,}':>14}" for n in SIZES) + "   growth")
    for name, store in stores.items():
        figures = [await per_step(store, n, f"bench-{n}-{time.time_ns()}") for n in SIZES]
        cells = " ".join(f"{f'{x:,.0f} us/step':>14}" for x in figures)
        print(f"{name:36} {cells}   {figures[-1] / figures[0]:.2f}x")
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
