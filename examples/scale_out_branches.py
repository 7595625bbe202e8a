"""Spread one run's map over worker processes: PostgreSQL branch tasks.

The script starts three `railyard worker --concurrency 0 --branches 4` processes (they
run branch tasks only), then runs a builder graph that maps 200 pages to a `summarise`
step with a `BranchExecutor`: each page's step becomes a task row the workers claim,
and this process, the run's driver, records each answer as it comes. The queue's limit
(6) holds over all the workers at once. Then it reads the task rows: which workers ran
pages, how many ran at once (by the server's clock), and that no page ran twice.

    python examples/scale_out_branches.py postgresql://user@host/database

Needs PostgreSQL (`pip install 'railyard-graph[postgres,cli]'`); the workers may run on
any machine that reaches the database and imports this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg

from railyard.branches import BranchExecutor
from railyard.builder import GraphBuilder, StepContext, reduce_list_append
from railyard.store.postgres import PostgresStore

PAGES = 200
WORKERS = 3
LIMIT = 6
ROOT = Path(__file__).resolve().parent.parent

g: GraphBuilder[None, None, list[str], list[str]] = GraphBuilder(
    input_type=list[str], output_type=list[str], name="pages"
)


@g.step
async def summarise(ctx: StepContext[None, None, str]) -> str:
    await asyncio.sleep(0.01)  # a call to a model, say
    return f"{ctx.inputs}:{hashlib.sha256(ctx.inputs.encode()).hexdigest()[:6]}"


collect = g.join(reduce_list_append, initial_factory=list[str], node_id="collect")
g.add(
    g.edge_from(g.start_node).map().to(summarise),
    g.edge_from(summarise).to(collect),
    g.edge_from(collect).to(g.end_node),
)
pages = g.build()


def start_workers(url: str) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "railyard", "worker", "examples.scale_out_branches:pages"]
    command += ["--concurrency", "0", "--branches", "4", "--store", url]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(WORKERS)
    ]


async def run(url: str) -> list[str]:
    store = PostgresStore(url)
    try:
        with BranchExecutor(store, ["summarise"], queue="pages", concurrency=LIMIT) as executor:
            documents = [f"page-{n:03}" for n in range(PAGES)]
            return await pages.run(inputs=documents, store=store, run_id="pages", executor=executor)
    finally:
        await store.aclose()


def report(url: str, result: list[str]) -> None:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT step_id, owner, started_at, finished_at FROM railyard_tasks WHERE run_id = 'pages'"
        ).fetchall()
    owners = {owner.split("#")[0] for _, owner, _, _ in rows}  # a claim's owner: the worker's host:pid, then its own
    events = sorted([(start, 1) for *_, start, _ in rows] + [(end, -1) for *_, end in rows])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    print(f"{len(result)} pages summarised; first: {', '.join(sorted(result)[:2])}")
    print(f"worker processes that ran pages: {len(owners)} of {WORKERS}")
    print(f"most pages at once: within the queue's limit of {LIMIT}: {most <= LIMIT}")
    print("a page ran twice:", any(count > 1 for count in Counter(step for step, *_ in rows).values()))


def wait_until_listening(url: str, workers: list[subprocess.Popen[bytes]]) -> None:
    """Wait until every worker listens for branch tasks (its session shows in `pg_stat_activity`)."""
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            (listening,) = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'railyard-branches-worker %%'"
            ).fetchone() or (0,)
            if listening >= len(workers):
                return
            if any(worker.poll() is not None for worker in workers):
                raise SystemExit("a worker exited before it started listening")
            connection.execute("SELECT pg_sleep(0.05)")


def main(url: str) -> None:
    workers = start_workers(url)
    try:
        wait_until_listening(url, workers)
        result = asyncio.run(run(url))
        report(url, result)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = sorted({worker.wait(timeout=60) for worker in workers})
    print(f"{WORKERS} workers, --branches 4 each, exited with {codes}")


if __name__ == "__main__":
    main(sys.argv[1])
