"""Branch mode on one PostgreSQL: a map's items as branch tasks over 1, 2, 4 worker processes.

```sh
.venv/bin/python bench/branches.py                  # 2,000 items x 5 ms sleep; 1, 2, 4 workers; a temporary server
.venv/bin/python bench/branches.py --cpu            # each step burns ~5 ms of CPU (sha256) instead of sleeping
.venv/bin/python bench/branches.py --quick          # 300 items, 1 and 2 workers
.venv/bin/python bench/branches.py --postgres URL   # a server of your own (databases are made on it)
```

The work: a builder graph maps `--items` integers into a step `work` (sleep 5 ms, or
~5 ms of sha256 with `--cpu`, then `x * 2`), collected by a `reduce_list_append` join.
Each step appends `item pid started ended` (monotonic clock, shared by the processes of
one machine) to a file of its process's own: how many steps ran at once, and how often
each item ran, are read from those lines.

In one process run, each case on a fresh database:

- **raw commits**: the floor, N single-row INSERTs with psycopg on one autocommit
  connection (one round trip and one commit each);
- **in process**: `graph.run(inputs=..., store=PostgresStore(url))`, no executor, with
  `max_concurrency=--limit`, and without a limit;
- **branch mode**: W branch-only worker processes (`run_worker(..., concurrency=0,
  branches=--slots)`) and the driver's `BranchExecutor(store, ["work"], queue=...,
  concurrency=--limit)`.

Start-up is not timed: the workers say they started, then warm-up runs (4 items per slot)
repeat until every worker has run a step; the in-process cases do one warm-up run. The
clock runs from `graph.run` to its result. Then the workers are stopped by SIGTERM and
must exit 0. A check that fails prints FAIL and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psycopg
from _processes import Started, drop_database, make_database, wait_started, worker_processes

from railyard.builder import Graph, GraphBuilder, StepContext, reduce_list_append

REPO = Path(__file__).resolve().parent.parent

ITEMS = 2_000
WORKER_COUNTS = (1, 2, 4)
SLOTS = 4
LIMIT = 8
SLEEP = 0.005
QUEUE = "bench"
LOG_ENV = "RAILYARD_BENCH_STEP_LOG"
"""The folder the steps append their lines to (one file per process)."""
BLOCK = bytes(16_384)
ROUNDS = {"cpu": 0}
"""sha256 rounds of `BLOCK` for ~5 ms (`--cpu`): measured by the driver, given to the workers."""

Line = tuple[int, int, float, float]


def _log(item: int, started: float) -> None:
    folder = os.environ.get(LOG_ENV)
    if folder:
        line = f"{item} {os.getpid()} {started!r} {time.monotonic()!r}\n".encode()
        descriptor = os.open(Path(folder) / f"{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)


def _burn(rounds: int) -> None:
    for _ in range(rounds):
        hashlib.sha256(BLOCK).digest()


def _map(name: str, cpu: bool) -> Graph[None, None, list[int], list[int]]:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(
        input_type=list[int], output_type=list[int], name=name
    )

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        started = time.monotonic()
        if cpu:
            _burn(ROUNDS["cpu"])
        else:
            await anyio.sleep(SLEEP)
        _log(ctx.inputs, started)
        return ctx.inputs * 2

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(collect), g.edge_from(collect).to(g.end_node))
    return g.build()


sleepy = _map("bench_sleep", cpu=False)
busy = _map("bench_cpu", cpu=True)


def _serve(url: str, slots: int) -> None:
    """A branch-only worker process, until SIGTERM."""
    from railyard.store.postgres import PostgresStore
    from railyard.worker import run_worker

    logging.basicConfig()
    logging.getLogger("railyard.worker").setLevel(logging.INFO)
    logging.getLogger("railyard.worker").addFilter(lambda record: "started" in record.getMessage())

    async def main() -> None:
        store = PostgresStore(url, max_size=4)
        try:
            await run_worker(
                [sleepy, busy], store, concurrency=0, branches=slots, idle_timeout=None, handle_signals=True
            )
        finally:
            await store.aclose()

    anyio.run(main)


@dataclass
class Measure:
    """One case's timed run and its checks."""

    case: str
    workers: int
    seconds: float
    items: int
    most: int | None = None
    """The most steps running at once (`None`: not measured)."""
    limit: int | None = None
    """The limit `most` must keep to (`None`: none)."""
    once: bool | None = None
    """Every item ran exactly once, and the result is right."""
    exits: list[int | None] = field(default_factory=list[int | None])
    by_worker: list[int] = field(default_factory=list[int])

    @property
    def per_second(self) -> float:
        return self.items / self.seconds

    @property
    def within(self) -> bool | None:
        return None if self.most is None or self.limit is None else self.most <= self.limit

    @property
    def stopped(self) -> bool | None:
        return None if not self.exits else all(code == 0 for code in self.exits)


@contextmanager
def _fresh(admin_url: str, name: str) -> Iterator[str]:
    url = make_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


def _lines(folder: Path) -> list[Line]:
    lines = []
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            item, pid, started, ended = line.split()
            lines.append((int(item), int(pid), float(started), float(ended)))
    return lines


def _clear(folder: Path) -> None:
    for path in folder.glob("*.log"):
        path.unlink()


def _most_at_once(lines: Sequence[Line]) -> int:
    """The most steps running at one moment: an end before a start at the same instant."""
    events = sorted([(started, 1) for _, _, started, _ in lines] + [(ended, -1) for _, _, _, ended in lines])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def _ran_once(lines: Sequence[Line], result: list[int], items: int) -> bool:
    ran = Counter(item for item, *_ in lines)
    return (
        sorted(ran) == list(range(items))
        and set(ran.values()) == {1}
        and sorted(result) == [2 * i for i in range(items)]
    )


async def _schema(url: str) -> None:
    from railyard.store.postgres import PostgresStore

    store = PostgresStore(url)
    await store.runs()  # made before the workers race to make it
    await store.aclose()


def measure_floor(admin_url: str, items: int) -> Measure:
    """N single-row INSERTs on one autocommit connection: one round trip and one commit each."""
    body = json.dumps({"step": "work", "inputs": 12345, "result": 24690, "note": "x" * 120})
    insert = "INSERT INTO floor (id, body) VALUES (%s, %s)"
    with _fresh(admin_url, "railyard_bench_branches_floor") as url, psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE floor (id integer PRIMARY KEY, body text NOT NULL)")
        for index in range(100):  # warm-up (and the statement prepared)
            connection.execute(insert, (-1 - index, body))
        began = time.perf_counter()
        for index in range(items):
            connection.execute(insert, (index, body))
        seconds = time.perf_counter() - began
        (count,) = connection.execute("SELECT count(*) FROM floor WHERE id >= 0").fetchone() or (0,)
    return Measure("raw commits (floor)", 0, seconds, items, once=count == items)


def measure_in_process(
    admin_url: str, graph: Graph[None, None, list[int], list[int]], items: int, limit: int | None, logs: Path
) -> Measure:
    """The map in the driver's own process, durable on the same kind of store, no executor."""
    from railyard.store.postgres import PostgresStore

    name = f"railyard_bench_branches_local_{limit or 'all'}"
    result: list[int] = []
    with _fresh(admin_url, name) as url:

        async def drive() -> float:
            store = PostgresStore(url)
            try:
                await store.runs()
                await graph.run(inputs=list(range(4 * SLOTS)), store=store, run_id="warm-up", max_concurrency=limit)
                _clear(logs)
                gc.collect()
                began = time.perf_counter()
                result.extend(
                    await graph.run(inputs=list(range(items)), store=store, run_id="timed", max_concurrency=limit)
                )
                return time.perf_counter() - began
            finally:
                await store.aclose()

        os.environ[LOG_ENV] = str(logs)
        try:
            seconds = anyio.run(drive)
        finally:
            del os.environ[LOG_ENV]
    lines = _lines(logs)
    case = f"in process, max {limit}" if limit else "in process, no limit"
    return Measure(case, 0, seconds, items, _most_at_once(lines), limit, _ran_once(lines, result, items))


def _workers(url: str, count: int, slots: int, logs: Path) -> AbstractContextManager[Started]:
    """Start branch-only worker processes (their output in `.err` files: the `.log` ones are the steps')."""
    command = [sys.executable, str(Path(__file__).resolve()), "worker", url, str(slots), str(ROUNDS["cpu"])]
    return worker_processes([command] * count, logs, env={**os.environ, LOG_ENV: str(logs)}, suffix=".err")


def measure_branches(
    admin_url: str,
    graph: Graph[None, None, list[int], list[int]],
    workers: int,
    items: int,
    *,
    slots: int,
    limit: int,
    logs: Path,
) -> Measure:
    """W branch-only worker processes run the map's steps; this process drives the run."""
    from railyard.branches import BranchExecutor
    from railyard.store.postgres import PostgresStore

    result: list[int] = []
    with _fresh(admin_url, f"railyard_bench_branches_{workers}") as url:
        anyio.run(_schema, url)
        with _workers(url, workers, slots, logs) as started:
            wait_started(started)
            pids = {process.pid for process, _ in started}

            async def drive() -> float:
                store = PostgresStore(url)
                try:
                    with BranchExecutor(store, ["work"], queue=QUEUE, concurrency=limit) as executor:
                        for attempt in range(5):  # until every worker has run a step
                            warm = list(range(4 * slots * workers))
                            await graph.run(inputs=warm, store=store, run_id=f"warm-up-{attempt}", executor=executor)
                            if pids <= {pid for _, pid, *_ in _lines(logs)}:
                                break
                        _clear(logs)
                        gc.collect()
                        began = time.perf_counter()
                        result.extend(
                            await graph.run(inputs=list(range(items)), store=store, run_id="timed", executor=executor)
                        )
                        return time.perf_counter() - began
                finally:
                    await store.aclose()

            seconds = anyio.run(drive)
        exits = [process.returncode for process, _ in started]
    lines = _lines(logs)
    by_pid = Counter(pid for _, pid, *_ in lines)
    return Measure(
        "branch mode",
        workers,
        seconds,
        items,
        _most_at_once(lines),
        limit,
        _ran_once(lines, result, items),
        exits,
        [by_pid.get(process.pid, 0) for process, _ in started],
    )


def _mark(value: bool | None) -> str:
    return "-" if value is None else "PASS" if value else "FAIL"


def report(measures: Sequence[Measure], *, limit: int) -> bool:
    """The table and the checks; whether every check passed."""
    floor = next(m for m in measures if m.case.startswith("raw"))
    local = next(m for m in measures if m.case == f"in process, max {limit}")
    print()
    print(
        f"{'case':<22} {'workers':>7} {'seconds':>8} {'items/s':>8} {'at once':>7} {'<= limit':>8} "
        f"{'once each':>9} {'stopped':>7} {'vs in-process':>13} {'vs floor':>8}"
    )
    for m in measures:
        most = "-" if m.most is None else str(m.most)
        print(
            f"{m.case:<22} {m.workers or '-':>7} {m.seconds:>8.2f} {m.per_second:>8.0f} {most:>7} "
            f"{_mark(m.within):>8} {_mark(m.once):>9} {_mark(m.stopped):>7} "
            f"{m.per_second / local.per_second:>12.2f}x {m.per_second / floor.per_second:>7.3f}x"
        )
    print()
    for m in measures:
        if m.by_worker:
            print(f"  {m.workers} workers: items per worker {'/'.join(str(n) for n in m.by_worker)}, exits {m.exits}")
    checks = [check for m in measures for check in (m.within, m.once, m.stopped) if check is not None]
    branch = [m for m in measures if m.case == "branch mode"]
    if branch:
        print(
            f"  queue limit {limit}: most at once over the branch runs {max(m.most or 0 for m in branch)} "
            f"-> {_mark(all(m.within for m in branch))}; every item once -> {_mark(all(m.once for m in branch))}; "
            f"workers stopped by SIGTERM, exit 0 -> {_mark(all(m.stopped for m in branch))}"
        )
    return all(checks)


def _calibrate(seconds: float) -> int:
    """sha256 rounds of `BLOCK` that take about `seconds` here."""
    rounds = 16
    while True:
        began = time.perf_counter()
        _burn(rounds)
        took = time.perf_counter() - began
        if took > 0.05:
            return max(1, round(rounds * seconds / took))
        rounds *= 2


def _server_settings(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as connection:
        names = ("server_version", "fsync", "synchronous_commit")
        values = [str((connection.execute(f"SHOW {name}").fetchone() or ("?",))[0]) for name in names]
    return ", ".join(f"{name} {value}" for name, value in zip(names, values, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("RAILYARD_TEST_POSTGRES", "auto"),
        help="a server's URL (default: $RAILYARD_TEST_POSTGRES, else 'auto': a temporary local one)",
    )
    parser.add_argument("--items", type=int, default=None, help=f"map items per run ({ITEMS:,})")
    parser.add_argument("--workers", default=None, help="worker process counts, e.g. 1,2,4")
    parser.add_argument("--slots", type=int, default=SLOTS, help=f"branch slots per worker ({SLOTS})")
    parser.add_argument("--limit", type=int, default=LIMIT, help=f"the queue's concurrency limit ({LIMIT})")
    parser.add_argument("--cpu", action="store_true", help="each step burns ~5 ms of CPU instead of sleeping")
    parser.add_argument("--quick", action="store_true", help="300 items, 1 and 2 workers")
    args = parser.parse_args(argv)
    counts: tuple[int, ...]
    items, counts = (300, (1, 2)) if args.quick else (ITEMS, WORKER_COUNTS)
    items = args.items or items
    if args.workers:
        counts = tuple(int(n) for n in args.workers.split(","))
    graph = busy if args.cpu else sleepy
    if args.cpu:
        ROUNDS["cpu"] = _calibrate(SLEEP)
    server = None
    if args.postgres == "auto":
        sys.path.insert(0, str(REPO))
        from tests.support.postgres import PostgresServer  # the server the test suite starts

        server = PostgresServer.start()
        args.postgres = server.url
    started = time.perf_counter()
    work = (
        f"~{SLEEP * 1000:.0f} ms of sha256 ({ROUNDS['cpu']} x 16 KiB)" if args.cpu else f"sleep {SLEEP * 1000:.0f} ms"
    )
    try:
        print(
            f"{items:,} map items, each step: {work}; {args.slots} branch slots per worker, queue limit {args.limit}; "
            f"{os.cpu_count()} cores; PostgreSQL: {_server_settings(args.postgres)}",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="railyard-bench-branches-") as directory:
            folders = iter(range(100))

            def logs() -> Path:
                folder = Path(directory) / str(next(folders))
                folder.mkdir()
                return folder

            measures = [measure_floor(args.postgres, items)]
            print(f"  raw commits: {measures[-1].per_second:.0f}/s", flush=True)
            for limit in (args.limit, None):
                measures.append(measure_in_process(args.postgres, graph, items, limit, logs()))
                print(f"  {measures[-1].case}: {measures[-1].per_second:.0f} items/s", flush=True)
            for workers in counts:
                measures.append(
                    measure_branches(
                        args.postgres, graph, workers, items, slots=args.slots, limit=args.limit, logs=logs()
                    )
                )
                print(f"  branch mode, {workers} workers: {measures[-1].per_second:.0f} items/s", flush=True)
            passed = report(measures, limit=args.limit)
    finally:
        if server is not None:
            server.stop()
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; total {time.perf_counter() - started:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        ROUNDS["cpu"] = int(sys.argv[4])
        _serve(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(main())
