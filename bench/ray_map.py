"""Ray map throughput against in-process: `.venv/bin/python bench/ray_map.py`.

Two builder maps, each run in this process (the default executor) and on a local Ray
instance (`RayExecutor`), in rounds that alternate the two:

- **small items**: N items (10,000; `--quick` 1,000) through `.map()` into `x * 2`,
  collected by a `reduce_list_append` join. Items per second: what one Ray task per item
  costs against an in-process step (info only: Ray is for work much bigger than this).
- **CPU-heavy items**: 8 items, each a step that burns 1 s of CPU (`--quick`: 0.25 s),
  measured by `time.process_time`, so an item is the same work however loaded the machine
  is. In process the 8 run one after the other on the event loop; on Ray, with
  `num_cpus=1` each, as many at once as the machine has cores. Target: Ray's time under
  0.7x the in-process time.

Ray starts once (`ray.init(num_cpus=os.cpu_count())`) and warms its workers up with an
untimed map before any timing: start-up is not measured. Every run's result is checked
before its time counts.

    .venv/bin/python bench/ray_map.py            # about a minute on a 2-core machine
    .venv/bin/python bench/ray_map.py --quick    # a smoke test (seconds, after Ray starts)
    .venv/bin/python bench/ray_map.py --check    # exit 1 if the target is missed
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from _report import load_average, table

from railyard.builder import Graph, GraphBuilder, StepContext, reduce_list_append
from railyard.ray import RayExecutor, RayOptions

TARGET_HEAVY = 0.7
"""The CPU-heavy map on Ray takes at most this share of its in-process time."""
HEAVY_ITEMS = 8


def small_map() -> Graph[None, None, list[int], list[int]]:
    """N items into `x * 2`, collected in a list."""
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).map().to(double),
        g.edge_from(double).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


def heavy_map() -> Graph[None, None, list[float], list[int]]:
    """Items that each burn their value in seconds of CPU, and say how many digests that took."""
    g: GraphBuilder[None, None, list[float], list[int]] = GraphBuilder(input_type=list[float], output_type=list[int])

    @g.step
    async def burn(ctx: StepContext[None, None, float]) -> int:
        import hashlib

        digest, rounds = b"railyard", 0
        start = time.process_time()
        while time.process_time() - start < ctx.inputs:
            for _ in range(1000):
                digest = hashlib.sha256(digest).digest()
            rounds += 1000
        return rounds

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).map().to(burn),
        g.edge_from(burn).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


async def timed(run: Callable[[], Coroutine[Any, Any, Any]], check: Callable[[Any], bool]) -> float:
    """Seconds one run takes; its result must pass `check`."""
    start = time.perf_counter()
    result = await run()
    elapsed = time.perf_counter() - start
    if not check(result):
        raise SystemExit(f"wrong result: {str(result)[:200]}")
    return elapsed


async def measure(quick: bool, rounds: int) -> dict[str, list[float]]:
    """Seconds per run of each case, every round (alternating in-process and Ray)."""
    n = 1_000 if quick else 10_000
    seconds = 0.25 if quick else 1.0
    small, heavy = small_map(), heavy_map()
    items = list(range(n))
    heavy_items = [seconds] * HEAVY_ITEMS
    small_ok: Callable[[Any], bool] = lambda result: sorted(result) == [2 * i for i in items]  # noqa: E731
    heavy_ok: Callable[[Any], bool] = lambda result: len(result) == HEAVY_ITEMS and min(result) > 0  # noqa: E731
    small_ray = RayExecutor(options=RayOptions(num_cpus=0.5))
    heavy_ray = RayExecutor(options=RayOptions(num_cpus=1))

    # warm-up, untimed: Ray's worker processes start, the graphs' code reaches them
    await small.run(inputs=items[:200], executor=small_ray)
    await heavy.run(inputs=[0.01] * HEAVY_ITEMS, executor=heavy_ray)
    await small.run(inputs=items[:200])

    times: dict[str, list[float]] = {
        "small, in process": [],
        "small, Ray": [],
        "heavy, in process": [],
        "heavy, Ray": [],
    }
    for round_ in range(rounds):
        cases: list[tuple[str, Callable[[], Coroutine[Any, Any, Any]], Callable[[Any], bool]]] = [
            ("small, in process", lambda: small.run(inputs=items), small_ok),
            ("small, Ray", lambda: small.run(inputs=items, executor=small_ray), small_ok),
            ("heavy, in process", lambda: heavy.run(inputs=heavy_items), heavy_ok),
            ("heavy, Ray", lambda: heavy.run(inputs=heavy_items, executor=heavy_ray), heavy_ok),
        ]
        if round_ % 2:  # every other round the other way round: drift falls on both alike
            cases = [cases[1], cases[0], cases[3], cases[2]]
        for label, run, check in cases:
            times[label].append(await timed(run, check))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 1,000 small items, 0.25 s heavy items")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; --quick 1)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)

    import ray

    cpus = os.cpu_count() or 2
    started = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - started
    try:
        times = anyio.run(measure, args.quick, rounds)
    finally:
        ray.shutdown()

    n = 1_000 if args.quick else 10_000
    median = {label: statistics.median(values) for label, values in times.items()}
    print(
        f"railyard map on Ray ({ray.__version__}) vs in process: Python {platform.python_version()}, "
        f"{cpus} CPUs, load {load_average()}, {rounds} round(s); Ray started in {ray_start:.1f} s (not counted)"
    )
    rows = [
        [
            f"small items (N = {n:,})",
            f"{median['small, in process']:.2f}",
            f"{median['small, Ray']:.2f}",
            f"{n / median['small, in process']:,.0f}",
            f"{n / median['small, Ray']:,.0f}",
            f"{median['small, Ray'] / median['small, in process']:.1f}",
            "info",
        ]
    ]
    heavy_ratio = median["heavy, Ray"] / median["heavy, in process"]
    passed = heavy_ratio < TARGET_HEAVY
    seconds = 0.25 if args.quick else 1.0
    rows.append(
        [
            f"CPU-heavy ({HEAVY_ITEMS} x {seconds:g} s CPU)",
            f"{median['heavy, in process']:.2f}",
            f"{median['heavy, Ray']:.2f}",
            f"{HEAVY_ITEMS / median['heavy, in process']:.2f}",
            f"{HEAVY_ITEMS / median['heavy, Ray']:.2f}",
            f"{heavy_ratio:.2f}",
            f"< {TARGET_HEAVY} {'PASS' if passed else 'FAIL'}",
        ]
    )
    header = ["map", "in process s", "Ray s", "in process items/s", "Ray items/s", "ratio", "target"]
    print(table(header, rows, right={1, 2, 3, 4, 5}))
    spread = {label: max(v) / min(v) - 1 for label, v in times.items() if len(v) > 1}
    if spread:
        print("spread (max/min - 1): " + ", ".join(f"{label} {value:.0%}" for label, value in spread.items()))
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
