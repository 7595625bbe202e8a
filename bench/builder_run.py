"""Benchmark railyard.builder against pydantic-graph's builders, LangGraph and asyncio.gather.

The workloads are in `bench/builder.py`: a map of N items (`x * 2`, an async step) into a
`reduce_list_append` join, and a step looping on a decision N times. railyard and the
`asyncio.gather` floor run in the project's virtual environment (the interpreter running
this script); each peer runs in a side one under `.bench-venvs/`, created here on first
use: pydantic-graph 1.96.1 (`pydantic_graph.beta`), the latest pydantic-graph 2.x
(top-level `pydantic_graph`) and LangGraph (a `Send` fan-out). Each measurement is a
fresh subprocess, which reports the run's wall time and the peak memory it added over a
baseline taken once everything is imported and built. The 10,000-item map and the loop
are measured in rounds that alternate the libraries and reverse their order every other
round, so that load from elsewhere on the machine falls on all alike.

    .venv/bin/python bench/builder_run.py          # about 3.5 minutes on a 2-core machine
    .venv/bin/python bench/builder_run.py --quick  # a smoke test: small N, 1 round
    .venv/bin/python bench/builder_run.py --check  # exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _report import interpreter, load_average, table, us
from _venvs import ensure_venv, installed_version

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "builder.py"

TARGET_MAP_PEER = 1 / 20
"""railyard's map takes at most this share of the fastest peer's time."""
TARGET_MAP_FLOOR = 5.0
"""railyard's map takes at most this many times the time of `asyncio.gather`."""
TARGET_MAP_MEMORY = 0.5
"""railyard's map adds at most this share of the leanest peer's peak memory."""
MEMORY_CEILING_MB = 2048.0
"""railyard's map over the big N stays within this peak memory over the baseline (2 GiB)."""
TARGET_LOOP = 1 / 10
"""railyard's loop costs at most this share of the faster pydantic-graph builder, per step."""
LIMIT_MARGIN = 1.25
"""A peer on the big map is stopped this much later than the time that decides the target over railyard's."""
SKIP_AFTER_S = 20.0
"""A peer whose small map takes longer than this is not run on the big one."""
NOISY_SPREAD = 0.10
"""A measurement whose subprocesses spread more than this (max/min - 1) is reported as noisy."""


# -- the environments -------------------------------------------------------------------


@dataclass(frozen=True)
class Library:
    key: str
    short: str
    """Its name, without version."""
    root: str
    """The import root `bench/builder.py` runs the workloads on."""
    venv: str | None = None
    """The side environment under `.bench-venvs/`; `None`: the project's own."""
    requirement: str = ""
    distribution: str = ""
    accepts: Callable[[str], bool] = lambda version: True
    """Whether the installed version of `distribution` will do."""
    detail: str = ""
    """What follows the version in its label."""
    peer: bool = True
    """A peer, to beat; not one: railyard itself, or the floor."""

    def label(self, version: str = "") -> str:
        if not self.peer:
            return self.short
        return f"{self.short} {version or f'({self.requirement})'}{self.detail}"

    def python(self) -> Path:
        """The interpreter of its environment, the side environment made if missing."""
        if self.venv is None:
            return Path(sys.executable)
        return ensure_venv(self.venv, [self.requirement], self.distribution, self.accepts)


RAILYARD = Library("railyard", "railyard.builder", "railyard.builder", peer=False)
PG1 = Library(
    "pg1",
    "pydantic-graph",
    "pydantic_graph.beta",
    "pydantic-graph-1.96.1",
    "pydantic-graph==1.96.1",
    "pydantic-graph",
    lambda version: version == "1.96.1",
    detail=" beta",
)
PG2 = Library(
    "pg2",
    "pydantic-graph",
    "pydantic_graph",
    "pydantic-graph-2",
    "pydantic-graph>=2,<3",
    "pydantic-graph",
    lambda version: version.split(".")[0] == "2",
)
LANGGRAPH = Library("langgraph", "LangGraph", "langgraph", "langgraph", "langgraph", "langgraph", detail=" Send")
GATHER = Library("gather", "asyncio.gather", "gather", peer=False)
MAP_LIBRARIES = (RAILYARD, PG1, PG2, LANGGRAPH, GATHER)
LOOP_LIBRARIES = (RAILYARD, PG1, PG2)


# -- measurements -----------------------------------------------------------------------


@dataclass
class Measurement:
    """One library on one case and N, measured in one subprocess per round."""

    library: Library
    python: Path
    case: str
    n: int
    repeat: int = 1
    """Timed runs per subprocess."""
    time_limit: float | None = None
    """Seconds after which a subprocess stops its timed runs and reports lower bounds."""
    seconds: list[float] = field(default_factory=list)
    """Every timed run, all rounds."""
    process_medians: list[float] = field(default_factory=list)
    peaks_mb: list[float] = field(default_factory=list)
    """Peak memory over the baseline, one per subprocess."""
    version: str = ""
    stopped: bool = False
    """Stopped by its time limit: its time and peak are lower bounds."""
    skipped: str = ""
    """Why it was not run, when it was not."""

    def command(self) -> list[str]:
        command = [
            str(self.python),
            str(WORKLOAD),
            f"--root={self.library.root}",
            f"--case={self.case}",
            f"--n={self.n}",
            f"--repeat={self.repeat}",
        ]
        return [*command, f"--time-limit={self.time_limit}"] if self.time_limit is not None else command

    def run_once(self) -> None:
        if self.skipped or self.stopped:
            return
        done = subprocess.run(self.command(), capture_output=True, text=True, check=False, cwd=REPO, timeout=1800)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"bench: {self.label} {self.case} (N={self.n:,}) failed (exit {done.returncode})")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        self.version = report["version"]
        self.peaks_mb.append(report["peak_mb"])
        if report["stopped_after"] is not None:
            self.stopped = True
            self.seconds.append(report["stopped_after"])
            return
        self.seconds.extend(report["seconds"])
        self.process_medians.append(statistics.median(report["seconds"]))

    @property
    def label(self) -> str:
        return self.library.label(self.version)

    @property
    def ran(self) -> bool:
        return bool(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def peak(self) -> float:
        return statistics.median(self.peaks_mb)

    @property
    def spread(self) -> float:
        """How far the subprocesses disagree: their largest median over their smallest, less 1."""
        if len(self.process_medians) < 2:
            return 0.0
        return max(self.process_medians) / min(self.process_medians) - 1


@dataclass
class Plan:
    small_n: int
    big_n: int
    loop_n: int
    rounds: int
    loop_repeat: int
    time_limit: float
    """Seconds a peer may take on the big map before it is stopped, at most."""


FULL_PLAN = Plan(small_n=10_000, big_n=100_000, loop_n=20_000, rounds=3, loop_repeat=1, time_limit=60.0)
QUICK_PLAN = Plan(small_n=1_000, big_n=5_000, loop_n=2_000, rounds=1, loop_repeat=1, time_limit=10.0)


def run_rounds(ms: list[Measurement], rounds: int, title: str) -> None:
    for i in range(rounds):
        start = time.perf_counter()
        for m in ms if i % 2 == 0 else reversed(ms):
            m.run_once()
        print(f"  {title} round {i + 1}/{rounds}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)


@dataclass
class Results:
    small: dict[str, Measurement]
    big: dict[str, Measurement]
    loop: dict[str, Measurement]
    time_limit: float
    """Seconds after which a peer was stopped on the big map."""


def measure(plan: Plan, pythons: dict[str, Path]) -> Results:
    small = {lib.key: Measurement(lib, pythons[lib.key], "map", plan.small_n) for lib in MAP_LIBRARIES}
    run_rounds(list(small.values()), plan.rounds, f"map N={plan.small_n:,}")

    # railyard first: a peer runs until the target over railyard's time is decided, at most `plan.time_limit`.
    big = {lib.key: Measurement(lib, pythons[lib.key], "map", plan.big_n) for lib in MAP_LIBRARIES}
    start = time.perf_counter()
    big["railyard"].run_once()
    limit = min(plan.time_limit, max(5.0, round(big["railyard"].median / TARGET_MAP_PEER * LIMIT_MARGIN)))
    for lib in MAP_LIBRARIES:
        m = big[lib.key]
        if lib.peer:
            m.time_limit = limit
            if small[lib.key].median > SKIP_AFTER_S:
                m.skipped = "skipped (too slow)"
        if lib is not RAILYARD:
            m.run_once()
    elapsed = time.perf_counter() - start
    print(f"  map N={plan.big_n:,} (peers stopped after {limit:.0f}s): {elapsed:.1f}s", file=sys.stderr, flush=True)

    loop = {
        lib.key: Measurement(lib, pythons[lib.key], "loop", plan.loop_n, repeat=plan.loop_repeat)
        for lib in LOOP_LIBRARIES
    }
    run_rounds(list(loop.values()), plan.rounds, f"loop N={plan.loop_n:,}")
    return Results(small, big, loop, limit)


# -- the report -------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _mb(value: float) -> str:
    return f"{value:.1f}"


@dataclass
class Value:
    """A measured figure, or a lower bound of it (a run stopped by its time limit)."""

    value: float
    at_least: bool = False


@dataclass
class Check:
    target_name: str
    n: int
    railyard: str
    reference: str
    ratio: Value | None
    """railyard's figure over the reference's; `None`: no reference ran."""
    ratio_best: float | None
    target: float
    ratio_format: Callable[[float], str] = lambda r: f"{r:.4f}"

    @property
    def result(self) -> str:
        if self.ratio is None:
            return "n/a"
        if self.ratio.value <= self.target:
            return "PASS"
        # Over a lower bound of the reference, the ratio is an upper bound of the real one.
        return "UNDECIDED" if self.ratio.at_least else "FAIL"

    def row(self) -> list[str]:
        fmt = self.ratio_format
        ratio = "-" if self.ratio is None else ("<= " if self.ratio.at_least else "") + fmt(self.ratio.value)
        best = "-" if self.ratio_best is None else fmt(self.ratio_best)
        return [
            self.target_name,
            f"{self.n:,}",
            self.railyard,
            self.reference,
            ratio,
            best,
            f"<= {fmt(self.target)}",
            self.result,
        ]


def _lowest(ms: list[Measurement], figure: Callable[[Measurement], float]) -> Measurement | None:
    ran = [m for m in ms if m.ran]
    return min(ran, key=figure) if ran else None


def _versus_peer(
    name: str, n: int, ry: Measurement, peers: list[Measurement], *, figure: Callable[[Measurement], float], unit: str
) -> Check:
    """railyard against the peer lowest on `figure` (time or peak memory)."""
    fmt = _mb if unit == "MB" else _seconds
    target = TARGET_MAP_MEMORY if unit == "MB" else TARGET_MAP_PEER
    lowest = _lowest(peers, figure)
    if lowest is None:
        return Check(name, n, f"{fmt(figure(ry))} {unit}", "- (no peer ran)", None, None, target)
    bound = " (at least)" if lowest.stopped else ""
    if unit == "MB":
        best = min(ry.peaks_mb) / min(lowest.peaks_mb)
    else:
        best = None if lowest.stopped else ry.best / lowest.best
    return Check(
        name,
        n,
        f"{fmt(figure(ry))} {unit}",
        f"{fmt(figure(lowest))} {unit}{bound}: {lowest.label}",
        Value(figure(ry) / figure(lowest), lowest.stopped),
        best,
        target,
    )


def map_checks(ms: dict[str, Measurement], n: int) -> list[Check]:
    ry, floor = ms["railyard"], ms["gather"]
    peers = [m for m in ms.values() if m.library.peer]
    return [
        _versus_peer("map time vs fastest peer", n, ry, peers, figure=lambda m: m.median, unit="s"),
        Check(
            "map time vs asyncio.gather",
            n,
            _seconds(ry.median) + " s",
            _seconds(floor.median) + " s",
            Value(ry.median / floor.median),
            ry.best / floor.best,
            TARGET_MAP_FLOOR,
            ratio_format=lambda r: f"{r:.2f}x",
        ),
        _versus_peer("map peak memory vs leanest peer", n, ry, peers, figure=lambda m: m.peak, unit="MB"),
    ]


def checks(results: Results, plan: Plan) -> list[Check]:
    big_ry = results.big["railyard"]
    ceiling = Check(
        "map peak memory within 2 GiB",
        plan.big_n,
        _mb(big_ry.peak) + " MB",
        f"{MEMORY_CEILING_MB:.0f} MB",
        Value(big_ry.peak / MEMORY_CEILING_MB),
        None,
        1.0,
        ratio_format=lambda r: f"{r:.3f}",
    )
    ry = results.loop["railyard"]
    faster = _lowest([results.loop["pg1"], results.loop["pg2"]], lambda m: m.median)
    assert faster is not None
    loop = Check(
        "loop us/step vs faster pydantic-graph",
        plan.loop_n,
        us(ry.median / plan.loop_n * 1e6) + " us",
        f"{us(faster.median / plan.loop_n * 1e6)} us: {faster.label}",
        Value(ry.median / faster.median),
        ry.best / faster.best,
        TARGET_LOOP,
    )
    return [
        *map_checks(results.small, plan.small_n),
        *map_checks(results.big, plan.big_n),
        ceiling,
        loop,
    ]


def _time_cell(m: Measurement, per_step: bool) -> str:
    if m.skipped:
        return m.skipped
    if m.stopped:
        return f"> {m.median:.0f} (stopped)"
    return us(m.median / m.n * 1e6) if per_step else _seconds(m.median)


def _peak_cell(m: Measurement) -> str:
    if m.skipped:
        return "-"
    return (">= " if m.stopped else "") + _mb(m.peak)


def figures(results: Results, plan: Plan) -> str:
    libs = MAP_LIBRARIES
    header = ["case", "N", "figure", *(results.small[lib.key].label for lib in libs)]
    rows: list[list[str]] = []
    for ms in (results.small, results.big):
        n = f"{ms['railyard'].n:,}"
        rows.append(["map", n, "seconds", *(_time_cell(ms[lib.key], False) for lib in libs)])
        rows.append(["map", n, "peak MB", *(_peak_cell(ms[lib.key]) for lib in libs)])
    loop = results.loop
    absent = "-"
    rows.append(
        [
            "loop",
            f"{plan.loop_n:,}",
            "us/step",
            *(_time_cell(loop[lib.key], True) if lib.key in loop else absent for lib in libs),
        ]
    )
    rows.append(
        [
            "loop",
            f"{plan.loop_n:,}",
            "peak MB",
            *(_peak_cell(loop[lib.key]) if lib.key in loop else absent for lib in libs),
        ]
    )
    return table(header, rows, right=set(range(3, 3 + len(libs))))


def every_measurement(results: Results) -> str:
    rows: list[list[str]] = []
    for m in [*results.small.values(), *results.big.values(), *results.loop.values()]:
        if m.skipped:
            rows.append([m.label, m.case, f"{m.n:,}", m.skipped, "", "", "", "", "", ""])
            continue
        unit = 1e6 / m.n if m.case == "loop" else 1.0
        fmt = us if m.case == "loop" else _seconds
        stopped = " (stopped)" if m.stopped else ""
        rows.append(
            [
                m.label,
                m.case,
                f"{m.n:,}",
                fmt(m.median * unit) + stopped,
                fmt(m.best * unit),
                fmt(max(m.seconds) * unit),
                f"{m.spread * 100:.0f}%",
                _mb(m.peak),
                _mb(max(m.peaks_mb)),
                f"{len(m.seconds)} ({len(m.peaks_mb)}x{m.repeat})",
            ]
        )
    header = ["library", "case", "N", "median", "best", "worst", "spread", "peak MB", "max peak", "runs (procs x runs)"]
    return table(header, rows, right={2, 3, 4, 5, 6, 7, 8})


def report(results: Results, plan: Plan, quick: bool) -> bool:
    """Print the tables; whether every target is met."""
    print()
    print(figures(results, plan))
    print()
    print("seconds: wall time of a whole run (median over the runs); us/step: the loop's time / N;")
    print("peak MB: the process's peak resident memory after the run less its peak before (median over processes).")
    print()
    cs = checks(results, plan)
    header = ["target", "N", "railyard", "reference", "ratio", "ratio(best)", "target", "result"]
    print(table(header, [c.row() for c in cs], right={1, 2, 3, 4, 5}))
    print()
    print("ratio: railyard's figure / the reference's, on the medians (ratio(best): on the best runs or processes).")
    print("peers: pydantic-graph 1.96.1 and 2.x, LangGraph; asyncio.gather is the floor, not a peer.")
    stopped = [m for m in results.big.values() if m.stopped]
    if stopped:
        names = ", ".join(m.label for m in stopped)
        print(
            f"stopped: {names} ran past the {results.time_limit:.0f} s limit at N = {plan.big_n:,}; "
            "their time and peak are lower bounds, the ratios over them upper bounds."
        )
    if quick:
        print("QUICK RUN: small N, one round: a smoke test, not the measurement.")
    print()
    print("Every measurement:")
    print(every_measurement(results))
    print("spread: how far the subprocesses disagree (their largest median / their smallest, less 1).")
    ms = [*results.small.values(), *results.loop.values()]
    noisy = [m for m in ms if m.spread > NOISY_SPREAD]
    if noisy:
        names = "; ".join(f"{m.label} {m.case} N={m.n:,} ({m.spread * 100:.0f}%)" for m in noisy)
        print(f"NOTE: noisy (spread > {NOISY_SPREAD:.0%}): {names}; rerun, or raise --rounds.")
    return all(c.result != "FAIL" for c in cs)


def _rounds(n: int) -> str:
    return f"{n} round" if n == 1 else f"{n} rounds"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="railyard.builder vs pydantic-graph, LangGraph and asyncio.gather.")
    parser.add_argument("--quick", action="store_true", help="smoke test: small N, one round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the small map and the loop (default 3)")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds a peer may take on the big map (default 30)"
    )
    parser.add_argument("--check", action="store_true", help="exit with 1 if a target is missed")
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})
    if args.time_limit is not None:
        plan = Plan(**{**plan.__dict__, "time_limit": args.time_limit})

    started = time.perf_counter()
    pythons = {lib.key: lib.python() for lib in MAP_LIBRARIES}
    interpreters = {key: interpreter(python) for key, python in pythons.items()}
    print("builder benchmark: railyard.builder vs pydantic-graph 1.96.1 and 2.x, LangGraph, asyncio.gather")
    for lib in MAP_LIBRARIES:
        python = pythons[lib.key]
        where = python.relative_to(REPO) if python.is_relative_to(REPO) else python
        version = installed_version(python, lib.distribution) or "" if lib.peer else ""
        print(f"  {lib.label(version) + ':':<28} {interpreters[lib.key]} ({where})")
    print(f"  machine: {platform.machine()}, {os.cpu_count()} cpus, load average at start {load_average()}")
    print(
        f"  map N = {plan.small_n:,} ({_rounds(plan.rounds)}) and {plan.big_n:,} (1 run; a peer is skipped if over "
        f"{SKIP_AFTER_S:.0f} s at {plan.small_n:,}, stopped once the time target is decided, at most "
        f"{plan.time_limit:.0f} s); loop N = {plan.loop_n:,} ({_rounds(plan.rounds)}); a fresh process per measurement"
    )
    if len(set(interpreters.values())) > 1:
        print("  WARNING: the environments run different interpreters; the ratios mix in that difference.")
    sys.stdout.flush()

    results = measure(plan, pythons)
    ok = report(results, plan, args.quick)
    print()
    print(f"load average at end {load_average()}; total {time.perf_counter() - started:.0f}s")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
