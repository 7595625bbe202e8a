"""The durable-run workloads: one process runs one of them and prints one JSON object.

Libraries (`--lib`), each in its own environment:

- `railyard`: the project's own, in `.venv`;
- `langgraph`: LangGraph with its SQLite and PostgreSQL checkpointers, in
  `.bench-venvs/langgraph-durable`;
- `floor`: no library: the standard library's `sqlite3`, and a bare `await` loop.

Cases (`--case`):

- `node`: a one-node countdown run of N steps on a store. railyard: `CountDown` (defined
  here, as in `bench/countdown.py`) decrements a dataclass state's counter and returns
  the next `CountDown()` until the counter is 0, run with
  `await graph.run(CountDown(), state=..., store=..., run_id=...)` on `SqliteStore`,
  `FileStore` or `PostgresStore`. LangGraph: a `StateGraph` whose one node increments a
  counter and loops back through a conditional edge until it reaches N, compiled with
  `AsyncSqliteSaver` or `AsyncPostgresSaver` and run with
  `ainvoke(..., durability="sync")`. A run is N calls of the node on either.
- `map`: N items through a map into a join. railyard: `railyard.builder`'s `.map()` into
  an async step (`x * 2`) into a `reduce_list_append` join (the shape of
  `bench/builder.py`), run with `await graph.run(inputs=..., store=SqliteStore(path))`,
  or in memory (`--store memory`, no store). LangGraph: `[Send('double', {'x': i}) ...]`
  into a reducer `Annotated[list[int], operator.add]`, compiled with `AsyncSqliteSaver`,
  `durability="sync"`.
- `storage`: the node run with a list in the state: each of N steps appends a 100-byte
  string; the report gives the bytes of the SQLite database (with its `-wal` and `-shm`)
  after the store is closed.
- `floor`: raw `sqlite3` (WAL; `--variant commit1`: one INSERT of a ~200-byte JSON text
  row and a COMMIT per step; `commit2`: two such commits per step; `commit1-full`: one,
  with `synchronous=FULL`; the others `synchronous=NORMAL`) and `await` (a trivial
  coroutine awaited N times).

Usage:

    python bench/durable_workload.py --lib railyard --case node --store sqlite --n 4000
    python bench/durable_workload.py --lib langgraph --case node --store postgres --url postgresql://...
    python bench/durable_workload.py --lib floor --case floor --variant commit2 --n 4000

Each process imports everything and does an untimed warm-up run on a store of its own,
then `repeat` timed runs, each on a fresh store in a temporary directory of its own (on
PostgreSQL: a fresh schema, dropped afterwards): the store is opened (its schema made)
before the clock starts and closed after it stops, so a figure is the run alone. Every
run's outcome is checked before its time counts (the counter's end value, the map's
results, the steps the store recorded). The report gives every timed run's seconds and
the process's peak resident memory (`ru_maxrss`, MiB, the whole process). With
`--time-limit`, a timer thread stops the process when the limit passes and reports what
it knows: the steps done, and the bytes stored so far (a lower bound).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import operator
import os
import resource
import secrets
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict
from urllib.parse import quote

LIBS = ("railyard", "langgraph", "floor")
CASES = ("node", "map", "storage", "floor")
STORES = ("sqlite", "file", "postgres", "memory")
FLOOR_VARIANTS = ("commit1", "commit2", "commit1-full", "await")
LINE = "x" * 100
"""What a step of the storage case appends to the state's list."""


@dataclass
class Outcome:
    seconds: float
    bytes: int | None = None
    """What the store holds after the run (the storage case), in bytes."""


Runner = Callable[[int, Path], Awaitable[Outcome]]
"""Runs the case on N in a fresh directory (its own store), checks it, returns its time."""


class Progress:
    """What a time-limited run has done so far: its steps, and where its store's files are."""

    steps = 0
    database: Path | None = None


def sqlite_bytes(path: Path) -> int:
    """The size of a SQLite database with its write-ahead log and shared-memory index."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def _fail(what: str) -> None:
    raise SystemExit(f"durable_workload: {what}")


# -- PostgreSQL: a fresh schema per run --------------------------------------------------


def _with_search_path(url: str, schema: str) -> str:
    option = quote(f"-c search_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={option}"


@asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[str]:
    """`url` with a schema of its own first on its search path, the schema dropped afterwards."""
    import psycopg

    schema = f"bench_durable_{secrets.token_hex(6)}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_search_path(url, schema)
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            await connection.execute(f"DROP SCHEMA {schema} CASCADE")


# -- railyard ---------------------------------------------------------------------------


@dataclass
class CountDownState:
    counter: int


@dataclass
class AppendState:
    counter: int
    lines: list[str] = field(default_factory=list)


def railyard_nodes() -> tuple[Any, Any, Any, Any]:
    """The countdown graph and the storage case's appending graph, and their start nodes."""
    from railyard import BaseNode, End, Graph, GraphRunContext

    @dataclass
    class CountDown(BaseNode[CountDownState, None, int]):
        async def run(self, ctx: GraphRunContext[CountDownState]) -> CountDown | End[int]:
            if ctx.state.counter <= 0:
                return End(ctx.state.counter)
            ctx.state.counter -= 1
            return CountDown()

    @dataclass
    class Append(BaseNode[AppendState, None, int]):
        async def run(self, ctx: GraphRunContext[AppendState]) -> Append | End[int]:
            Progress.steps += 1
            ctx.state.lines.append(LINE)
            if ctx.state.counter <= 1:
                return End(len(ctx.state.lines))
            ctx.state.counter -= 1
            return Append()

    countdown = Graph(nodes=[CountDown], name="countdown")
    append = Graph(nodes=[Append], name="append")
    return countdown, CountDown, append, Append


@asynccontextmanager
async def railyard_store(kind: str, where: Path, url: str | None) -> AsyncIterator[Any]:
    """A fresh store of `kind`, opened (`None` for `memory`), and closed on the way out."""
    if kind == "memory":
        yield None
        return
    async with _fresh_railyard_store(kind, where, url) as store:
        await store.runs()  # opens it: the connection and the schema, or the directory
        try:
            yield store
        finally:
            await store.aclose()


@asynccontextmanager
async def _fresh_railyard_store(kind: str, where: Path, url: str | None) -> AsyncIterator[Any]:
    from railyard import FileStore, SqliteStore

    if kind == "sqlite":
        yield SqliteStore(where / "runs.db")
    elif kind == "file":
        yield FileStore(where / "runs")
    elif kind == "postgres":
        from railyard.store.postgres import PostgresStore

        assert url is not None
        async with fresh_schema(url) as scoped:
            yield PostgresStore(scoped)
    else:
        _fail(f"railyard has no {kind!r} store here")


async def _railyard_steps(store: Any, run_id: str) -> int:
    info = [run for run in await store.runs() if run.run_id == run_id]
    if len(info) != 1:
        _fail(f"the store holds {len(info)} runs {run_id!r}, not 1")
    if info[0].status.value != "ended":
        _fail(f"run {run_id!r} is {info[0].status.value}, not ended")
    return int(info[0].steps)


def railyard_node(kind: str, url: str | None) -> Runner:
    graph, start, _, _ = railyard_nodes()

    async def run(n: int, where: Path) -> Outcome:
        run_id = f"bench-durable-{secrets.token_hex(8)}"
        async with railyard_store(kind, where, url) as store:
            gc.collect()
            begin = time.perf_counter()
            result = await graph.run(start(), state=CountDownState(counter=n - 1), store=store, run_id=run_id)
            seconds = time.perf_counter() - begin
            if result.output != 0:
                _fail(f"the countdown ended with {result.output!r}, not 0")
            if (steps := await _railyard_steps(store, run_id)) != n:
                _fail(f"the store recorded {steps} steps, not {n}")
        return Outcome(seconds)

    return run


def railyard_storage() -> Runner:
    _, _, graph, start = railyard_nodes()

    async def run(n: int, where: Path) -> Outcome:
        Progress.steps = 0
        Progress.database = where / "runs.db"
        run_id = f"bench-durable-{secrets.token_hex(8)}"
        async with railyard_store("sqlite", where, None) as store:
            gc.collect()
            begin = time.perf_counter()
            result = await graph.run(start(), state=AppendState(counter=n), store=store, run_id=run_id)
            seconds = time.perf_counter() - begin
            if result.output != n:
                _fail(f"the state's list holds {result.output!r} lines, not {n}")
            if (steps := await _railyard_steps(store, run_id)) != n:
                _fail(f"the store recorded {steps} steps, not {n}")
        return Outcome(seconds, sqlite_bytes(where / "runs.db"))

    return run


def railyard_map(kind: str) -> Runner:
    from railyard.builder import GraphBuilder, StepContext, reduce_list_append

    g = GraphBuilder(input_type=list[int], output_type=list[int])

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).map().to(double),
        g.edge_from(double).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    graph = g.build()

    async def run(n: int, where: Path) -> Outcome:
        items = list(range(n))
        run_id = f"bench-durable-{secrets.token_hex(8)}"
        async with railyard_store(kind, where, None) as store:
            gc.collect()
            begin = time.perf_counter()
            if store is None:
                results = await graph.run(inputs=items)
            else:
                results = await graph.run(inputs=items, store=store, run_id=run_id)
            seconds = time.perf_counter() - begin
            _check_map(items, results)
            if store is not None and (steps := await _railyard_steps(store, run_id)) < n:
                _fail(f"the store recorded {steps} steps, fewer than the {n} items")
        return Outcome(seconds)

    return run


def _check_map(items: list[int], results: Any) -> None:
    if not isinstance(results, list) or len(results) != len(items):
        _fail(f"the map returned {type(results).__name__} of {len(results)}, not {len(items)} results")
    if sorted(results) != [2 * x for x in items]:
        _fail("the map's results are not the doubled inputs")


# -- LangGraph --------------------------------------------------------------------------


class CounterState(TypedDict):
    counter: int
    limit: int


class LinesState(TypedDict):
    counter: int
    limit: int
    lines: Annotated[list[str], operator.add]


class MapState(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]


class DoubleInput(TypedDict):
    x: int


def _loop_builder(with_lines: bool) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def increment(state: CounterState) -> dict[str, int]:
        return {"counter": state["counter"] + 1}

    async def append(state: LinesState) -> dict[str, Any]:
        Progress.steps += 1
        return {"counter": state["counter"] + 1, "lines": [LINE]}

    def again(state: CounterState) -> str:
        return END if state["counter"] >= state["limit"] else "step"

    builder: Any = StateGraph(LinesState if with_lines else CounterState)  # type: ignore[arg-type]
    builder.add_node("step", append if with_lines else increment)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", again, ["step", END])
    return builder


def _map_builder() -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    # `list[Any]`, not `list[Send]`: LangGraph resolves these hints in the module's namespace.
    def fan_out(state: MapState) -> list[Any]:
        return [Send("double", {"x": i}) for i in state["items"]]

    async def double(state: DoubleInput) -> dict[str, list[int]]:
        return {"results": [state["x"] * 2]}

    builder: Any = StateGraph(MapState)
    builder.add_node("double", double)
    builder.add_conditional_edges(START, fan_out, ["double"])
    builder.add_edge("double", END)
    return builder


@asynccontextmanager
async def langgraph_saver(kind: str, where: Path, url: str | None, synchronous: str | None) -> AsyncIterator[Any]:
    """A fresh checkpointer of `kind`, set up (its tables made) before it is handed out."""
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(where / "checkpoints.db")) as saver:
            await saver.setup()
            if synchronous is not None:
                await saver.conn.execute(f"PRAGMA synchronous={synchronous}")
            yield saver
    elif kind == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        assert url is not None
        async with fresh_schema(url) as scoped, AsyncPostgresSaver.from_conn_string(scoped) as saver:
            await saver.setup()
            yield saver
    else:
        _fail(f"LangGraph has no {kind!r} checkpointer here")


async def _checkpoints(saver: Any, thread_id: str) -> int:
    """How many checkpoints `saver` holds for `thread_id`."""
    query = "SELECT count(*) FROM checkpoints WHERE thread_id = "
    if type(saver).__name__ == "AsyncSqliteSaver":
        async with saver.conn.execute(query + "?", (thread_id,)) as cursor:
            row = await cursor.fetchone()
            return int(row[0])
    async with saver.conn.cursor() as cursor:
        await cursor.execute(query + "%s", (thread_id,))
        row = await cursor.fetchone()
        return int(next(iter(row.values())) if isinstance(row, dict) else row[0])


def langgraph_node(kind: str, url: str | None, synchronous: str | None, *, with_lines: bool = False) -> Runner:
    builder = _loop_builder(with_lines)

    async def run(n: int, where: Path) -> Outcome:
        thread_id = f"bench-durable-{secrets.token_hex(8)}"
        config = {"configurable": {"thread_id": thread_id}, "recursion_limit": n + 10}
        state: dict[str, Any] = {"counter": 0, "limit": n}
        if with_lines:
            state["lines"] = []
            Progress.steps = 0
            Progress.database = where / "checkpoints.db"
        async with langgraph_saver(kind, where, url, synchronous) as saver:
            graph = builder.compile(checkpointer=saver)
            gc.collect()
            begin = time.perf_counter()
            final = await graph.ainvoke(state, config, durability="sync")
            seconds = time.perf_counter() - begin
            if final["counter"] != n or (with_lines and len(final["lines"]) != n):
                _fail(f"the loop ended at {final['counter']!r}, not {n}")
            if (stored := await _checkpoints(saver, thread_id)) < n:
                _fail(f"the checkpointer holds {stored} checkpoints, fewer than the {n} steps")
        return Outcome(seconds, sqlite_bytes(where / "checkpoints.db") if with_lines else None)

    return run


def langgraph_map() -> Runner:
    builder = _map_builder()

    async def run(n: int, where: Path) -> Outcome:
        items = list(range(n))
        thread_id = f"bench-durable-{secrets.token_hex(8)}"
        async with langgraph_saver("sqlite", where, None, None) as saver:
            graph = builder.compile(checkpointer=saver)
            gc.collect()
            begin = time.perf_counter()
            final = await graph.ainvoke(
                {"items": items, "results": []}, {"configurable": {"thread_id": thread_id}}, durability="sync"
            )
            seconds = time.perf_counter() - begin
            _check_map(items, final["results"])
            if await _checkpoints(saver, thread_id) < 1:
                _fail("the checkpointer holds no checkpoint of the map")
        return Outcome(seconds)

    return run


# -- the floor --------------------------------------------------------------------------

ROW = json.dumps(
    {
        "kind": "step_finished",
        "node": "CountDown",
        "seq": 0,
        "status": "running",
        "next": {"node": "CountDown", "data": {}},
        "state": {"counter": 0},
        "pad": "x" * 70,
    }
)
"""A ~200-byte JSON text row."""


def floor(variant: str) -> Runner:
    if variant == "await":

        async def trivial() -> None:
            return None

        async def run_await(n: int, where: Path) -> Outcome:
            gc.collect()
            begin = time.perf_counter()
            for _ in range(n):
                await trivial()
            return Outcome(time.perf_counter() - begin)

        return run_await

    commits = 2 if variant == "commit2" else 1
    synchronous = "FULL" if variant == "commit1-full" else "NORMAL"

    async def run(n: int, where: Path) -> Outcome:
        connection = sqlite3.connect(where / "floor.db", isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={synchronous}")
            connection.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            execute = connection.execute
            insert = "INSERT INTO records (seq, body) VALUES (?, ?)"
            gc.collect()
            begin = time.perf_counter()
            seq = 0
            for _ in range(n):
                for _ in range(commits):
                    execute("BEGIN")
                    execute(insert, (seq, ROW))
                    execute("COMMIT")
                    seq += 1
            seconds = time.perf_counter() - begin
            (stored,) = connection.execute("SELECT count(*) FROM records").fetchone()
            if stored != n * commits:
                _fail(f"{stored} rows stored, not {n * commits}")
        finally:
            connection.close()
        return Outcome(seconds)

    return run


# -- the process ------------------------------------------------------------------------


def build(args: argparse.Namespace) -> Runner:
    lib, case, store = args.lib, args.case, args.store
    if store == "postgres" and not args.url:
        _fail("--store postgres needs --url")
    if lib == "floor":
        if case != "floor":
            _fail("--lib floor runs --case floor only")
        return floor(args.variant)
    if case == "floor":
        _fail("--case floor runs with --lib floor")
    if lib == "railyard":
        if case == "node":
            return railyard_node(store, args.url)
        if case == "storage":
            return railyard_storage()
        return railyard_map(store)
    if case == "node":
        return langgraph_node(store, args.url, args.synchronous)
    if case == "storage":
        return langgraph_node("sqlite", None, None, with_lines=True)
    return langgraph_map()


def _version(lib: str) -> str:
    if lib == "floor":
        return f"SQLite {sqlite3.sqlite_version}"
    if lib == "railyard":
        from railyard._version import railyard_version

        return railyard_version()
    return importlib.metadata.version(lib)


def _max_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Reporter:
    """Prints the process's one JSON report: at the end of its runs, or when the time limit stops them."""

    def __init__(self, report: dict[str, Any], time_limit: float | None, scratch: Path) -> None:
        self.report = report
        self.time_limit = time_limit
        self.scratch = scratch
        self.lock = threading.Lock()
        self.printed = False
        self.timer: threading.Timer | None = None

    def start(self) -> None:
        if self.time_limit is not None:
            self.timer = threading.Timer(self.time_limit, self._stop)
            self.timer.daemon = True
            self.timer.start()

    def finish(self, outcomes: list[Outcome]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self._print(
            seconds=[o.seconds for o in outcomes],
            bytes=[o.bytes for o in outcomes if o.bytes is not None],
            stopped=False,
        )

    def _stop(self) -> None:
        database = Progress.database
        so_far = sqlite_bytes(database) if database is not None else None
        self._print(seconds=[], bytes=[] if so_far is None else [so_far], stopped=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        os._exit(0)

    def _print(self, *, seconds: list[float], bytes: list[int], stopped: bool) -> None:
        with self.lock:
            if self.printed:
                return
            self.printed = True
            report = {
                **self.report,
                "seconds": seconds,
                "bytes": bytes,
                "stopped_after": self.time_limit if stopped else None,
                "steps_done": Progress.steps if stopped else None,
                "peak_mb": _max_rss_mb(),
            }
            sys.stdout.write(json.dumps(report) + "\n")
            sys.stdout.flush()


async def measure(run: Runner, reporter: Reporter, scratch: Path, *, n: int, repeat: int, warmup_n: int) -> None:
    """An untimed run on `warmup_n`, then `repeat` timed runs on N, each in a directory of its own."""
    if warmup_n > 0:
        where = scratch / "warmup"
        where.mkdir()
        await run(warmup_n, where)
        shutil.rmtree(where)
    reporter.start()
    outcomes: list[Outcome] = []
    for i in range(repeat):
        where = scratch / f"run{i}"
        where.mkdir()
        outcomes.append(await run(n, where))
        shutil.rmtree(where)
    reporter.finish(outcomes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lib", required=True, choices=LIBS)
    parser.add_argument("--case", required=True, choices=CASES)
    parser.add_argument("--store", default="sqlite", choices=STORES)
    parser.add_argument("--url", default=None, help="PostgreSQL URL (--store postgres)")
    parser.add_argument("--variant", default="commit1", choices=FLOOR_VARIANTS, help="the floor's variant")
    parser.add_argument(
        "--synchronous", default=None, choices=("NORMAL", "FULL"), help="LangGraph: PRAGMA synchronous on its SQLite"
    )
    parser.add_argument("--n", type=int, required=True, help="steps of a run, items of a map")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs")
    parser.add_argument("--warmup-n", type=int, default=100, help="size of the untimed warm-up run (0: none)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds: stop then and report what is known")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1 or args.warmup_n < 0:
        parser.error("--n and --repeat must be at least 1, --warmup-n at least 0")

    run = build(args)
    report = {
        "lib": args.lib,
        "version": _version(args.lib),
        "case": args.case,
        "store": args.store,
        "variant": args.variant if args.lib == "floor" else None,
        "n": args.n,
        "python": sys.version.split()[0],
    }
    scratch = Path(tempfile.mkdtemp(prefix="railyard-bench-durable-"))
    # Terminated (a timeout, a stopped driver): unwind, so that the databases are removed below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        reporter = Reporter(report, args.time_limit, scratch)
        asyncio.run(measure(run, reporter, scratch, n=args.n, repeat=args.repeat, warmup_n=args.warmup_n))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
