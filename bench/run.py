"""Benchmark railyard against pydantic-graph 1.96.1 and a plain loop: `./dev bench`.

The workload is `bench/countdown.py`: the same countdown node, imported from
`railyard`, `railyard.v0` or `pydantic_graph`. railyard runs in the project's virtual
environment (the interpreter running this script); pydantic-graph runs in a side one,
`.bench-venvs/pydantic-graph-1.96.1`, created here on first use. Each measurement is a
fresh subprocess; the measurements are taken in rounds, alternating the libraries and
reversing the order every other round, so that drift and load from elsewhere on the
machine fall on both sides alike.

    ./dev bench            # N = 20,000 and 250, 5 rounds (about a minute and a half)
    ./dev bench --quick    # a smoke test: N = 2,000 and 250, 2 rounds
    ./dev bench --check    # exit 1 if a target is missed
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
from _venvs import ensure_venv, pinned

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "countdown.py"
PG_VERSION = "1.96.1"

TARGET_DEFAULT = 0.25
"""railyard's default run costs at most this share of pydantic-graph's, per step."""
TARGET_FULL = 0.10
"""railyard with `FullStatePersistence` costs at most this share of pydantic-graph's, at the big N."""
TARGET_FLAT = 1.5
"""railyard with `FullStatePersistence`: per-step cost at the big N over the cost at the small N."""
NOISY_SPREAD = 0.10
"""A measurement whose subprocesses' medians spread more than this (max/min - 1) is reported as noisy."""


# -- the side environment ---------------------------------------------------------------


def ensure_pydantic_graph_venv() -> Path:
    """The python of the side environment holding pydantic-graph, made if missing."""
    return ensure_venv(
        f"pydantic-graph-{PG_VERSION}", [f"pydantic-graph=={PG_VERSION}"], "pydantic-graph", pinned(PG_VERSION)
    )


# -- measurements -----------------------------------------------------------------------


@dataclass
class Measurement:
    """One line of the workload, measured in one subprocess per round."""

    label: str
    python: Path
    root: str
    case: str
    n: int
    repeat: int
    """Timed runs per subprocess."""
    warmup: int
    """Untimed runs per subprocess, before them."""
    samples: list[float] = field(default_factory=list)
    """µs per step of every timed run, all rounds."""
    process_medians: list[float] = field(default_factory=list)

    def command(self) -> list[str]:
        return [
            str(self.python),
            str(WORKLOAD),
            f"--root={self.root}",
            f"--case={self.case}",
            f"--n={self.n}",
            f"--repeat={self.repeat}",
            f"--warmup={self.warmup}",
        ]

    def run_once(self) -> None:
        done = subprocess.run(self.command(), capture_output=True, text=True, check=False, cwd=REPO, timeout=600)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"bench: {self.label} (N={self.n}) failed (exit {done.returncode})")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        self.samples.extend(report["samples_us"])
        self.process_medians.append(report["median_us"])

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def spread(self) -> float:
        """How far the subprocesses disagree: their largest median over their smallest, less 1."""
        return max(self.process_medians) / min(self.process_medians) - 1


@dataclass
class Plan:
    big_n: int
    small_n: int
    rounds: int
    repeat_big: int
    repeat_small: int
    repeat_pg_full_big: int


FULL_PLAN = Plan(big_n=20_000, small_n=250, rounds=5, repeat_big=5, repeat_small=100, repeat_pg_full_big=1)
QUICK_PLAN = Plan(big_n=2_000, small_n=250, rounds=2, repeat_big=3, repeat_small=20, repeat_pg_full_big=2)


def measurements(plan: Plan, ry: Path, pg: Path) -> dict[str, Measurement]:
    """Everything to measure, keyed, in the order of a round (railyard and pydantic-graph alternating)."""
    big, small = plan.big_n, plan.small_n
    rb, rs = plan.repeat_big, plan.repeat_small
    return {
        "ry_plain": Measurement("plain loop (railyard nodes)", ry, "railyard", "plain", big, rb, 2),
        "pg_plain": Measurement("plain loop (pydantic-graph nodes)", pg, "pydantic_graph", "plain", big, rb, 2),
        "ry_default": Measurement("railyard, default persistence", ry, "railyard", "default", big, rb, 2),
        "pg_default": Measurement("pydantic-graph, default persistence", pg, "pydantic_graph", "default", big, rb, 2),
        "v0_default": Measurement("railyard.v0, default (history kept)", ry, "railyard.v0", "default", big, rb, 2),
        "ry_full_small": Measurement("railyard, FullStatePersistence", ry, "railyard", "full", small, rs, 5),
        "pg_full_small": Measurement(
            "pydantic-graph, FullStatePersistence", pg, "pydantic_graph", "full", small, rs, 5
        ),
        "ry_full_big": Measurement("railyard, FullStatePersistence", ry, "railyard", "full", big, rb, 2),
        "pg_full_big": Measurement(
            "pydantic-graph, FullStatePersistence", pg, "pydantic_graph", "full", big, plan.repeat_pg_full_big, 1
        ),
    }


def run_rounds(ms: dict[str, Measurement], rounds: int) -> None:
    order = list(ms.values())
    for i in range(rounds):
        start = time.perf_counter()
        for m in order if i % 2 == 0 else reversed(order):
            m.run_once()
        print(f"  round {i + 1}/{rounds}: {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)


# -- the report -------------------------------------------------------------------------


@dataclass
class Check:
    case: str
    n: str
    railyard: str
    pydantic_graph: str
    plain: str
    ratio: float
    ratio_best: float
    target: float | None
    """The ratio must be at most this; `None`: reported for information."""
    ratio_format: Callable[[float], str] = lambda r: f"{r:.3f}"

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target

    def row(self) -> list[str]:
        result = {None: "info", True: "PASS", False: "FAIL"}[self.passed]
        target = "-" if self.target is None else f"<= {self.ratio_format(self.target)}"
        return [
            self.case,
            self.n,
            self.railyard,
            self.pydantic_graph,
            self.plain,
            self.ratio_format(self.ratio),
            self.ratio_format(self.ratio_best),
            target,
            result,
        ]


def checks(ms: dict[str, Measurement], plan: Plan) -> list[Check]:
    big, small = f"{plan.big_n:,}", f"{plan.small_n:,}"
    plain = us(ms["ry_plain"].median)

    def versus(case: str, ry: str, pg: str, *, n: str, target: float | None, plain: str = "") -> Check:
        a, b = ms[ry], ms[pg]
        return Check(case, n, us(a.median), us(b.median), plain, a.median / b.median, a.best / b.best, target)

    def growth(m: Measurement, small: Measurement) -> str:
        return f"{m.median / small.median:.2f}x"

    ry_big, ry_small = ms["ry_full_big"], ms["ry_full_small"]
    pg_big, pg_small = ms["pg_full_big"], ms["pg_full_small"]
    return [
        versus("default persistence", "ry_default", "pg_default", n=big, target=TARGET_DEFAULT, plain=plain),
        versus("FullStatePersistence", "ry_full_small", "pg_full_small", n=small, target=None),
        versus("FullStatePersistence", "ry_full_big", "pg_full_big", n=big, target=TARGET_FULL, plain=plain),
        Check(
            "FullStatePersistence growth",
            f"{small} -> {big}",
            growth(ry_big, ry_small),
            growth(pg_big, pg_small),
            "",
            ry_big.median / ry_small.median,
            ry_big.best / ry_small.best,
            TARGET_FLAT,
            ratio_format=lambda r: f"{r:.2f}x",
        ),
        versus("railyard.v0 default (history kept)", "v0_default", "pg_default", n=big, target=None, plain=plain),
    ]


def report(ms: dict[str, Measurement], plan: Plan, quick: bool) -> bool:
    """Print the tables; whether every target is met."""
    cs = checks(ms, plan)
    header = [
        "case",
        "N",
        "railyard us/step",
        "pydantic-graph us/step",
        "plain us/step",
        "ratio",
        "ratio(best)",
        "target",
        "result",
    ]
    print()
    print(table(header, [c.row() for c in cs], right={2, 3, 4, 5, 6}))
    print()
    print("us/step: median over all timed runs; ratio = railyard / pydantic-graph on the medians,")
    print("ratio(best) on the best runs; growth = us/step at the big N / us/step at the small N (same library).")
    print("The verdict is on the medians; 'plain' is the loop without a graph (railyard's node classes).")
    if quick:
        print(f"QUICK RUN: N = {plan.big_n:,} instead of 20,000, few repeats: a smoke test, not the measurement.")

    plain = ms["ry_plain"].median
    ry_over = ms["ry_default"].median - plain
    pg_over = ms["pg_default"].median - ms["pg_plain"].median
    print()
    print(
        f"Above the plain loop, per step (default persistence): railyard {ry_over:.2f} us, "
        f"pydantic-graph {pg_over:.2f} us (ratio {ry_over / pg_over:.3f})."
    )

    print()
    print("Every measurement:")
    rows = [
        [
            m.label,
            f"{m.n:,}",
            us(m.median),
            us(m.best),
            us(max(m.samples)),
            f"{m.spread * 100:.0f}%",
            f"{len(m.samples)} ({len(m.process_medians)}x{m.repeat})",
        ]
        for m in ms.values()
    ]
    header = ["measurement", "N", "median us/step", "best", "worst", "spread", "runs (procs x runs)"]
    print(table(header, rows, right={1, 2, 3, 4, 5}))
    print("spread: how far the subprocesses disagree (their largest median / their smallest, less 1).")
    noisy = [m for m in ms.values() if m.spread > NOISY_SPREAD]
    if noisy:
        names = "; ".join(f"{m.label} N={m.n:,} ({m.spread * 100:.0f}%)" for m in noisy)
        print(f"NOTE: noisy (spread > {NOISY_SPREAD:.0%}): {names}; rerun, or raise --rounds.")
    return all(c.passed is not False for c in cs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="railyard vs pydantic-graph 1.96.1 vs a plain loop: countdown.")
    parser.add_argument("--quick", action="store_true", help="smoke test: small N, few repeats")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of measurements (default 5, quick 2)")
    parser.add_argument("--check", action="store_true", help="exit with 1 if a target is missed")
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        plan = Plan(**{**plan.__dict__, "rounds": args.rounds})

    started = time.perf_counter()
    ry = Path(sys.executable)
    pg = ensure_pydantic_graph_venv()
    ry_python, pg_python = interpreter(ry), interpreter(pg)
    print("countdown benchmark: railyard vs pydantic-graph", PG_VERSION, "vs a plain loop")
    print(f"  railyard:       {ry_python} ({ry})")
    print(f"  pydantic-graph: {pg_python} ({pg.relative_to(REPO)})")
    print(f"  machine: {platform.machine()}, {os.cpu_count()} cpus, load average at start {load_average()}")
    print(f"  N = {plan.big_n:,} (and {plan.small_n:,}), {plan.rounds} rounds, a fresh process per measurement")
    if ry_python != pg_python:
        print("  WARNING: the two environments run different interpreters; the ratios mix in that difference.")
    sys.stdout.flush()

    ms = measurements(plan, ry, pg)
    run_rounds(ms, plan.rounds)
    ok = report(ms, plan, args.quick)
    print()
    print(f"load average at end {load_average()}; total {time.perf_counter() - started:.0f}s")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
