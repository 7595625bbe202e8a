"""Workers on one PostgreSQL: runs/s and steps/s of N worker processes, beside the same work on DBOS queues.

```sh
.venv/bin/python bench/workers.py                  # N = 1, 2, 4, 8; 1,000 runs of 10 steps; a temporary server
.venv/bin/python bench/workers.py --quick          # 200 runs, N = 1, 2, 4
.venv/bin/python bench/workers.py --postgres URL   # a server of your own (databases are made on it)
.venv/bin/python bench/workers.py --no-dbos        # railyard alone
.venv/bin/python bench/workers.py --chaos          # the issue's acceptance at full size (8 workers x 1,000 runs)
```

The work: `RUNS` runs of a node graph counting to `STEPS`, one step per count (railyard's
`count_graph`; on DBOS a workflow of `STEPS` steps). For each N, a fresh database: N
worker processes start (`concurrency=8` each; DBOS: a queue with `worker_concurrency=8`),
and once all say they are ready, the runs are made (railyard: `initialize`, 16 at a time;
DBOS: `DBOSClient.enqueue` from a process of its own). The clock runs from the first run
made to the last one ended. DBOS runs in a side environment, `.bench-venvs/dbos`, made on
first use (`pip install dbos`), and polls its queue every 0.1 s (its default is 1 s, which
caps a worker at `worker_concurrency` workflows a second).

`--chaos` runs `tests/test_workers_scale.py`'s scenario at the issue's size: 8 worker
processes drive 1,000 runs of every kind while 10 of them are SIGKILLed one after another
and one is cut off from the database; it checks the same things and prints its measures.
The machine is shared and has 2 cores: the figures are noisy, and 8 processes contend for them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _processes import make_database, wait_started, worker_processes  # noqa: E402 - beside this script
from _venvs import ensure_venv  # noqa: E402

RUNS = 1_000
STEPS = 10
CONCURRENCY = 8
WORKER_COUNTS = (1, 2, 4, 8)

RAILYARD_WORKER = """
import asyncio, logging, sys
from railyard.store.postgres import PostgresStore
from railyard.testing._sample import count_graph
from railyard.worker import run_worker

logging.basicConfig()
logging.getLogger("railyard.worker").setLevel(logging.INFO)
logging.getLogger("railyard.worker").addFilter(lambda record: "started" in record.getMessage())

async def main(url, concurrency):
    store = PostgresStore(url)
    try:
        await run_worker(count_graph, store, concurrency=concurrency, idle_timeout=None, handle_signals=True)
    finally:
        await store.aclose()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

DBOS_APP = """
import sys, threading
from dbos import DBOS

DBOS(config={"name": "railyard-bench", "system_database_url": sys.argv[1], "log_level": "WARNING"})

@DBOS.step()
def count_step(n: int) -> int:
    return n + 1

@DBOS.workflow()
def count_to(target: int) -> int:
    n = 0
    while n < target:
        n = count_step(n)
    return n

DBOS.launch()
DBOS.register_queue("bench", worker_concurrency=int(sys.argv[2]), polling_interval_sec=0.1)
print("worker started", file=sys.stderr, flush=True)
threading.Event().wait()
"""

DBOS_ENQUEUER = """
import sys
from concurrent.futures import ThreadPoolExecutor
from dbos import DBOSClient

client = DBOSClient(system_database_url=sys.argv[1])
runs, steps = int(sys.argv[2]), int(sys.argv[3])
print("enqueuing", flush=True)
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda _: client.enqueue({"queue_name": "bench", "workflow_name": "count_to"}, steps), range(runs)))
client.destroy()
print("enqueued", flush=True)
"""


@dataclass
class Measure:
    """One measurement: N workers doing the work."""

    library: str
    workers: int
    seconds: float
    runs: int
    steps: int

    @property
    def runs_per_second(self) -> float:
        return self.runs / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def _count(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(query).fetchone()
    return int(row[0]) if row is not None else 0


def _wait_done(url: str, query: str, runs: int, workers: Sequence[tuple[subprocess.Popen[bytes], Path]]) -> None:
    deadline = time.monotonic() + 60 + runs
    while _count(url, query) < runs:
        for process, log in workers:
            if process.poll() is not None:
                raise SystemExit(f"bench: a worker exited:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit("bench: the runs did not all end in time")
        time.sleep(0.05)


def measure_railyard(admin_url: str, workers: int, runs: int, steps: int, logs: Path) -> Measure:
    """N railyard worker processes drive `runs` runs of `steps` steps."""
    from railyard.store.postgres import PostgresStore
    from railyard.testing._sample import CountTo, CrashState, count_graph

    url = make_database(admin_url, f"railyard_bench_{workers}")
    command = [sys.executable, "-c", RAILYARD_WORKER, url, str(CONCURRENCY)]

    async def make_runs() -> None:
        store = PostgresStore(url)
        limiter = anyio.CapacityLimiter(16)

        async def make(index: int) -> None:
            async with limiter:
                await count_graph.initialize(CountTo(steps), store=store, run_id=f"r{index:05}", state=CrashState())

        try:
            async with anyio.create_task_group() as group:
                for index in range(runs):
                    group.start_soon(make, index)
        finally:
            await store.aclose()

    anyio.run(_schema, url)
    with worker_processes([command] * workers, logs) as started:
        wait_started(started)
        began = time.perf_counter()
        anyio.run(make_runs)
        _wait_done(url, "SELECT count(*) FROM railyard_runs WHERE status = 'ended'", runs, started)
        seconds = time.perf_counter() - began
    done = _count(url, "SELECT sum(steps) FROM railyard_runs")
    return Measure("railyard", workers, seconds, runs, done)


async def _schema(url: str) -> None:
    from railyard.store.postgres import PostgresStore

    store = PostgresStore(url)
    await store.runs()  # made before the workers race to make it
    await store.aclose()


def measure_dbos(python: Path, admin_url: str, workers: int, runs: int, *, steps: int, logs: Path) -> Measure:
    """N DBOS processes dequeue `runs` workflows of `steps` steps from one queue."""
    url = make_database(admin_url, f"dbos_bench_{workers}")
    command = [str(python), "-c", DBOS_APP, url, str(CONCURRENCY)]
    with worker_processes([command] * workers, logs) as started:
        wait_started(started)
        enqueuer = subprocess.Popen(
            [str(python), "-c", DBOS_ENQUEUER, url, str(runs), str(steps)], stdout=subprocess.PIPE, text=True
        )
        assert enqueuer.stdout is not None
        assert enqueuer.stdout.readline() == "enqueuing\n"
        began = time.perf_counter()
        _wait_done(url, "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'", runs, started)
        seconds = time.perf_counter() - began
        enqueuer.wait(timeout=60)
    return Measure("dbos", workers, seconds, runs, runs * steps)


def report(measures: Sequence[Measure]) -> None:
    """The table: each measurement, its scaling over one worker, and railyard over DBOS."""
    one = {m.library: m for m in measures if m.workers == 1}
    dbos = {m.workers: m for m in measures if m.library == "dbos"}
    print()
    print(
        f"{'library':<9} {'workers':>7} {'seconds':>8} {'runs/s':>8} {'steps/s':>8} {'vs 1 worker':>11} {'vs DBOS':>8}"
    )
    for m in measures:
        scale = m.steps_per_second / one[m.library].steps_per_second if m.library in one else float("nan")
        peer = dbos.get(m.workers)
        ratio = f"{m.steps_per_second / peer.steps_per_second:.2f}x" if m.library == "railyard" and peer else ""
        print(
            f"{m.library:<9} {m.workers:>7} {m.seconds:>8.2f} {m.runs_per_second:>8.1f} {m.steps_per_second:>8.0f} "
            f"{scale:>10.2f}x {ratio:>8}"
        )


def chaos(admin_url: str, directory: Path) -> None:
    """The chaos test's scenario at the issue's size."""
    from tests.test_workers_scale import chaos as scenario

    url = make_database(admin_url, "railyard_chaos")
    measures = anyio.run(lambda: scenario(url, directory, workers=8, runs=1_000, kills=10))
    print(
        f"chaos: 8 workers x concurrency {CONCURRENCY}, 1,000 runs, 10 killed, 1 cut off: "
        f"{measures['runs'] / measures['seconds']:.1f} runs/s, {measures['steps'] / measures['seconds']:.0f} steps/s; "
        f"{measures['takeovers']:.0f} takeovers, the latest {measures['latest_takeover']:+.2f} s after its lease "
        f"ran out; at most {measures['sessions']:.0f} sessions (bound {measures['session_bound']:.0f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="auto", help="a server's URL ('auto': a temporary local one)")
    parser.add_argument("--quick", action="store_true", help="200 runs, N = 1, 2, 4")
    parser.add_argument("--no-dbos", action="store_true", help="railyard alone")
    parser.add_argument("--chaos", action="store_true", help="the chaos scenario at full size, instead")
    parser.add_argument("--workers", default=None, help="the worker counts, e.g. 1,2,4,8")
    parser.add_argument("--runs", type=int, default=None, help=f"runs per measurement ({RUNS})")
    args = parser.parse_args(argv)
    runs, counts = (200, (1, 2, 4)) if args.quick else (RUNS, WORKER_COUNTS)
    if args.workers:
        counts = tuple(int(n) for n in args.workers.split(","))
    runs = args.runs or runs
    server = None
    if args.postgres == "auto":
        from tests.support.postgres import PostgresServer  # the server the test suite starts

        server = PostgresServer.start()
        args.postgres = server.url
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="railyard-bench-") as directory:
            if args.chaos:
                chaos(args.postgres, Path(directory))
                return 0
            python = None if args.no_dbos else _dbos_python()
            measures: list[Measure] = []
            for workers in counts:
                logs = Path(directory) / f"n{workers}"
                logs.mkdir()
                measures.append(measure_railyard(args.postgres, workers, runs, STEPS, logs))
                print(f"  railyard, {workers} workers: {measures[-1].steps_per_second:.0f} steps/s", flush=True)
                if python is not None:
                    (logs / "dbos").mkdir()
                    measures.append(measure_dbos(python, args.postgres, workers, runs, steps=STEPS, logs=logs / "dbos"))
                    print(f"  dbos, {workers} workers: {measures[-1].steps_per_second:.0f} steps/s", flush=True)
            report(measures)
    finally:
        if server is not None:
            server.stop()
    print(
        f"\n{runs} runs of {STEPS} steps each; load average at end {os.getloadavg()[0]:.2f}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    return 0


def _dbos_python() -> Path | None:
    try:
        return ensure_venv("dbos", ["dbos"], "dbos")
    except SystemExit as failed:
        print(f"  DBOS is left out: it does not install here ({failed})", flush=True)
        return None


if __name__ == "__main__":
    raise SystemExit(main())
