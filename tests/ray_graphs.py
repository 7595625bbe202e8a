"""Graphs the Ray tests run: at module level, so that Ray workers import their code by name.

Run as a program, this module is the driver the crash test kills and resumes:
`python -m tests.ray_graphs ADDRESS DATABASE RUN_ID ITEMS`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from railyard import BaseNode, End, GraphRunContext, RetryPolicy
from railyard import Graph as NodeGraph
from railyard.builder import Graph, GraphBuilder, StepContext, reduce_list_append, reduce_sum

# -- a map of squares ---------------------------------------------------------------------


def _squares() -> Graph[None, None, list[int], list[int]]:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])

    @g.step
    async def spread(ctx: StepContext[None, None, list[int]]) -> list[int]:
        return ctx.inputs

    @g.step
    async def square(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(
        g.edge_from(g.start_node).to(spread),
        g.edge_from(spread).map().to(square),
        g.edge_from(square).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


squares = _squares()
"""`spread` hands its list to a map of `square` steps; `collect` gathers the squares."""


# -- where each step ran --------------------------------------------------------------------


@dataclass
class Seen:
    """The run's state: which process ran `prepare` and `tally`, and the processes of the map's items."""

    prepare: int = 0
    tally: int = 0
    items: list[int] = field(default_factory=list[int])


def _placed() -> Graph[Seen, None, list[int], int]:
    g: GraphBuilder[Seen, None, list[int], int] = GraphBuilder(state_type=Seen, input_type=list[int], output_type=int)

    @g.step
    async def prepare(ctx: StepContext[Seen, None, list[int]]) -> list[int]:
        ctx.state.prepare = os.getpid()
        return ctx.inputs

    @g.step
    async def crunch(ctx: StepContext[Seen, None, int]) -> int:
        return os.getpid()

    @g.step
    async def tally(ctx: StepContext[Seen, None, list[int]]) -> int:
        ctx.state.tally = os.getpid()
        ctx.state.items = ctx.inputs
        return len(ctx.inputs)

    pids = g.join(reduce_list_append, initial_factory=list[int], node_id="pids")
    g.add(
        g.edge_from(g.start_node).to(prepare),
        g.edge_from(prepare).map().to(crunch),
        g.edge_from(crunch).to(pids),
        g.edge_from(pids).to(tally),
        g.edge_from(tally).to(g.end_node),
    )
    return g.build()


placed = _placed()
"""`prepare` and `tally` note their process in the state; the map's `crunch` steps return theirs."""


# -- CPU-bound items, for the crash test ---------------------------------------------------


ROUNDS = 20_000
"""Digest rounds per item of `hashes`: some 7 ms of CPU here (more on a busy machine)."""


def burn(item: int, rounds: int) -> str:
    """Some CPU work: a chain of SHA-256 digests."""
    digest = str(item).encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:8]


def _hashes() -> Graph[None, None, list[int], list[str]]:
    g: GraphBuilder[None, None, list[int], list[str]] = GraphBuilder(input_type=list[int], output_type=list[str])

    @g.step
    async def digest(ctx: StepContext[None, None, int]) -> str:
        return f"{ctx.inputs}:{burn(ctx.inputs, ROUNDS)}"

    collect = g.join(reduce_list_append, initial_factory=list[str], node_id="collect")
    g.add(
        # bounded: each branch's finish is committed with the next branch's start (group commit);
        # an unbounded map starts every branch at once, and commits their finishes only at its end
        g.edge_from(g.start_node).map(max_concurrency=2).to(digest),
        g.edge_from(digest).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


hashes = _hashes()
"""A map of `digest` steps, each some 7 ms of CPU, two at a time."""


# -- a worker that dies --------------------------------------------------------------------


def _fragile() -> Graph[None, None, str, str]:
    g: GraphBuilder[None, None, str, str] = GraphBuilder(input_type=str, output_type=str)

    @g.step(retry_policy=RetryPolicy(attempts=3, initial_interval=0, jitter=0))
    async def survive(ctx: StepContext[None, None, str]) -> str:
        if ctx.attempt == 1:
            os._exit(1)  # the Ray worker process dies under the step
        return f"{ctx.inputs} on attempt {ctx.attempt}"

    g.add(g.edge_from(g.start_node).to(survive), g.edge_from(survive).to(g.end_node))
    return g.build()


fragile = _fragile()
"""`survive` kills its process on its first attempt and succeeds on the second."""


# -- values that cannot cross --------------------------------------------------------------


class Opaque:
    """Not a value pydantic can write as JSON."""


def _opaque() -> Graph[None, None, int, object]:
    g: GraphBuilder[None, None, int, object] = GraphBuilder(input_type=int, output_type=object)

    @g.step
    async def make_opaque(ctx: StepContext[None, None, int]) -> object:
        return Opaque()

    g.add(g.edge_from(g.start_node).to(make_opaque), g.edge_from(make_opaque).to(g.end_node))
    return g.build()


opaque = _opaque()
"""`make_opaque` returns something that cannot cross back from a Ray worker."""


# -- steps that report to the test: in flight, started, interrupted --------------------------

TRACKER = "railyard-test-tracker"
"""The name of the `Tracker` actor a test starts (in the test driver's namespace)."""


class Tracker:
    """A Ray actor the steps below report to: how many are in flight at most, and what happened."""

    def __init__(self) -> None:
        import asyncio

        self.in_flight = 0
        self.most = 0
        self.events: dict[str, asyncio.Event] = {}

    async def enter(self) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)

    async def leave(self) -> None:
        self.in_flight -= 1

    async def peak(self) -> int:
        """The most steps in flight at once since the last call."""
        most, self.most = self.most, 0
        return most

    def _event(self, name: str) -> Any:
        import asyncio

        return self.events.setdefault(name, asyncio.Event())

    async def happen(self, name: str) -> None:
        self._event(name).set()

    async def wait(self, name: str) -> None:
        await self._event(name).wait()


def _tracker() -> Any:
    import ray

    return ray.get_actor(TRACKER)


def _held() -> Graph[None, None, list[int], int]:
    g: GraphBuilder[None, None, list[int], int] = GraphBuilder(input_type=list[int], output_type=int)

    @g.step
    async def hold(ctx: StepContext[None, None, int]) -> int:
        import ray

        tracker = _tracker()
        ray.get(tracker.enter.remote())
        time.sleep(0.05)  # the work: long enough for tasks to overlap if the executor let them
        ray.get(tracker.leave.remote())
        return ctx.inputs

    total = g.join(reduce_sum, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).map().to(hold),
        g.edge_from(hold).to(total),
        g.edge_from(total).to(g.end_node),
    )
    return g.build()


held = _held()
"""A map of `hold` steps that tell the tracker when they start and end."""


def _blocked() -> Graph[None, None, None, str]:
    g: GraphBuilder[None, None, None, str] = GraphBuilder(output_type=str)

    @g.step
    async def block(ctx: StepContext[None, None, None]) -> str:
        import ray

        tracker = _tracker()
        try:  # the test may cancel as soon as "started" is told: the interrupt can come inside this ray.get
            ray.get(tracker.happen.remote("started"))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # blocks its worker until Ray interrupts it
                time.sleep(0.01)
        except KeyboardInterrupt:  # what ray.cancel raises in a running task
            ray.get(tracker.happen.remote("interrupted"))
            raise
        return "not cancelled"

    g.add(g.edge_from(g.start_node).to(block), g.edge_from(block).to(g.end_node))
    return g.build()


blocked = _blocked()
"""`block` tells the tracker it started, then blocks until it is interrupted."""


# -- node API --------------------------------------------------------------------------------


@dataclass
class Counter:
    """A node run's state."""

    left: int
    visited: list[int] = field(default_factory=list[int])


@dataclass
class Countdown(BaseNode[Counter, None, int]):
    """Counts `left` down to 0, noting where it ran; ends with how many steps it took."""

    label: str = "tick"

    async def run(self, ctx: GraphRunContext[Counter]) -> Countdown | End[int]:
        ctx.state.visited.append(os.getpid())
        if ctx.state.left == 0:
            return End(len(ctx.state.visited))
        ctx.state.left -= 1
        return Countdown(label=f"tick {ctx.state.left}")


countdown = NodeGraph(nodes=[Countdown], name="countdown")


# -- the driver the crash test kills -------------------------------------------------------


async def drive(address: str, database: str, run_id: str, items: int) -> None:
    """Start or resume `hashes` on the Ray cluster at `address`, keeping the run in SQLite."""
    import ray

    from railyard.exceptions import RunNotFound
    from railyard.ray import RayExecutor, RayOptions
    from railyard.store.sqlite import SqliteStore

    ray.init(address=address, log_to_driver=False)
    store = SqliteStore(database)
    executor = RayExecutor(options=RayOptions(num_cpus=1))
    try:
        await hashes.resume(store, run_id, executor=executor)
    except RunNotFound:
        await hashes.run(inputs=list(range(items)), store=store, run_id=run_id, executor=executor)
    print("ended", time.time(), flush=True)


if __name__ == "__main__":
    import anyio

    address, database, run_id, items = sys.argv[1:]
    anyio.run(drive, address, database, run_id, int(items))


# -- which node of a cluster ran each step ----------------------------------------------------


def _nodes() -> Graph[None, None, int, list[str]]:
    g: GraphBuilder[None, None, int, list[str]] = GraphBuilder(input_type=int, output_type=list[str])

    @g.step
    async def items(ctx: StepContext[None, None, int]) -> list[int]:
        return list(range(ctx.inputs))

    @g.step
    async def where(ctx: StepContext[None, None, int]) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    collect = g.join(reduce_list_append, initial_factory=list[str], node_id="nodes")
    g.add(
        g.edge_from(g.start_node).to(items),
        g.edge_from(items).map().to(where),
        g.edge_from(where).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


nodes = _nodes()
"""A map whose items say which Ray node ran them."""
