"""Graphs whose steps run as PostgreSQL branch tasks, importable by worker and driver processes.

`python -m tests.branch_graphs worker URL SLOTS` runs a branch-only worker until SIGTERM;
`python -m tests.branch_graphs drive URL RUN_ID ITEMS` runs (or resumes) `spread` over
ITEMS items with a `BranchExecutor`. Each `spread` item, when its step ends, appends one
line `item pid started ended` (monotonic clock, shared by the processes of one machine)
to a file of its process's own in `$RAILYARD_BRANCH_LOG`, so a test can count how often
each item ran and how many ran at once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.builder import Graph as BuilderGraph
from railyard.builder import GraphBuilder, StepContext, reduce_list_append

QUEUE = "spread"
LIMIT = 6
"""The global concurrency of the `spread` queue."""
LEASE = 2.0


def _log(item: int, started: float) -> None:
    folder = os.environ.get("RAILYARD_BRANCH_LOG")
    if folder:
        line = f"{item} {os.getpid()} {started!r} {time.monotonic()!r}\n".encode()
        descriptor = os.open(Path(folder) / f"{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)


def _spread() -> BuilderGraph[None, None, list[int], list[int]]:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(
        input_type=list[int], output_type=list[int], name="spread"
    )

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        started = time.monotonic()
        await anyio.sleep(0.002 + (ctx.inputs % 5) / 1000)
        _log(ctx.inputs, started)
        return ctx.inputs * 2

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(collect), g.edge_from(collect).to(g.end_node))
    return g.build()


spread = _spread()


class Refused(Exception):
    """A step's own error, with arguments of its own."""

    def __init__(self, reason: str, item: int) -> None:
        super().__init__(reason, item)
        self.reason = reason
        self.item = item


class Unrebuildable(Exception):
    """An error whose arguments do not make it again."""

    def __init__(self, *, detail: str) -> None:
        super().__init__(f"cannot: {detail}")


ATTEMPTS: dict[int, int] = {}
FOUR_FAILS = {"now": True}
"""Whether item 4 of `failing` raises (a test turns it off to resume the failed run)."""


def _failing() -> BuilderGraph[None, None, list[int], list[int]]:
    from railyard.retries import RetryPolicy

    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(
        input_type=list[int], output_type=list[int], name="failing"
    )

    @g.step(retry_policy=RetryPolicy(attempts=3, initial_interval=0.0, jitter=0.0, retry_on=(Refused,)))
    async def check(ctx: StepContext[None, None, int]) -> int:
        ATTEMPTS[ctx.inputs] = ctx.attempt
        if ctx.inputs == 3 and ctx.attempt < 2:
            raise Refused("three is refused once", ctx.inputs)
        if ctx.inputs == 4 and FOUR_FAILS["now"]:
            raise Unrebuildable(detail="four")
        if ctx.inputs == 6:
            raise SystemExit("six leaves")  # not an Exception: the worker must survive it
        if ctx.inputs == 5:
            return "five"  # type: ignore[return-value]  # not the int it says: it cannot cross back
        return ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(
        g.edge_from(g.start_node).map().to(check), g.edge_from(check).to(collect), g.edge_from(collect).to(g.end_node)
    )
    return g.build()


failing = _failing()

STARTED = threading.Event()
"""Set when a `held` step started; `STOPPED` when one was cancelled (the steps run on worker threads)."""
STOPPED = threading.Event()


def _held() -> BuilderGraph[None, None, int, int]:
    g: GraphBuilder[None, None, int, int] = GraphBuilder(input_type=int, output_type=int, name="held")

    @g.step
    async def wait(ctx: StepContext[None, None, int]) -> int:
        STARTED.set()
        try:
            await anyio.sleep_forever()
        except BaseException:
            STOPPED.set()
            raise
        return ctx.inputs + 1

    g.add(g.edge_from(g.start_node).to(wait), g.edge_from(wait).to(g.end_node))
    return g.build()


held = _held()


@dataclass
class Tally:
    """A node run's state, changed by steps that run on branch workers."""

    seen: list[int] = field(default_factory=list[int])


@dataclass
class Add(BaseNode[Tally, None, list[int]]):
    """Adds `n` to the tally; counts down to 0."""

    n: int

    async def run(self, ctx: GraphRunContext[Tally, None]) -> Add | End[list[int]]:
        ctx.state.seen.append(self.n)
        if self.n == 0:
            return End(ctx.state.seen)
        return Add(self.n - 1)


tally = Graph(nodes=[Add], name="tally")


def _worker(url: str, slots: int) -> None:
    from railyard.store.postgres import PostgresStore
    from railyard.worker import run_worker

    async def main() -> None:
        store = PostgresStore(url, lease=LEASE, max_size=3)
        try:
            await run_worker(
                [spread, tally], store, concurrency=0, branches=slots, idle_timeout=None, handle_signals=True
            )
        finally:
            await store.aclose()

    anyio.run(main)


def _drive(url: str, run_id: str, items: int) -> None:
    from railyard.branches import BranchExecutor
    from railyard.exceptions import RunNotFound
    from railyard.store.postgres import PostgresStore

    async def main() -> None:
        store = PostgresStore(url, lease=LEASE)
        try:
            with BranchExecutor(store, ["work"], queue=QUEUE, concurrency=LIMIT) as executor:
                try:
                    await store.read(run_id)
                except RunNotFound:
                    result = await spread.run(inputs=list(range(items)), store=store, run_id=run_id, executor=executor)
                else:
                    result = await spread.resume(store, run_id, executor=executor)
                print(sum(result))
        finally:
            await store.aclose()

    anyio.run(main)


if __name__ == "__main__":
    command, url, *rest = sys.argv[1:]
    if command == "worker":
        _worker(url, int(rest[0]))
    else:
        _drive(url, rest[0], int(rest[1]))
