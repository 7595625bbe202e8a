"""Many worker processes share one PostgreSQL store: every step of every run is recorded once."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest

from railyard.durable import DurablePersistence, read_run
from railyard.store import RunStatus
from railyard.store.codec import RecordCodec
from railyard.store.memory import MemoryStore
from railyard.store.postgres import PostgresStore
from railyard.store.records import StepFinished, StepStarted
from railyard.testing._sample import CountTo, CrashState, count_graph
from railyard.worker import run_worker

pytestmark = pytest.mark.anyio

WORKER = """
import asyncio, sys
from railyard.store.postgres import PostgresStore
from railyard.testing._sample import count_graph
from railyard.worker import run_worker

async def main(url):
    store = PostgresStore(url)
    driven = await run_worker(count_graph, store, idle_timeout=1.0, poll_interval=0.05)
    await store.aclose()
    print(len(driven), " ".join(driven))

asyncio.run(main(sys.argv[1]))
"""

RUNS = 50
STEPS = 20


async def test_four_workers_advance_fifty_runs(new_postgres_database: Callable[[], str]) -> None:
    url = new_postgres_database()
    store = PostgresStore(url)
    for index in range(RUNS):
        await count_graph.initialize(CountTo(STEPS), DurablePersistence(store, f"run-{index:02}"), state=CrashState())
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    driven = [run_id for out, _ in outputs for run_id in out.split()[1:]]
    assert sorted(driven) == [f"run-{index:02}" for index in range(RUNS)], "each run driven by exactly one worker"
    assert sum(1 for out, _ in outputs if int(out.split()[0]) > 0) >= 2, "the work was shared"

    codec = RecordCodec(count_graph.get_nodes(), CrashState, int)
    infos = await store.runs()
    assert [info.status for info in infos] == [RunStatus.ENDED] * RUNS
    for info in infos:
        records = await read_run(store, info.run_id, codec)
        started = Counter(r.task_id for r in records if isinstance(r, StepStarted))
        finished = Counter(r.task_id for r in records if isinstance(r, StepFinished))
        assert set(started.values()) == {1} and set(finished.values()) == {1}, info.run_id
        assert len(finished) == STEPS + 1 == info.steps
        assert records[-1].end is not None and records[-1].end.data == STEPS  # type: ignore[union-attr]
    await store.aclose()


async def test_a_worker_on_any_store_skips_runs_in_use_and_failed_runs() -> None:
    store = MemoryStore()
    for name in ("a", "b", "c"):
        await count_graph.initialize(CountTo(2), DurablePersistence(store, name), state=CrashState())
    async with store.lock("b"):  # b has a live driver: the worker leaves it alone
        driven = await run_worker(count_graph, store)
    assert driven == ["a", "c"]
    assert await run_worker(count_graph, store) == ["b"]
    assert [info.status for info in await store.runs()] == [RunStatus.ENDED] * 3
    assert await run_worker(count_graph, store, idle_timeout=0.0) == []
