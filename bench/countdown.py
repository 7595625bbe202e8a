"""The countdown workload: one node that counts a state's counter down to zero, N steps.

The same node code runs on railyard, on `railyard.v0` and on pydantic-graph: only the
import root differs (`build(root)` imports `BaseNode`, `End`, `Graph` and
`GraphRunContext` from it). A run of N steps is N calls of `CountDown.run`: N - 1 that
return the next `CountDown()` and a last one that returns `End`.

Cases:

- `plain`: no graph at all, a loop doing the same user work (construct the next node,
  await its `run`), using the import root's node classes and `GraphRunContext`;
- `default`: `await graph.run(CountDown(), state=...)`, the library's default persistence;
- `full`: the same with `persistence=FullStatePersistence()` (whole history kept).

Usage (prints one JSON object on stdout):

    python bench/countdown.py --root railyard --case default --n 20000 --repeat 5

Each process does warm-up runs first (imports, schema building, caches), then `repeat`
timed runs, each timed with `time.perf_counter` around the run alone, after a
`gc.collect()`; the collector stays enabled during the run, as it is in real programs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

CASES = ("plain", "default", "full")


@dataclass
class CountDownState:
    counter: int


@dataclass
class Workload:
    """The countdown graph built on one import root, and a way to run each case."""

    root: str
    graph: Any
    node: type[Any]
    ctx_class: type[Any]
    end_class: type[Any]
    full_persistence: Callable[[], Any] | None

    def runner(self, case: str) -> Callable[[int], Awaitable[tuple[Any, Any]]]:
        """The coroutine function running `case` for N steps."""
        if case == "plain":
            return self.run_plain
        if case == "default":
            return self.run_default
        if case == "full":
            if self.full_persistence is None:
                raise SystemExit(f"{self.root} has no FullStatePersistence")
            return self.run_full
        raise SystemExit(f"unknown case {case!r}; expected one of {', '.join(CASES)}")

    async def run_plain(self, n: int) -> tuple[Any, Any]:
        ctx = self.ctx_class(state=CountDownState(counter=n - 1), deps=None)
        end_class = self.end_class
        node = self.node()
        while True:
            result = await node.run(ctx)
            if isinstance(result, end_class):
                return result.data, None
            node = result

    async def run_default(self, n: int) -> tuple[Any, Any]:
        result = await self.graph.run(self.node(), state=CountDownState(counter=n - 1))
        return result.output, None

    async def run_full(self, n: int) -> tuple[Any, Any]:
        assert self.full_persistence is not None
        persistence = self.full_persistence()
        result = await self.graph.run(self.node(), state=CountDownState(counter=n - 1), persistence=persistence)
        return result.output, persistence


def build(root: str) -> Workload:
    """Define the countdown node on `root` (`railyard`, `railyard.v0` or `pydantic_graph`)."""
    lib = importlib.import_module(root)
    # Local names, so that `Graph` resolves the `run` annotation below in this function's
    # namespace (the class body and its annotations are the same for every root).
    BaseNode = lib.BaseNode
    End = lib.End
    GraphRunContext = lib.GraphRunContext

    @dataclass
    class CountDown(BaseNode[CountDownState, None, int]):
        async def run(self, ctx: GraphRunContext[CountDownState]) -> CountDown | End[int]:
            if ctx.state.counter <= 0:
                return End(ctx.state.counter)
            ctx.state.counter -= 1
            return CountDown()

    graph = lib.Graph(nodes=[CountDown], name="countdown")
    full = getattr(lib, "FullStatePersistence", None)
    return Workload(root, graph, CountDown, GraphRunContext, End, full)


async def measure(workload: Workload, case: str, *, n: int, repeat: int, warmup: int, warmup_n: int) -> list[float]:
    """Seconds per step of `repeat` timed runs, after `warmup` untimed ones."""
    run = workload.runner(case)
    for _ in range(warmup):
        await run(warmup_n)
    samples: list[float] = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        output, persistence = await run(n)
        elapsed = time.perf_counter() - start
        if output != 0:
            raise SystemExit(f"{workload.root} {case}: the countdown ended with {output!r}, not 0")
        if persistence is not None and len(persistence.history) != n + 1:
            # N node snapshots and the end snapshot: the whole history was kept.
            raise SystemExit(f"{workload.root} {case}: {len(persistence.history)} snapshots kept, not {n + 1}")
        del persistence
        samples.append(elapsed / n)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", required=True, help="railyard, railyard.v0 or pydantic_graph")
    parser.add_argument("--case", required=True, choices=CASES)
    parser.add_argument("--n", type=int, default=20_000, help="steps per run")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before them")
    parser.add_argument("--warmup-n", type=int, default=None, help="steps of a warm-up run (default: min(n, 2000))")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be at least 1")
    warmup_n = args.warmup_n if args.warmup_n is not None else min(args.n, 2000)

    workload = build(args.root)
    samples = asyncio.run(
        measure(workload, args.case, n=args.n, repeat=args.repeat, warmup=args.warmup, warmup_n=warmup_n)
    )
    us = [s * 1e6 for s in samples]
    report = {
        "root": args.root,
        "case": args.case,
        "n": args.n,
        "python": sys.version.split()[0],
        "samples_us": us,
        "best_us": min(us),
        "median_us": statistics.median(us),
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
