"""The executor seam: where a step's node runs (in process, on threads, or anywhere a custom executor sends it).

The loop hands every step task (and only those: forks, joins, decisions, the start and
the end are run by the loop itself) to the run's executor, once per attempt, and awaits
what it gives back. Each test runs on asyncio and on trio.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.builder import Graph as BuilderGraph
from railyard.builder import GraphBuilder, StepContext, reduce_list_append, reduce_sum
from railyard.runtime._executor import Executor, InProcessExecutor, StepFunction, ThreadExecutor
from railyard.runtime._tasks import Task
from railyard.store import RunStatus
from railyard.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test of this module runs on asyncio and on trio."""
    return str(request.param)


class RecordingExecutor:
    """Runs each step in process, and records every task it is handed."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.binds = 0
        self.tasks: list[Task] = []
        self.fail_on = fail_on

    def bind(self, run: StepFunction) -> StepFunction:
        self.binds += 1

        async def execute(task: Task) -> Any:
            self.tasks.append(task)
            if task.node_id == self.fail_on:
                raise ExecutorDown(f"cannot reach the worker for {task.node_id}")
            return await run(task)

        return execute

    @property
    def node_ids(self) -> Counter[str]:
        return Counter(task.node_id for task in self.tasks)


class ExecutorDown(Exception):
    """The executor itself failed (not the step)."""


def test_executor_reprs_and_defaults() -> None:
    executors: list[Executor] = [InProcessExecutor(), ThreadExecutor(max_workers=2), RecordingExecutor()]
    assert [repr(e) for e in executors[:2]] == ["InProcessExecutor()", "ThreadExecutor(max_workers=2)"]
    assert ThreadExecutor().max_workers == 8


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(True, id="bool"),
        pytest.param(2.0, id="float"),
    ],
)
def test_thread_executor_rejects_a_bad_max_workers(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"max_workers") as info:
        ThreadExecutor(max_workers=bad)
    assert repr(bad) in str(info.value)


# -- a node graph -----------------------------------------------------------------------------


@dataclass
class Tally:
    counter: int
    threads: list[int] = field(default_factory=list[int])


@dataclass
class Tick(BaseNode[Tally, None, int]):
    async def run(self, ctx: GraphRunContext[Tally]) -> Tick | End[int]:
        ctx.state.threads.append(threading.get_ident())
        await anyio.lowlevel.checkpoint()
        if ctx.state.counter <= 0:
            return End(len(ctx.state.threads))
        ctx.state.counter -= 1
        return Tick()


tick_graph: Graph[Tally, None, int] = Graph(nodes=[Tick], name="tick_graph")


async def test_a_node_graph_on_threads_gives_the_in_process_result() -> None:
    here = await tick_graph.run(Tick(), state=Tally(4))
    there = await tick_graph.run(Tick(), state=Tally(4), executor=ThreadExecutor(max_workers=2))
    assert there.output == here.output == 5
    assert there.state.counter == here.state.counter == 0
    main = threading.get_ident()
    assert set(here.state.threads) == {main}
    assert len(there.state.threads) == 5
    assert main not in there.state.threads


async def test_a_node_graph_hands_each_step_to_the_executor_once() -> None:
    executor = RecordingExecutor()
    result = await tick_graph.run(Tick(), state=Tally(3), executor=executor)
    assert result.output == 4
    assert executor.binds == 1
    assert executor.node_ids == Counter({"Tick": 4})
    assert len({task.task_id for task in executor.tasks}) == 4


# -- a builder graph --------------------------------------------------------------------------


def square_map_graph(threads: list[int]) -> BuilderGraph[None, None, list[int], list[int]]:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])

    @g.step
    async def spread(ctx: StepContext[None, None, list[int]]) -> list[int]:
        threads.append(threading.get_ident())
        return ctx.inputs

    @g.step
    async def square(ctx: StepContext[None, None, int]) -> int:
        threads.append(threading.get_ident())
        await anyio.lowlevel.checkpoint()
        return ctx.inputs * ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(
        g.edge_from(g.start_node).to(spread),
        g.edge_from(spread).map().to(square),
        g.edge_from(square).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


async def test_a_builder_map_on_threads_gives_the_in_process_result() -> None:
    here_threads: list[int] = []
    there_threads: list[int] = []
    items = list(range(10))
    here = await square_map_graph(here_threads).run(inputs=items)
    there = await square_map_graph(there_threads).run(inputs=items, executor=ThreadExecutor(max_workers=2))
    assert sorted(there) == sorted(here) == [i * i for i in items]
    main = threading.get_ident()
    assert set(here_threads) == {main}
    assert len(there_threads) == 1 + len(items)
    assert main not in there_threads


async def test_a_builder_graph_hands_only_step_tasks_to_the_executor() -> None:
    executor = RecordingExecutor()
    items = [1, 2, 3]
    assert sorted(await square_map_graph([]).run(inputs=items, executor=executor)) == [1, 4, 9]
    assert executor.binds == 1
    # no start, map fork, join or end task: the loop runs those itself
    assert executor.node_ids == Counter({"spread": 1, "square": 3})
    assert sorted(task.inputs for task in executor.tasks if task.node_id == "square") == items
    assert len({task.task_id for task in executor.tasks}) == 4


async def test_decisions_and_broadcasts_never_reach_the_executor() -> None:
    g: GraphBuilder[None, None, int, int] = GraphBuilder(input_type=int, output_type=int)

    @g.step
    async def left(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs + 1

    @g.step
    async def right(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs + 2

    @g.step
    async def big(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 100

    total = g.join(reduce_sum, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).to(
            g.decision()
            .branch(g.match(int, matches=lambda x: x > 10).label("big").to(big))
            .branch(g.match(int).label("small").to(left, right))
        ),
        g.edge_from(left, right).to(total),
        g.edge_from(total).to(g.end_node),
        g.edge_from(big).to(g.end_node),
    )
    graph = g.build()
    small = RecordingExecutor()
    assert await graph.run(inputs=1, executor=small) == 2 + 3
    assert small.node_ids == Counter({"left": 1, "right": 1})
    large = RecordingExecutor()
    assert await graph.run(inputs=11, executor=large) == 1100
    assert large.node_ids == Counter({"big": 1})


async def test_an_executors_own_exception_propagates() -> None:
    executor = RecordingExecutor(fail_on="square")
    with pytest.raises(ExecutorDown) as info:
        await square_map_graph([]).run(inputs=[1, 2], executor=executor)
    assert info.value.args == ("cannot reach the worker for square",)
    assert any(note.startswith("raised by node `square`") for note in info.value.__notes__)

    node_executor = RecordingExecutor(fail_on="Tick")
    with pytest.raises(ExecutorDown, match="cannot reach the worker for Tick"):
        await tick_graph.run(Tick(), state=Tally(1), executor=node_executor)
    assert node_executor.node_ids == Counter({"Tick": 1})


async def test_a_steps_exception_comes_through_the_executor_unchanged() -> None:
    g: GraphBuilder[None, None, int, int] = GraphBuilder(input_type=int, output_type=int)

    @g.step
    async def fails(ctx: StepContext[None, None, int]) -> int:
        raise ZeroDivisionError(f"no {ctx.inputs}")

    g.add(g.edge_from(g.start_node).to(fails), g.edge_from(fails).to(g.end_node))
    graph = g.build()
    for executor in (RecordingExecutor(), ThreadExecutor(max_workers=1)):
        with pytest.raises(ZeroDivisionError) as info:
            await graph.run(inputs=7, executor=executor)
        assert type(info.value) is ZeroDivisionError
        assert info.value.args == ("no 7",)


# -- blocking steps ---------------------------------------------------------------------------


def handshake_graph(timeout: float) -> BuilderGraph[None, None, None, list[str]]:
    """Two branches that each block their thread on the other: `waiter` on `setter`, `setter` on `waiter`.

    On one thread (the event loop, or a single worker) whichever starts first blocks
    until its timeout, since the other cannot run meanwhile: exactly one of them times
    out. With a thread each, both go through.
    """
    g: GraphBuilder[None, None, None, list[str]] = GraphBuilder(output_type=list[str])
    waiter_started = threading.Event()
    event = threading.Event()

    @g.step
    async def waiter(ctx: StepContext[None, None, None]) -> str:
        waiter_started.set()
        return "waiter saw the event" if event.wait(timeout) else "waiter timed out"  # blocks its thread

    @g.step
    async def setter(ctx: StepContext[None, None, None]) -> str:
        seen = waiter_started.wait(timeout)  # blocks its thread
        event.set()
        return "setter saw the waiter" if seen else "setter timed out"

    collect = g.join(reduce_list_append, initial_factory=list[str])
    g.add(
        g.edge_from(g.start_node).to(waiter, setter),
        g.edge_from(waiter, setter).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


async def test_blocking_steps_on_threads_do_not_block_each_other_or_the_run() -> None:
    # the timeout only bounds a failure: with a worker each, neither waits for it
    result = await handshake_graph(timeout=30).run(executor=ThreadExecutor(max_workers=2))
    assert sorted(result) == ["setter saw the waiter", "waiter saw the event"]


async def test_a_blocking_step_on_a_thread_leaves_the_event_loop_free() -> None:
    g: GraphBuilder[None, None, None, bool] = GraphBuilder(output_type=bool)
    released = threading.Event()

    @g.step
    async def blocks(ctx: StepContext[None, None, None]) -> bool:
        return released.wait(30)  # blocks its thread until the test's own task, on the event loop, sets it

    g.add(g.edge_from(g.start_node).to(blocks), g.edge_from(blocks).to(g.end_node))
    graph = g.build()
    outcomes: list[bool] = []

    async def drive() -> None:
        outcomes.append(await graph.run(executor=ThreadExecutor(max_workers=1)))

    async with anyio.create_task_group() as group:
        group.start_soon(drive)
        await anyio.wait_all_tasks_blocked()  # the run waits on its worker thread
        assert outcomes == []
        released.set()  # this task runs while the step blocks
    assert outcomes == [True]


@pytest.mark.parametrize(
    "make_executor",
    [pytest.param(lambda: None, id="in-process"), pytest.param(lambda: ThreadExecutor(max_workers=1), id="one-worker")],
)
async def test_blocking_steps_on_one_thread_block_each_other(make_executor: Callable[[], Executor | None]) -> None:
    # the step that starts first blocks the only thread there is until it gives up
    result = await handshake_graph(timeout=0.05).run(executor=make_executor())
    assert len(result) == 2
    assert sorted(result) in (
        ["setter saw the waiter", "waiter timed out"],
        ["setter timed out", "waiter saw the event"],
    )


# -- durable runs -----------------------------------------------------------------------------


@dataclass
class Calls:
    fail_on: int | None = None
    per_item: Counter[int] = field(default_factory=Counter[int])
    lock: threading.Lock = field(default_factory=threading.Lock)


def durable_graph() -> BuilderGraph[None, Calls, list[int], int]:
    g: GraphBuilder[None, Calls, list[int], int] = GraphBuilder(deps_type=Calls, input_type=list[int], output_type=int)

    @g.step
    async def square(ctx: StepContext[None, Calls, int]) -> int:
        with ctx.deps.lock:
            ctx.deps.per_item[ctx.inputs] += 1
        if ctx.inputs == ctx.deps.fail_on:
            raise RuntimeError(f"square failed on {ctx.inputs}")
        return ctx.inputs * ctx.inputs

    total = g.join(reduce_sum, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).map(max_concurrency=1).to(square),
        g.edge_from(square).to(total),
        g.edge_from(total).to(g.end_node),
    )
    return g.build()


ITEMS = list(range(6))
EXPECTED = sum(i * i for i in ITEMS)


@pytest.mark.parametrize(
    "make_executor",
    [
        pytest.param(lambda: ThreadExecutor(max_workers=2), id="threads"),
        pytest.param(RecordingExecutor, id="recording"),
    ],
)
async def test_an_executor_runs_the_steps_of_a_durable_builder_run(make_executor: Callable[[], Executor]) -> None:
    graph = durable_graph()
    store = MemoryStore()
    calls = Calls()
    executor = make_executor()
    assert await graph.run(inputs=ITEMS, deps=calls, store=store, run_id="r", executor=executor) == EXPECTED
    assert calls.per_item == Counter(ITEMS)
    (info,) = await store.runs()
    assert (info.run_id, info.status) == ("r", RunStatus.ENDED)
    if isinstance(executor, RecordingExecutor):
        assert executor.node_ids == Counter({"square": len(ITEMS)})

    failing = Calls(fail_on=3)
    with pytest.raises(RuntimeError, match="square failed on 3"):
        await graph.run(inputs=ITEMS, deps=failing, store=store, run_id="again", executor=make_executor())
    assert (await store.runs(status=RunStatus.FAILED))[0].run_id == "again"
    failing.fail_on = None
    resumer = make_executor()
    assert await graph.resume(store, "again", deps=failing, executor=resumer) == EXPECTED
    # one item at a time: the items before the failure finished, and did not run again
    assert failing.per_item == Counter({**dict.fromkeys(ITEMS, 1), 3: 2})
    if isinstance(resumer, RecordingExecutor):
        assert sorted(task.inputs for task in resumer.tasks) == [3, 4, 5]


@pytest.mark.parametrize(
    "make_executor",
    [
        pytest.param(lambda: ThreadExecutor(max_workers=2), id="threads"),
        pytest.param(RecordingExecutor, id="recording"),
    ],
)
async def test_an_executor_runs_the_steps_of_a_durable_node_run(make_executor: Callable[[], Executor]) -> None:
    store = MemoryStore()
    result = await tick_graph.run(Tick(), state=Tally(2), store=store, run_id="ticks", executor=make_executor())
    assert result.output == 3
    (info,) = await store.runs()
    assert (info.run_id, info.status, info.steps) == ("ticks", RunStatus.ENDED, 3)
