"""Benchmark durable runs: railyard's stores against LangGraph's checkpointers, and the floor.

The workloads are in `bench/durable_workload.py`, one fresh subprocess per measurement:

1. a one-node countdown run of N steps (250, 1,000, 4,000, 16,000) on SQLite: railyard's
   `SqliteStore` against LangGraph's `AsyncSqliteSaver` with `durability="sync"`;
2. the same run on railyard's `FileStore` (no peer);
3. the floor: raw `sqlite3` commits of a ~200-byte JSON row (one and two per step), and a
   bare `await` loop;
4. with `--postgres URL`: the countdown on `PostgresStore` against `AsyncPostgresSaver`;
5. a durable builder map of 10,000 items (and 100,000, railyard only) on SQLite, against
   the same map in memory and LangGraph's `Send` fan-out on `AsyncSqliteSaver`;
6. storage: a 10,000-step run whose state's list grows by a 100-byte string a step, and
   the bytes each library's SQLite database holds afterwards.

railyard and the floor run in the project's virtual environment; LangGraph in
`.bench-venvs/langgraph-durable` (langgraph 1.2.22 with its SQLite and PostgreSQL
checkpointers), made here on first use. The timed measurements are taken in rounds that
alternate the libraries and reverse their order every other round, so that load from
elsewhere on the machine falls on all alike; the storage runs (bytes, not time) run side
by side.

    .venv/bin/python bench/durable.py                 # about 4 minutes on a quiet 2-core machine
    .venv/bin/python bench/durable.py --quick         # a smoke test: small N, one round
    .venv/bin/python bench/durable.py --postgres postgresql://user@host/db
    .venv/bin/python bench/durable.py --postgres auto  # a temporary local server
    .venv/bin/python bench/durable.py --check         # exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from _report import interpreter, load_average, table, us
from _venvs import VENVS, ensure_venv, installed_version, venv_python

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "durable_workload.py"

LANGGRAPH_VERSION = "1.2.22"
LANGGRAPH_VENV = "langgraph-durable"
LANGGRAPH_REQUIREMENTS = (
    f"langgraph=={LANGGRAPH_VERSION}",
    "langgraph-checkpoint-sqlite",
    "aiosqlite",
    "langgraph-checkpoint-postgres",
    "psycopg[binary]",
    "psycopg-pool",
)
LANGGRAPH_EXTRAS = (*LANGGRAPH_REQUIREMENTS[1:4], "psycopg", "psycopg-pool")
"""What else the side environment must hold, besides langgraph itself."""

TARGET_SQLITE_PEER = 1 / 15
"""railyard's SQLite step costs at most this share of LangGraph's AsyncSqliteSaver step, at every N."""
TARGET_FLAT = 1.5
"""µs/step at the largest N over µs/step at the smallest, at most (railyard, each store)."""
TARGET_POSTGRES_PEER = 0.35
"""railyard's PostgreSQL step costs at most this share of LangGraph's AsyncPostgresSaver step."""
TARGET_MAP_SECONDS = 1.0
"""A durable map of 10,000 items on SQLite takes at most this (scaled by N/10,000 on other N)."""
TARGET_MAP_MEMORY_RATIO = 10.0
"""A durable map on SQLite takes at most this many times the same map in memory."""
TARGET_BIG_MAP_SECONDS = 10.0
"""A durable map of 100,000 items on SQLite takes at most this."""
TARGET_BIG_MAP_MB = 300.0
"""...and its process's peak resident memory stays within this."""
TARGET_STORAGE_MB = 20.0
"""The storage run of 10,000 steps leaves at most this in railyard's database (scaled by N/10,000)."""
NOISY_SPREAD = 0.10
"""A measurement whose subprocesses spread more than this (max/min - 1) is reported as noisy."""
MB = 1024 * 1024


# -- the environments -------------------------------------------------------------------


def langgraph_python() -> Path:
    """The side environment's python, made (or remade) when langgraph or a checkpointer is missing."""
    python = venv_python(VENVS / LANGGRAPH_VENV)

    def fit(version: str) -> bool:
        return version == LANGGRAPH_VERSION and all(installed_version(python, d) for d in LANGGRAPH_EXTRAS)

    return ensure_venv(LANGGRAPH_VENV, LANGGRAPH_REQUIREMENTS, "langgraph", fit)


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# -- measurements -----------------------------------------------------------------------


@dataclass
class Measurement:
    """One workload of one library, measured in one subprocess per round."""

    label: str
    lib: str
    """`railyard`, `langgraph` or `floor` (the workload's `--lib`)."""
    python: Path
    case: str
    n: int
    store: str = "sqlite"
    variant: str | None = None
    synchronous: str | None = None
    url: str | None = None
    repeat: int = 1
    """Timed runs per subprocess."""
    rounds: int = 1
    """Subprocesses, at most: one per round, in the first `rounds` rounds."""
    time_limit: float | None = None
    seconds: list[float] = field(default_factory=list)
    """Every timed run of every subprocess."""
    process_medians: list[float] = field(default_factory=list)
    peaks_mb: list[float] = field(default_factory=list)
    """The peak resident memory of each subprocess, whole (imports included)."""
    stored: list[int] = field(default_factory=list)
    """Bytes the store held after each run (the storage case)."""
    version: str = ""
    stopped: bool = False
    """Stopped by its time limit: `stored` holds the bytes so far, a lower bound."""
    steps_done: int | None = None
    processes: int = 0

    def command(self) -> list[str]:
        command = [
            str(self.python),
            str(WORKLOAD),
            f"--lib={self.lib}",
            f"--case={self.case}",
            f"--store={self.store}",
            f"--n={self.n}",
            f"--repeat={self.repeat}",
        ]
        if self.variant is not None:
            command.append(f"--variant={self.variant}")
        if self.synchronous is not None:
            command.append(f"--synchronous={self.synchronous}")
        if self.url is not None:
            command.append(f"--url={self.url}")
        if self.time_limit is not None:
            command.append(f"--time-limit={self.time_limit}")
        return command

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

    def take(self, process: subprocess.Popen[str]) -> None:
        """Read the report of a finished subprocess."""
        try:
            stdout, stderr = process.communicate(timeout=1800)
        except subprocess.TimeoutExpired:
            process.terminate()  # the workload removes its databases on SIGTERM
            process.wait(timeout=30)
            raise SystemExit(f"bench: {self.label} {self.case} (N={self.n:,}) ran over 30 minutes") from None
        if process.returncode != 0:
            sys.stderr.write(stdout + stderr)
            raise SystemExit(f"bench: {self.label} {self.case} (N={self.n:,}) failed (exit {process.returncode})")
        report = json.loads(stdout.strip().splitlines()[-1])
        self.processes += 1
        self.version = report["version"]
        self.peaks_mb.append(report["peak_mb"])
        self.stored.extend(report["bytes"])
        if report["stopped_after"] is not None:
            self.stopped = True
            self.steps_done = report["steps_done"]
            return
        self.seconds.extend(report["seconds"])
        self.process_medians.append(statistics.median(report["seconds"]))

    def run_once(self) -> None:
        if self.processes >= self.rounds or self.stopped:
            return
        self.take(self.start())

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def us_per_step(self) -> float:
        return self.median / self.n * 1e6

    @property
    def best_us_per_step(self) -> float:
        return self.best / self.n * 1e6

    @property
    def peak(self) -> float:
        return statistics.median(self.peaks_mb)

    @property
    def spread(self) -> float:
        """How far the subprocesses disagree: their largest median over their smallest, less 1."""
        if len(self.process_medians) < 2:
            return 0.0
        return max(self.process_medians) / min(self.process_medians) - 1


def run_rounds(ms: list[Measurement], rounds: int, title: str) -> None:
    for i in range(rounds):
        start = time.perf_counter()
        for m in ms if i % 2 == 0 else reversed(ms):
            m.run_once()
        print(f"  {title} round {i + 1}/{rounds}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)


def run_side_by_side(ms: list[Measurement], title: str) -> None:
    """One subprocess each, all at once (measurements of size, not of time)."""
    start = time.perf_counter()
    running = [(m, m.start()) for m in ms]
    for m, process in running:
        m.take(process)
    print(f"  {title}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)


@dataclass
class Plan:
    node_ns: tuple[int, ...]
    rounds: int
    long_n: int
    """From this N on, LangGraph is measured in `long_rounds` rounds only (a run takes tens of seconds)."""
    long_rounds: int
    railyard_steps: int
    """A railyard subprocess runs about this many steps: N x repeat, repeat at least 1."""
    peer_steps: int
    """The same for LangGraph."""
    normal_n: int
    """N of LangGraph with its SQLite connection at synchronous=NORMAL (railyard's setting), for information."""
    floor_n: int
    floor_full_n: int
    """N of the floor with synchronous=FULL (a commit waits for the disk: slower, and flat all the same)."""
    floor_repeat: int
    postgres_ns: tuple[int, ...]
    map_n: int
    map_peer_rounds: int
    big_map_n: int | None
    storage_n: int
    storage_limit: float
    """Seconds a storage run may take before it is stopped and its bytes so far reported."""


FULL_PLAN = Plan(
    node_ns=(250, 1_000, 4_000, 16_000),
    rounds=3,
    long_n=4_000,
    long_rounds=1,
    railyard_steps=4_000,
    peer_steps=500,
    normal_n=1_000,
    floor_n=4_000,
    floor_full_n=1_000,
    floor_repeat=5,
    postgres_ns=(250, 1_000),
    map_n=10_000,
    map_peer_rounds=1,
    big_map_n=100_000,
    storage_n=10_000,
    storage_limit=180.0,
)
QUICK_PLAN = Plan(
    node_ns=(250, 1_000),
    rounds=1,
    long_n=16_000,
    long_rounds=1,
    railyard_steps=1_000,
    peer_steps=250,
    normal_n=250,
    floor_n=1_000,
    floor_full_n=250,
    floor_repeat=2,
    postgres_ns=(250,),
    map_n=1_000,
    map_peer_rounds=1,
    big_map_n=None,
    storage_n=1_000,
    storage_limit=60.0,
)


@dataclass
class Results:
    plan: Plan
    node: dict[str, Measurement]
    map: dict[str, Measurement]
    storage: dict[str, Measurement]
    postgres: bool


def _repeat(steps: int, n: int) -> int:
    return max(1, steps // n)


def measure(plan: Plan, railyard: Path, langgraph: Path, postgres_url: str | None) -> Results:
    node: dict[str, Measurement] = {}
    for n in plan.node_ns:
        ry_repeat, lg_repeat = _repeat(plan.railyard_steps, n), _repeat(plan.peer_steps, n)
        lg_rounds = plan.long_rounds if n >= plan.long_n else plan.rounds
        node[f"ry-sqlite-{n}"] = Measurement(
            "railyard SqliteStore", "railyard", railyard, "node", n, repeat=ry_repeat, rounds=plan.rounds
        )
        node[f"lg-sqlite-{n}"] = Measurement(
            "LangGraph AsyncSqliteSaver", "langgraph", langgraph, "node", n, repeat=lg_repeat, rounds=lg_rounds
        )
        node[f"ry-file-{n}"] = Measurement(
            "railyard FileStore", "railyard", railyard, "node", n, "file", repeat=ry_repeat, rounds=plan.rounds
        )
    node["lg-sqlite-normal"] = Measurement(
        "LangGraph AsyncSqliteSaver, synchronous=NORMAL",
        "langgraph",
        langgraph,
        "node",
        plan.normal_n,
        synchronous="NORMAL",
        repeat=_repeat(plan.peer_steps, plan.normal_n),
        rounds=plan.rounds,
    )
    for variant, label in FLOORS.items():
        full = variant == "commit1-full"
        repeat = max(1, plan.floor_repeat // 2) if full else plan.floor_repeat
        n = plan.floor_full_n if full else plan.floor_n
        node[f"floor-{variant}"] = Measurement(
            label, "floor", railyard, "floor", n, variant=variant, repeat=repeat, rounds=plan.rounds
        )
    if postgres_url is not None:
        for n in plan.postgres_ns:
            node[f"ry-pg-{n}"] = Measurement(
                "railyard PostgresStore",
                "railyard",
                railyard,
                "node",
                n,
                "postgres",
                url=postgres_url,
                repeat=_repeat(plan.peer_steps, n),
                rounds=plan.rounds,
            )
            node[f"lg-pg-{n}"] = Measurement(
                "LangGraph AsyncPostgresSaver",
                "langgraph",
                langgraph,
                "node",
                n,
                "postgres",
                url=postgres_url,
                repeat=_repeat(plan.peer_steps // 2, n),
                rounds=plan.rounds,
            )
    ns = ", ".join(f"{n:,}" for n in plan.node_ns)
    run_rounds(list(node.values()), plan.rounds, f"node steps N = {ns}")

    maps = {
        "ry-memory": Measurement("railyard.builder in memory", "railyard", railyard, "map", plan.map_n, "memory"),
        "ry-sqlite": Measurement("railyard.builder SqliteStore", "railyard", railyard, "map", plan.map_n),
        "lg-sqlite": Measurement("LangGraph Send AsyncSqliteSaver", "langgraph", langgraph, "map", plan.map_n),
    }
    for m in maps.values():
        m.rounds = plan.map_peer_rounds if m.lib == "langgraph" else plan.rounds
    run_rounds(list(maps.values()), plan.rounds, f"map N = {plan.map_n:,}")
    if plan.big_map_n is not None:
        big = Measurement("railyard.builder SqliteStore", "railyard", railyard, "map", plan.big_map_n)
        maps["ry-sqlite-big"] = big
        run_rounds([big], 1, f"map N = {plan.big_map_n:,}")

    storage = {
        key: Measurement(label, lib, python, "storage", plan.storage_n, time_limit=plan.storage_limit)
        for key, label, lib, python in (
            ("ry", "railyard SqliteStore", "railyard", railyard),
            ("lg", "LangGraph AsyncSqliteSaver", "langgraph", langgraph),
        )
    }
    run_side_by_side(list(storage.values()), f"storage N = {plan.storage_n:,} (side by side)")
    return Results(plan, node, maps, storage, postgres_url is not None)


FLOORS = {
    "commit1": "sqlite3: 1 commit/step",
    "commit2": "sqlite3: 2 commits/step",
    "commit1-full": "sqlite3: 1 commit/step, synchronous=FULL",
    "await": "await a trivial coroutine",
}


# -- the verdict ------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    n: str
    railyard: str
    reference: str
    ratio: float | None
    """railyard's figure over the reference; `None`: not measured."""
    ratio_best: float | None
    target: float | None
    """The ratio must be at most this; `None`: for information."""
    target_label: str = ""
    fmt: Callable[[float], str] = lambda r: f"{r:.3f}"
    at_least: bool = False
    """railyard's figure is a lower bound (its run was stopped): the ratio is one too."""

    @property
    def result(self) -> str:
        if self.target is None:
            return "info"
        if self.ratio is None:
            return "n/a"
        if self.ratio <= self.target:
            return "UNDECIDED" if self.at_least else "PASS"
        return "MISS"

    def row(self) -> list[str]:
        ratio = "-" if self.ratio is None else (">= " if self.at_least else "") + self.fmt(self.ratio)
        best = "-" if self.ratio_best is None else self.fmt(self.ratio_best)
        target = "-" if self.target is None else self.target_label or f"<= {self.fmt(self.target)}"
        return [self.name, self.n, self.railyard, self.reference, ratio, best, target, self.result]


def _times(r: float) -> str:
    return f"{r:.2f}x"


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _mb(value: float) -> str:
    return f"{value:,.1f} MB"


def _per_step(a: Measurement, b: Measurement, name: str, target: float | None, label: str) -> Check:
    return Check(
        name,
        f"{a.n:,}",
        f"{us(a.us_per_step)} us",
        f"{us(b.us_per_step)} us",
        a.median / b.median * (b.n / a.n),
        a.best / b.best * (b.n / a.n),
        target,
        label,
    )


def _flat(ms: dict[str, Measurement], store: str, ns: tuple[int, ...]) -> Check:
    small, big = ms[f"ry-{store}-{ns[0]}"], ms[f"ry-{store}-{ns[-1]}"]
    check = _per_step(big, small, f"{small.label} flat: N={big.n:,} vs {small.n:,}", TARGET_FLAT, "")
    check.fmt = _times
    return check


def storage_target(plan: Plan) -> float:
    return TARGET_STORAGE_MB * plan.storage_n / 10_000


def map_target(plan: Plan) -> float:
    return TARGET_MAP_SECONDS * plan.map_n / 10_000


def checks(results: Results) -> list[Check]:
    plan, node, maps = results.plan, results.node, results.map
    cs = [
        _per_step(node[f"ry-sqlite-{n}"], node[f"lg-sqlite-{n}"], "SQLite step vs LangGraph", TARGET_SQLITE_PEER, "")
        for n in plan.node_ns
    ]
    for c in cs:
        c.target_label = "<= 1/15"
    cs.append(_flat(node, "sqlite", plan.node_ns))
    cs.append(_flat(node, "file", plan.node_ns))
    if results.postgres:
        for n in plan.postgres_ns:
            cs.append(
                _per_step(
                    node[f"ry-pg-{n}"], node[f"lg-pg-{n}"], "PostgreSQL step vs LangGraph", TARGET_POSTGRES_PEER, ""
                )
            )
    ry, memory, lg = maps["ry-sqlite"], maps["ry-memory"], maps["lg-sqlite"]
    within = map_target(plan)
    cs += [
        Check(
            "durable map on SQLite",
            f"{plan.map_n:,}",
            _seconds(ry.median),
            f"{_seconds(within)} (target)",
            ry.median / within,
            ry.best / within,
            1.0,
            f"<= {_seconds(within)}",
            _times,
        ),
        Check(
            "durable map vs in memory",
            f"{plan.map_n:,}",
            _seconds(ry.median),
            _seconds(memory.median),
            ry.median / memory.median,
            ry.best / memory.best,
            TARGET_MAP_MEMORY_RATIO,
            fmt=_times,
        ),
        Check(
            "durable map vs LangGraph Send",
            f"{plan.map_n:,}",
            _seconds(ry.median),
            _seconds(lg.median),
            ry.median / lg.median,
            ry.best / lg.best,
            None,
        ),
    ]
    big = maps.get("ry-sqlite-big")
    if big is not None:
        cs += [
            Check(
                "durable map on SQLite",
                f"{big.n:,}",
                _seconds(big.median),
                f"{_seconds(TARGET_BIG_MAP_SECONDS)} (target)",
                big.median / TARGET_BIG_MAP_SECONDS,
                None,
                1.0,
                f"<= {_seconds(TARGET_BIG_MAP_SECONDS)}",
                _times,
            ),
            Check(
                "durable map peak memory",
                f"{big.n:,}",
                _mb(big.peak),
                f"{_mb(TARGET_BIG_MAP_MB)} (target)",
                big.peak / TARGET_BIG_MAP_MB,
                None,
                1.0,
                f"<= {_mb(TARGET_BIG_MAP_MB)}",
                _times,
            ),
        ]
    ry_s, lg_s = results.storage["ry"], results.storage["lg"]
    cap = storage_target(plan)
    ry_mb = max(ry_s.stored) / MB
    cs.append(
        Check(
            "storage: database size",
            f"{plan.storage_n:,}",
            ("> " if ry_s.stopped else "") + _mb(ry_mb),
            f"{_mb(cap)} (target)",
            ry_mb / cap,
            None,
            1.0,
            f"<= {_mb(cap)}",
            _times,
            at_least=ry_s.stopped,
        )
    )
    if lg_s.stored:
        lg_mb = max(lg_s.stored) / MB
        cs.append(
            Check(
                "storage vs LangGraph",
                f"{plan.storage_n:,}",
                ("> " if ry_s.stopped else "") + _mb(ry_mb),
                ("> " if lg_s.stopped else "") + _mb(lg_mb),
                None if ry_s.stopped or lg_s.stopped else ry_mb / lg_mb,
                None,
                None,
            )
        )
    return cs


# -- the details ------------------------------------------------------------------------


def node_table(results: Results) -> str:
    plan, node = results.plan, results.node
    ns = plan.node_ns
    header = ["store", "library", *(f"N={n:,}" for n in ns), "growth"]

    def growth(key: str) -> str:
        return _times(node[f"{key}-{ns[-1]}"].us_per_step / node[f"{key}-{ns[0]}"].us_per_step)

    def cells(key: str, wanted: tuple[int, ...] = ns) -> list[str]:
        return [us(node[f"{key}-{n}"].us_per_step) if n in wanted else "-" for n in ns]

    def ratios(a: str, b: str, wanted: tuple[int, ...] = ns) -> list[str]:
        return [f"{node[f'{a}-{n}'].median / node[f'{b}-{n}'].median:.3f}" if n in wanted else "-" for n in ns]

    lg_version = node[f"lg-sqlite-{ns[0]}"].version
    normal = node["lg-sqlite-normal"]
    rows = [
        ["SQLite", "railyard SqliteStore", *cells("ry-sqlite"), growth("ry-sqlite")],
        ["SQLite", f"LangGraph {lg_version} AsyncSqliteSaver", *cells("lg-sqlite"), growth("lg-sqlite")],
        ["SQLite", "  ratio railyard / LangGraph", *ratios("ry-sqlite", "lg-sqlite"), ""],
        [
            "SQLite",
            "LangGraph, synchronous=NORMAL (info)",
            *(us(normal.us_per_step) if n == normal.n else "-" for n in ns),
            "",
        ],
        ["files", "railyard FileStore", *cells("ry-file"), growth("ry-file")],
    ]
    if results.postgres:
        pg = plan.postgres_ns
        rows += [
            ["PostgreSQL", "railyard PostgresStore", *cells("ry-pg", pg), ""],
            ["PostgreSQL", f"LangGraph {lg_version} AsyncPostgresSaver", *cells("lg-pg", pg), ""],
            ["PostgreSQL", "  ratio railyard / LangGraph", *ratios("ry-pg", "lg-pg", pg), ""],
        ]
    return table(header, rows, right=set(range(2, 3 + len(ns))))


def floor_table(results: Results) -> str:
    node = results.node
    rows = [[m.label, f"{m.n:,}", us(m.us_per_step)] for m in (node[f"floor-{v}"] for v in FLOORS)]
    return table(["floor (in one process, no library)", "N", "us/step"], rows, right={1, 2})


def above_floor(results: Results) -> str:
    node = results.node
    n = max(n for n in results.plan.node_ns if n <= results.plan.floor_n)
    two = node["floor-commit2"].us_per_step
    ry, lg = node[f"ry-sqlite-{n}"].us_per_step, node[f"lg-sqlite-{n}"].us_per_step
    return (
        f"At N = {n:,}, above two raw commits ({us(two)} us): railyard SqliteStore {us(ry - two)} us/step "
        f"({ry / two:.1f}x the floor), LangGraph AsyncSqliteSaver {us(lg - two)} us/step ({lg / two:.1f}x)."
    )


def map_table(results: Results) -> str:
    rows = []
    for key in ("ry-memory", "ry-sqlite", "lg-sqlite", "ry-sqlite-big"):
        m = results.map.get(key)
        if m is None:
            continue
        label = f"LangGraph {m.version} Send AsyncSqliteSaver" if m.lib == "langgraph" else m.label
        rows.append([label, f"{m.n:,}", _seconds(m.median), us(m.median / m.n * 1e6), _mb(m.peak)])
    return table(["map", "items", "seconds", "us/item", "peak RSS"], rows, right={1, 2, 3, 4})


def storage_table(results: Results) -> str:
    rows = []
    for m in results.storage.values():
        label = f"LangGraph {m.version} AsyncSqliteSaver" if m.lib == "langgraph" else m.label
        stored = max(m.stored) if m.stored else 0
        if m.stopped:
            done = m.steps_done or 0
            rows.append(
                [
                    label,
                    f"{done:,} of {m.n:,} (stopped)",
                    "> " + _mb(stored / MB),
                    f"> {stored / m.n:,.0f}",
                    f"> {m.time_limit:.0f} s",
                ]
            )
            continue
        rows.append([label, f"{m.n:,}", _mb(stored / MB), f"{stored / m.n:,.0f}", _seconds(m.median)])
    return table(["storage", "steps", "database", "bytes/step", "run time"], rows, right={1, 2, 3, 4})


def every_measurement(results: Results) -> str:
    rows: list[list[str]] = []
    for m in [*results.node.values(), *results.map.values(), *results.storage.values()]:
        scale = 1.0 if m.case == "map" else 1e6 / m.n

        def fmt(seconds: float, scale: float = scale) -> str:
            return us(seconds * scale) if scale != 1.0 else f"{seconds:.3f}"

        if not m.seconds:
            rows.append([m.label, m.case, f"{m.n:,}", "stopped", "", "", "", f"{m.peak:.1f}", f"{m.processes}"])
            continue
        rows.append(
            [
                m.label,
                m.case,
                f"{m.n:,}",
                fmt(m.median),
                fmt(m.best),
                fmt(max(m.seconds)),
                f"{m.spread * 100:.0f}%",
                f"{m.peak:.1f}",
                f"{len(m.seconds)} ({m.processes}x{m.repeat})",
            ]
        )
    header = ["measurement", "case", "N", "median", "best", "worst", "spread", "peak MB", "runs (procs x runs)"]
    return table(header, rows, right={2, 3, 4, 5, 6, 7})


def report(results: Results, quick: bool) -> bool:
    """Print the verdict and the details; whether no target is missed."""
    plan = results.plan
    cs = checks(results)
    print()
    header = ["target", "N", "railyard", "reference", "ratio", "ratio(best)", "target", "result"]
    print(table(header, [c.row() for c in cs], right={1, 2, 3, 4, 5}))
    print()
    print("ratio: railyard's figure / the reference's, on the medians (ratio(best): on the best runs); a step's")
    print("figures are us per step; 'flat' compares railyard with itself at the largest and the smallest N.")
    print('LangGraph runs with durability="sync" (each checkpoint written before the next step). Its SQLite')
    print("connection keeps SQLite's default synchronous=FULL (a commit waits for the disk); railyard's SqliteStore")
    print("uses synchronous=NORMAL: the 'synchronous=NORMAL' row and the floor below show what that difference costs.")
    if plan.storage_n != 10_000 or plan.map_n != 10_000:
        print(
            f"Targets scaled to N: map {_seconds(map_target(plan))} at {plan.map_n:,} items, storage "
            f"{_mb(storage_target(plan))} at {plan.storage_n:,} steps."
        )
    if results.storage["ry"].stopped or results.storage["lg"].stopped:
        print(
            f"A storage run was stopped after {plan.storage_limit:.0f} s: its figures are lower bounds (the bytes "
            "stored so far); a MISS over them holds for the whole run."
        )
    if quick:
        print("QUICK RUN: small N, one round: a smoke test, not the measurement.")

    print()
    print("Durable node step, us per step (median):")
    print(node_table(results))
    print("growth: us/step at the largest N / at the smallest.")
    print()
    print(floor_table(results))
    print(above_floor(results))
    print()
    print(map_table(results))
    print("peak RSS: the subprocess's peak resident memory, whole (interpreter and imports included).")
    print()
    print(storage_table(results))
    print("database: the SQLite file with its -wal and -shm after the store is closed; each step appends a")
    print("100-byte string to a list in the state. The two runs ran side by side: their times are for information.")
    print()
    print("Every measurement (us/step; the map: seconds per run):")
    print(every_measurement(results))
    print("spread: how far the subprocesses disagree (their largest median / their smallest, less 1).")
    noisy = [m for m in [*results.node.values(), *results.map.values()] if m.spread > NOISY_SPREAD]
    if noisy:
        names = "; ".join(f"{m.label} {m.case} N={m.n:,} ({m.spread * 100:.0f}%)" for m in noisy)
        print(f"NOTE: noisy (spread > {NOISY_SPREAD:.0%}): {names}; rerun, or raise --rounds.")
    return all(c.result != "MISS" for c in cs)


def _rounds(n: int) -> str:
    return f"{n} round" if n == 1 else f"{n} rounds"


def _filesystem(path: str) -> str:
    done = subprocess.run(["df", "-PT", path], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    return lines[-1].split()[1] if done.returncode == 0 and len(lines) > 1 else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="railyard's durable runs vs LangGraph's checkpointers, and the floor.")
    parser.add_argument("--quick", action="store_true", help="smoke test: small N, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the timed measurements (default 3)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="also measure PostgreSQL at this URL ('auto': a temporary local server, as the tests start)",
    )
    parser.add_argument(
        "--storage-limit", type=float, default=None, help="seconds a storage run may take (default 180)"
    )
    parser.add_argument("--check", action="store_true", help="exit with 1 if a target is missed")
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        plan = replace(plan, rounds=args.rounds, long_rounds=max(1, args.rounds // 3))
    if args.storage_limit is not None:
        plan = replace(plan, storage_limit=args.storage_limit)

    started = time.perf_counter()
    railyard = Path(sys.executable)
    langgraph = langgraph_python()
    print('durable-run benchmark: railyard vs LangGraph checkpointers (durability="sync"), and the floor')
    for name, python in (("railyard", railyard), ("LangGraph", langgraph)):
        where = python.relative_to(REPO) if python.is_relative_to(REPO) else python
        print(f"  {name + ':':<11} {interpreter(python)} ({where})")
    versions = ", ".join(f"{d} {installed_version(langgraph, d)}" for d in ("langgraph", *LANGGRAPH_EXTRAS))
    print(f"  LangGraph side: {versions}")
    scratch = tempfile.gettempdir()
    print(f"  SQLite {sqlite3.sqlite_version}; databases in {scratch} ({_filesystem(scratch)})")
    if args.postgres and args.postgres != "auto":
        print(f"  PostgreSQL: {redacted(args.postgres)}")
    print(f"  machine: {platform.machine()}, {os.cpu_count()} cpus, load average at start {load_average()}")
    long = f"; LangGraph at N >= {plan.long_n:,}: {plan.long_rounds}" if plan.node_ns[-1] >= plan.long_n else ""
    big = f" and {plan.big_map_n:,} (railyard, once)" if plan.big_map_n else ""
    print(f"  node N = {', '.join(f'{n:,}' for n in plan.node_ns)} ({_rounds(plan.rounds)}{long})")
    print(f"  map N = {plan.map_n:,} ({_rounds(plan.rounds)}; LangGraph: {plan.map_peer_rounds}){big}")
    print(f"  storage N = {plan.storage_n:,} (once each); a fresh process and a fresh database per measurement")
    sys.stdout.flush()

    server = None
    if args.postgres == "auto":
        sys.path.insert(0, str(REPO))
        from tests.support.postgres import PostgresServer  # the server the test suite starts

        server = PostgresServer.start()
        args.postgres = server.url
        print(f"  PostgreSQL: a temporary server at {redacted(server.url)}")
    try:
        results = measure(plan, railyard, langgraph, args.postgres)
    finally:
        if server is not None:
            server.stop()
    ok = report(results, args.quick)
    print()
    print(f"load average at end {load_average()}; total {time.perf_counter() - started:.0f}s")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
