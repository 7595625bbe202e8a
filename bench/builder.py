"""The builder workloads: a map into a list-append join, and a step looping on a decision.

The same graphs run on `railyard.builder`, on pydantic-graph 1.x's `pydantic_graph.beta`
and on pydantic-graph 2.x's top-level `pydantic_graph` (only the import root differs),
and the map also runs on LangGraph (a `Send` fan-out) and as a plain `asyncio.gather`,
the floor no library can go under.

Cases:

- `map`: N items, each doubled by an async step (`x * 2`), collected by a
  `reduce_list_append` join into a list of N results. On LangGraph: a `StateGraph` whose
  conditional edge from `START` returns `[Send('double', {'x': i}) for i in items]`, the
  results gathered by the reducer `Annotated[list[int], operator.add]`, run with
  `ainvoke`. The `gather` root awaits `asyncio.gather` over the doubling coroutines.
- `loop`: a step that increments a counter in the state, and a decision that loops back
  to the step until the counter reaches N, then ends: N steps.

Usage (prints one JSON object on stdout):

    python bench/builder.py --root railyard.builder --case map --n 10000
    python bench/builder.py --root pydantic_graph.beta --case loop --n 20000 --repeat 3

Each process imports everything, builds the graph, makes the input and does a small
untimed warm-up run (schema building, caches); then it collects garbage and takes the
baseline of its peak memory (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), and times
`repeat` runs with `time.perf_counter` around each run alone. Every run's output is
checked (N results summing to twice the sum of the inputs; the counter at N) before its
time counts. The peak memory reported is the process's peak after the timed runs less
the baseline: what the runs added at their highest.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import json
import operator
import os
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

ROOTS = ("railyard.builder", "pydantic_graph.beta", "pydantic_graph", "langgraph", "gather")
BUILDER_ROOTS = ROOTS[:3]
CASES = ("map", "loop")
DISTRIBUTIONS = {
    "railyard.builder": "railyard-graph",
    "pydantic_graph.beta": "pydantic-graph",
    "pydantic_graph": "pydantic-graph",
    "langgraph": "langgraph",
    "gather": None,
}

Runner = Callable[[int], Awaitable[None]]
"""Runs the case on N (with its input made beforehand by `prepare`) and checks its output."""


# -- map --------------------------------------------------------------------------------


def _check_map(root: str, items: list[int], results: Any) -> None:
    n = len(items)
    if not isinstance(results, list) or len(results) != n:
        size = len(results) if isinstance(results, list) else type(results).__name__
        raise SystemExit(f"{root} map: {size} results, not a list of {n}")
    if sum(results) != 2 * sum(items) or sorted(results) != [2 * x for x in items]:
        raise SystemExit(f"{root} map: the results are not the doubled inputs")


def builder_map(root: str) -> Runner:
    lib = importlib.import_module(root)
    GraphBuilder = lib.GraphBuilder
    StepContext = lib.StepContext
    reduce_list_append = getattr(lib, "reduce_list_append", None)
    if reduce_list_append is None:  # pydantic_graph.beta keeps its reducers in its `join` module
        reduce_list_append = importlib.import_module(f"{root}.join").reduce_list_append

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

    async def run(items: list[int]) -> None:
        _check_map(root, items, await graph.run(inputs=items))

    return _with_items(run)


class MapState(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]


class DoubleInput(TypedDict):
    x: int


def langgraph_map(root: str) -> Runner:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    # Annotated `list[Any]`, not `list[Send]`: LangGraph resolves these hints in the module's namespace.
    def fan_out(state: MapState) -> list[Any]:
        return [Send("double", {"x": i}) for i in state["items"]]

    async def double(state: DoubleInput) -> dict[str, list[int]]:
        return {"results": [state["x"] * 2]}

    builder = StateGraph(MapState)
    builder.add_node("double", double)
    builder.add_conditional_edges(START, fan_out, ["double"])
    builder.add_edge("double", END)
    graph = builder.compile()

    async def run(items: list[int]) -> None:
        state = await graph.ainvoke({"items": items, "results": []})
        _check_map(root, items, state["results"])

    return _with_items(run)


def gather_map(root: str) -> Runner:
    async def double(x: int) -> int:
        return x * 2

    async def run(items: list[int]) -> None:
        _check_map(root, items, await asyncio.gather(*(double(x) for x in items)))

    return _with_items(run)


_ITEMS: dict[int, list[int]] = {}


def _with_items(run: Callable[[list[int]], Awaitable[None]]) -> Runner:
    async def run_n(n: int) -> None:
        await run(_ITEMS[n])

    return run_n


# -- loop -------------------------------------------------------------------------------


@dataclass
class LoopState:
    limit: int
    counter: int = 0


def builder_loop(root: str) -> Runner:
    lib = importlib.import_module(root)
    GraphBuilder = lib.GraphBuilder
    StepContext = lib.StepContext

    g = GraphBuilder(state_type=LoopState, output_type=int)

    @g.step
    async def increment(ctx: StepContext[LoopState, None, int | None]) -> int:
        ctx.state.counter += 1
        return ctx.state.limit - ctx.state.counter  # how many steps are left

    g.add(
        g.edge_from(g.start_node).to(increment),
        g.edge_from(increment).to(
            g.decision()
            .branch(g.match(int, matches=lambda left: left <= 0).label("done").to(g.end_node))
            .branch(g.match(int).label("again").to(increment))
        ),
    )
    graph = g.build()

    async def run(n: int) -> None:
        state = LoopState(limit=n)
        left = await graph.run(state=state)
        if left != 0 or state.counter != n:
            raise SystemExit(f"{root} loop: ended with {left!r} left and the counter at {state.counter}, not {n}")

    return run


# -- the process ------------------------------------------------------------------------


def build(root: str, case: str) -> Runner:
    if case == "map":
        if root == "langgraph":
            return langgraph_map(root)
        if root == "gather":
            return gather_map(root)
        return builder_map(root)
    if root not in BUILDER_ROOTS:
        raise SystemExit(f"the loop runs on {', '.join(BUILDER_ROOTS)}, not {root}")
    return builder_loop(root)


def _max_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Reporter:
    """Prints the process's one JSON report: at the end of the timed runs, or when the time limit stops them.

    The time limit is a timer thread, so that it fires even inside a long stretch of code that
    never yields to the event loop; it prints what is known (the time limit as a lower bound
    of the run's time, the peak memory so far as a lower bound of the run's) and ends the
    process at once.
    """

    def __init__(self, report: dict[str, Any], time_limit: float | None) -> None:
        self.report = report
        self.time_limit = time_limit
        self.lock = threading.Lock()
        self.printed = False
        self.baseline = 0.0
        self.timer: threading.Timer | None = None

    def start(self) -> None:
        """Take the baseline of the peak memory, and start the clock of the time limit."""
        self.baseline = _max_rss_mb()
        if self.time_limit is not None:
            self.timer = threading.Timer(self.time_limit, self._stop)
            self.timer.daemon = True
            self.timer.start()

    def finish(self, seconds: list[float]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self._print(seconds=seconds, stopped=False)

    def _stop(self) -> None:
        self._print(seconds=[], stopped=True)
        os._exit(0)

    def _print(self, *, seconds: list[float], stopped: bool) -> None:
        with self.lock:
            if self.printed:
                return
            self.printed = True
            peak = _max_rss_mb() - self.baseline
            report = {**self.report, "seconds": seconds, "stopped_after": self.time_limit if stopped else None}
            report |= {"baseline_mb": self.baseline, "peak_mb": peak}
            sys.stdout.write(json.dumps(report) + "\n")
            sys.stdout.flush()


async def measure(run: Runner, reporter: Reporter, *, n: int, repeat: int, warmup_n: int) -> None:
    """Time `repeat` runs on N, after an untimed one on `warmup_n`, and report."""
    await run(warmup_n)
    gc.collect()
    reporter.start()
    seconds: list[float] = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        await run(n)
        seconds.append(time.perf_counter() - start)
    reporter.finish(seconds)


def _version(root: str) -> str:
    distribution = DISTRIBUTIONS[root]
    if distribution is None:
        return sys.version.split()[0]
    return importlib.metadata.version(distribution)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", required=True, choices=ROOTS)
    parser.add_argument("--case", required=True, choices=CASES)
    parser.add_argument("--n", type=int, required=True, help="items of the map, steps of the loop")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs (the peak memory is over all of them)")
    parser.add_argument("--warmup-n", type=int, default=100, help="size of the untimed warm-up run")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds: stop the timed runs then and report lower bounds"
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1 or args.warmup_n < 1:
        parser.error("--n, --repeat and --warmup-n must be at least 1")

    run = build(args.root, args.case)
    if args.case == "map":
        for size in (args.n, args.warmup_n):
            _ITEMS[size] = list(range(size))
    report = {
        "root": args.root,
        "version": _version(args.root),
        "case": args.case,
        "n": args.n,
        "python": sys.version.split()[0],
    }
    reporter = Reporter(report, args.time_limit)
    asyncio.run(measure(run, reporter, n=args.n, repeat=args.repeat, warmup_n=args.warmup_n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
