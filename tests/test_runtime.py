"""The engine on every anyio backend: node and builder runs on asyncio and on trio.

The loop has code of its own for each backend (asyncio's tasks, or an anyio task group
elsewhere), so every test here runs on both and both paths are real code. Nothing waits
on the clock: order is made deterministic with events, and quiescence is
`anyio.wait_all_tasks_blocked()`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.builder import (
    EndMarker,
    GraphBuilder,
    ReduceFirstValue,
    ReducerContext,
    Step,
    StepContext,
    reduce_list_append,
    reduce_sum,
)
from railyard.builder import Graph as BuilderGraph
from railyard.store import RunStatus
from railyard.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test of this module runs on asyncio and on trio."""
    return str(request.param)


# -- the node API ---------------------------------------------------------------------------


@dataclass
class CountDownState:
    counter: int
    seen: list[int] = field(default_factory=list[int])


@dataclass
class CountDown(BaseNode[CountDownState, None, int]):
    async def run(self, ctx: GraphRunContext[CountDownState]) -> CountDown | End[int]:
        await anyio.lowlevel.checkpoint()  # a real wait: the step cannot finish eagerly
        ctx.state.seen.append(ctx.state.counter)
        if ctx.state.counter <= 0:
            return End(ctx.state.counter)
        ctx.state.counter -= 1
        return CountDown()


@dataclass
class SetCounter(BaseNode[CountDownState, None, int]):
    value: int

    async def run(self, ctx: GraphRunContext[CountDownState]) -> CountDown:
        ctx.state.counter = self.value
        return CountDown()


@dataclass
class Explode(BaseNode[CountDownState, None, int]):
    async def run(self, ctx: GraphRunContext[CountDownState]) -> CountDown:
        await anyio.lowlevel.checkpoint()
        raise KeyError("explode")


count_down_graph: Graph[CountDownState, None, int] = Graph(
    nodes=[CountDown, SetCounter, Explode], name="count_down_graph"
)


async def test_node_api_countdown_run_and_iter() -> None:
    result = await count_down_graph.run(CountDown(), state=CountDownState(3))
    assert result.output == 0
    assert result.state == CountDownState(0, [3, 2, 1, 0])

    state = CountDownState(2)
    async with count_down_graph.iter(CountDown(), state=state) as run:
        nodes = [node async for node in run]
    assert nodes == [CountDown(), CountDown(), CountDown(), End(0)]
    assert run.result is not None
    assert run.result.output == 0
    assert run.result.state is state
    assert state == CountDownState(0, [2, 1, 0])


async def test_node_api_driven_by_hand_with_next() -> None:
    state = CountDownState(5)
    async with count_down_graph.iter(CountDown(), state=state) as run:
        due = run.next_node
        assert due == CountDown()
        assert await run.next() == CountDown()
        assert state.counter == 4
        # a different node than the one due: the run goes on from what it returns
        assert await run.next(SetCounter(1)) == CountDown()
        assert state.counter == 1
        assert await run.next() == CountDown()
        assert state.counter == 0
        assert await run.next() == End(0)
        assert run.next_node == End(0)
    assert run.result is not None
    assert run.result.output == 0
    assert state.seen == [5, 1, 0]


async def test_node_api_exception_surfaces_as_itself() -> None:
    with pytest.raises(KeyError, match="explode") as info:
        await count_down_graph.run(Explode(), state=CountDownState(0))
    assert type(info.value) is KeyError


# -- the builder API ------------------------------------------------------------------------


def chained_broadcast(order: list[str], events: dict[str, anyio.Event]) -> BuilderGraph[None, None, None, list[int]]:
    """source -> (add_one, add_two, add_three) -> list join; add_three finishes first, add_one last."""
    g: GraphBuilder[None, None, None, list[int]] = GraphBuilder(output_type=list[int])

    @g.step
    async def source(ctx: StepContext[None, None, None]) -> int:
        return 10

    def adder(amount: int, name: str, after: str | None) -> Step[None, None, int, int]:
        async def add(ctx: StepContext[None, None, int]) -> int:
            if after is not None:
                await events[after].wait()
            else:
                await anyio.lowlevel.checkpoint()
            order.append(name)
            events[name].set()
            return ctx.inputs + amount

        add.__name__ = name
        return g.step(add)

    add_one = adder(1, "add_one", after="add_two")
    add_two = adder(2, "add_two", after="add_three")
    add_three = adder(3, "add_three", after=None)
    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).to(source),
        g.edge_from(source).to(add_one, add_two, add_three),
        g.edge_from(add_one, add_two, add_three).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


def new_events(*names: str) -> dict[str, anyio.Event]:
    return {name: anyio.Event() for name in names}


async def test_broadcast_to_three_steps_and_a_list_join() -> None:
    order: list[str] = []
    graph = chained_broadcast(order, new_events("add_one", "add_two", "add_three"))
    # the join takes the values as the branches finish: the order the events impose
    assert await graph.run() == [13, 12, 11]
    assert order == ["add_three", "add_two", "add_one"]


async def test_builder_iter_shows_each_batch_of_tasks() -> None:
    graph = chained_broadcast([], new_events("add_one", "add_two", "add_three"))
    batches: list[list[str] | EndMarker[list[int]]] = []
    async with graph.iter() as run:
        async for event in run:
            batches.append(event if isinstance(event, EndMarker) else [task.node_id for task in event])
    assert batches == [
        ["source"],
        ["broadcast"],
        ["add_one", "add_two", "add_three"],
        ["reduce_list_append"],
        ["reduce_list_append"],
        ["reduce_list_append"],
        ["__end__"],
        EndMarker([13, 12, 11]),
    ]
    assert run.output == [13, 12, 11]


async def test_map_join_takes_results_in_completion_order() -> None:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])
    done = {n: anyio.Event() for n in range(1, 7)}
    done[6].set()  # the last item waits for nothing

    @g.step
    async def reverse(ctx: StepContext[None, None, int]) -> int:
        await done[ctx.inputs + 1].wait()  # item n finishes after item n + 1
        done[ctx.inputs].set()
        return ctx.inputs * 100

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).map().to(reverse),
        g.edge_from(reverse).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    assert await g.build().run(inputs=[1, 2, 3, 4, 5]) == [500, 400, 300, 200, 100]


async def test_nested_map_inside_map() -> None:
    def build(*, closest: bool) -> BuilderGraph[None, None, None, list[list[int]]]:
        g: GraphBuilder[None, None, None, list[list[int]]] = GraphBuilder(output_type=list[list[int]])

        @g.step
        async def outer(ctx: StepContext[None, None, None]) -> list[list[int]]:
            return [[1, 2], [3, 4, 5], []]

        @g.step
        async def tenx(ctx: StepContext[None, None, int]) -> int:
            await anyio.lowlevel.checkpoint()
            return ctx.inputs * 10

        inner = g.join(
            reduce_list_append,
            initial_factory=list[int],
            node_id="inner_join",
            preferred_parent_fork="closest" if closest else "farthest",
        )
        outer_join = g.join(reduce_list_append, initial_factory=list[list[int]], node_id="outer_join")
        g.add(
            g.edge_from(g.start_node).to(outer),
            g.edge_from(outer).map().map().to(tenx),
            g.edge_from(tenx).to(inner),
            g.edge_from(inner).to(outer_join),
            g.edge_from(outer_join).to(g.end_node),
        )
        return g.build()

    # one inner join per outer item (the empty one has no branch, so no value)
    closest = await build(closest=True).run()
    assert sorted(sorted(inner) for inner in closest) == [[10, 20], [30, 40, 50]]
    # one inner join for the whole run
    (everything,) = await build(closest=False).run()
    assert sorted(everything) == [10, 20, 30, 40, 50]


async def test_an_empty_map_closes_its_downstream_join() -> None:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])
    ran: list[int] = []

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        ran.append(ctx.inputs)
        return ctx.inputs * 2

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(
        g.edge_from(g.start_node).map(downstream_join_id="collect").to(double),
        g.edge_from(double).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    graph = g.build()
    assert await graph.run(inputs=[]) == []
    assert ran == []
    assert await graph.run(inputs=[4]) == [8]


async def test_empty_maps_inside_a_map_each_close_their_own_join() -> None:
    g: GraphBuilder[None, None, int, list[int]] = GraphBuilder(input_type=int, output_type=list[int])

    @g.step
    async def expand(ctx: StepContext[None, None, int]) -> list[int]:
        return list(range(ctx.inputs))

    @g.step
    async def nothing(ctx: StepContext[None, None, int]) -> list[int]:
        await anyio.lowlevel.checkpoint()
        return []

    @g.step
    async def count(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs + 1

    inner = g.join(reduce_sum, initial=0, node_id="inner", preferred_parent_fork="closest")
    outer = g.join(reduce_list_append, initial_factory=list[int], node_id="outer")
    g.add(
        g.edge_from(g.start_node).to(expand),
        g.edge_from(expand).map(downstream_join_id="outer").to(nothing),
        g.edge_from(nothing).map(downstream_join_id="inner").to(count),
        g.edge_from(count).to(inner),
        g.edge_from(inner).to(outer),
        g.edge_from(outer).to(g.end_node),
    )
    assert await g.build().run(inputs=3) == [0, 0, 0]


async def test_map_over_an_async_iterable_from_a_stream_step() -> None:
    g: GraphBuilder[None, None, None, list[int]] = GraphBuilder(output_type=list[int])
    log: list[str] = []
    handled = {n: anyio.Event() for n in (1, 2, 3)}

    @g.stream
    async def numbers(ctx: StepContext[None, None, None]) -> AsyncIterator[int]:
        for n in (1, 2, 3):
            log.append(f"yielding {n}")
            yield n
            await handled[n].wait()  # the next item only once this one's branch has run

    @g.step
    async def triple(ctx: StepContext[None, None, int]) -> int:
        log.append(f"triple got {ctx.inputs}")
        handled[ctx.inputs].set()
        return ctx.inputs * 3

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).to(numbers),
        g.edge_from(numbers).map().to(triple),
        g.edge_from(triple).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    assert await g.build().run() == [3, 6, 9]
    assert log == ["yielding 1", "triple got 1", "yielding 2", "triple got 2", "yielding 3", "triple got 3"]


@pytest.mark.parametrize(
    ("map_limit", "run_limit", "bound"),
    [
        pytest.param(2, None, 2, id="map-limit"),
        pytest.param(None, 3, 3, id="run-limit"),
        pytest.param(4, 2, 2, id="both-run-wins"),
    ],
)
async def test_max_concurrency_bounds_the_steps_running_at_once(
    map_limit: int | None, run_limit: int | None, bound: int
) -> None:
    g: GraphBuilder[None, None, list[int], int] = GraphBuilder(input_type=list[int], output_type=int)
    items = list(range(7))
    gates = {n: anyio.Event() for n in items}
    running: set[int] = set()
    peak = 0

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        nonlocal peak
        running.add(ctx.inputs)
        peak = max(peak, len(running))
        try:
            await gates[ctx.inputs].wait()
        finally:
            running.discard(ctx.inputs)
        return ctx.inputs

    total = g.join(reduce_sum, initial=0)
    g.add(
        g.edge_from(g.start_node).map(max_concurrency=map_limit).to(work),
        g.edge_from(work).to(total),
        g.edge_from(total).to(g.end_node),
    )
    graph = g.build()
    outcome: list[int] = []

    async def drive() -> None:
        outcome.append(await graph.run(inputs=items, max_concurrency=run_limit))

    seen: list[list[int]] = []
    async with anyio.create_task_group() as group:
        group.start_soon(drive)
        while True:
            await anyio.wait_all_tasks_blocked()  # every step that can start has, and waits at its gate
            if outcome:
                break
            seen.append(sorted(running))
            assert running, f"the run is stuck with nothing running (seen so far: {seen})"
            gates[min(running)].set()  # let the oldest finish: one slot frees
    assert outcome == [sum(items)]
    assert peak == bound
    # at every quiet moment the limit is full (until the items run out), and items start in order
    expected = [items[start : start + bound] for start in range(len(items))]
    assert seen == expected


async def test_a_first_value_join_cancels_the_other_branches() -> None:
    g: GraphBuilder[None, None, list[int], str] = GraphBuilder(input_type=list[int], output_type=str)
    started: list[int] = []
    finished: list[int] = []
    cancelled: list[int] = []
    all_started = anyio.Event()
    never = anyio.Event()
    inputs = [3, 1, 12, 13, 14]

    @g.step
    async def search(ctx: StepContext[None, None, int]) -> str:
        started.append(ctx.inputs)
        if len(started) == len(inputs):
            all_started.set()
        try:
            if ctx.inputs == 1:
                await all_started.wait()  # the winner finishes only once every branch runs
            else:
                await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.inputs)
            raise
        finished.append(ctx.inputs)
        return f"Result from task {ctx.inputs}"

    after_ran: list[str] = []

    @g.step
    async def after(ctx: StepContext[None, None, str]) -> str:
        after_ran.append(ctx.inputs)
        return f"after got {ctx.inputs}"

    first = g.join(ReduceFirstValue[str](), initial="", node_id="first_result")
    g.add(
        g.edge_from(g.start_node).map().to(search),
        g.edge_from(search).to(first),
        g.edge_from(first).to(after),
        g.edge_from(after).to(g.end_node),
    )
    assert await g.build().run(inputs=inputs) == "after got Result from task 1"
    assert sorted(started) == sorted(inputs)
    assert finished == [1]
    assert sorted(cancelled) == [3, 12, 13, 14]
    assert after_ran == ["Result from task 1"]
    assert not never.is_set()


async def test_a_reducer_can_cancel_sibling_tasks_itself() -> None:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])
    cancelled: list[int] = []
    never = anyio.Event()
    quick_done = {n: anyio.Event() for n in (0, 1)}
    slow_started: list[int] = []
    all_slow_started = anyio.Event()

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        try:
            if ctx.inputs < 2:
                if ctx.inputs == 1:
                    await quick_done[0].wait()
                else:
                    await all_slow_started.wait()  # every sibling is running before the first two arrive
                quick_done[ctx.inputs].set()
                return ctx.inputs
            slow_started.append(ctx.inputs)
            if len(slow_started) == 3:
                all_slow_started.set()
            await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.inputs)
            raise
        return ctx.inputs

    def first_two(ctx: ReducerContext[list[int]], current: list[int], inputs: int) -> list[int]:
        current = [*current, inputs]
        if len(current) == 2:
            ctx.cancel_sibling_tasks()
        return current

    join = g.join(first_two, initial_factory=list[int], node_id="first_two")
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(join), g.edge_from(join).to(g.end_node))
    assert await g.build().run(inputs=[0, 1, 2, 3, 4]) == [0, 1]
    assert sorted(cancelled) == [2, 3, 4]


async def test_an_exception_in_one_branch_cancels_the_others_and_surfaces_as_itself() -> None:
    g: GraphBuilder[None, None, None, None] = GraphBuilder()
    log: list[str] = []
    slow_started = anyio.Event()
    never = anyio.Event()

    @g.step
    async def slow(ctx: StepContext[None, None, None]) -> int:
        slow_started.set()
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            log.append("slow cancelled")
            raise
        log.append("slow finished")
        return 1

    @g.step
    async def boom(ctx: StepContext[None, None, None]) -> int:
        await slow_started.wait()
        raise ValueError("boom!")

    join = g.join(reduce_sum, initial=0)
    g.add(g.edge_from(g.start_node).to(slow, boom), g.edge_from(slow, boom).to(join), g.edge_from(join).to(g.end_node))
    with pytest.raises(ValueError) as info:
        await g.build().run()
    assert type(info.value) is ValueError  # not wrapped in an exception group
    assert info.value.args == ("boom!",)
    assert log == ["slow cancelled"]
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 1
    assert notes[0].startswith("raised by node `boom` (Step) in task task:")


# -- cancel scopes inside steps ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", [pytest.param("cancel-scope", id="cancel-scope"), pytest.param("task-group", id="task-group")]
)
async def test_a_step_may_open_a_cancel_scope_before_its_first_wait(kind: str) -> None:
    # A step started eagerly in the driver's own task (as the loop once did on asyncio) enters
    # its scope there and exits it in another task: anyio raises RuntimeError.
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        if kind == "cancel-scope":
            with anyio.CancelScope():
                await anyio.lowlevel.checkpoint()
            return ctx.inputs * 2
        results: list[int] = []

        async def child() -> None:
            await anyio.lowlevel.checkpoint()
            results.append(ctx.inputs * 2)

        async with anyio.create_task_group() as group:
            group.start_soon(child)
        return results[0]

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(collect), g.edge_from(collect).to(g.end_node))
    assert sorted(await g.build().run(inputs=[1, 2, 3])) == [2, 4, 6]


async def test_a_cancelled_step_finishes_its_shielded_section(
    anyio_backend: str, request: pytest.FixtureRequest
) -> None:
    g: GraphBuilder[None, None, list[int], str] = GraphBuilder(input_type=list[int], output_type=str)
    log: list[str] = []
    shielded = anyio.Event()
    release = anyio.Event()

    @g.step
    async def search(ctx: StepContext[None, None, int]) -> str:
        await anyio.lowlevel.checkpoint()  # past any eager start: on a task of its own
        if ctx.inputs == 1:
            await shielded.wait()  # the winner finishes once the loser is inside its shield
            return "winner"
        try:
            with anyio.CancelScope(shield=True):
                shielded.set()
                await release.wait()  # set by `after`, which runs only once the loser is cancelled
                log.append("shielded section done")
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            log.append("cancelled")
            raise
        return "loser"

    @g.step
    async def after(ctx: StepContext[None, None, str]) -> str:
        release.set()
        return f"after {ctx.inputs}"

    first = g.join(ReduceFirstValue[str](), initial="")
    g.add(
        g.edge_from(g.start_node).map().to(search),
        g.edge_from(search).to(first),
        g.edge_from(first).to(after),
        g.edge_from(after).to(g.end_node),
    )
    assert await g.build().run(inputs=[2, 1]) == "after winner"
    assert log == ["shielded section done", "cancelled"]


class Crash(BaseException):
    """Not an `Exception`: like `KeyboardInterrupt`, or a process dying mid-step."""


async def outcome_or_hang(run: Callable[[], Awaitable[object]]) -> tuple[str, object]:
    """What `run()` returns or raises, or ("hung", None) if it stops making progress.

    A hang is told from slowness without a clock: once every task is blocked and the run
    has not finished, nothing can ever wake it (the graphs here wait on no timer or I/O).
    """
    outcomes: list[tuple[str, object]] = []

    async def drive() -> None:
        try:
            outcomes.append(("returned", await run()))
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as error:
            outcomes.append(("raised", error))

    async with anyio.create_task_group() as group:
        group.start_soon(drive)
        await anyio.wait_all_tasks_blocked()
        if not outcomes:
            group.cancel_scope.cancel()
    return outcomes[0] if outcomes else ("hung", None)


async def test_a_base_exception_in_a_branch_surfaces_as_itself(request: pytest.FixtureRequest) -> None:
    g: GraphBuilder[None, None, list[int], int] = GraphBuilder(input_type=list[int], output_type=int)
    cancelled: list[int] = []
    waiting: list[int] = []
    both_waiting = anyio.Event()
    never = anyio.Event()

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        await anyio.lowlevel.checkpoint()
        if ctx.inputs == 2:
            await both_waiting.wait()  # the other two are inside their steps when this one raises
            raise Crash("crash")
        waiting.append(ctx.inputs)
        if len(waiting) == 2:
            both_waiting.set()
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.inputs)
            raise
        return ctx.inputs

    total = g.join(reduce_sum, initial=0)
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(total), g.edge_from(total).to(g.end_node))
    graph = g.build()
    kind, value = await outcome_or_hang(lambda: graph.run(inputs=[1, 2, 3]))
    assert kind == "raised", f"the run {kind}"
    assert type(value) is Crash, f"raised {value!r}"
    assert sorted(cancelled) == [1, 3]


# -- durable builder runs -------------------------------------------------------------------


@dataclass
class Calls:
    fail_on: int | None = None
    per_item: Counter[int] = field(default_factory=Counter[int])


def durable_map_graph() -> BuilderGraph[None, Calls, list[int], int]:
    g: GraphBuilder[None, Calls, list[int], int] = GraphBuilder(deps_type=Calls, input_type=list[int], output_type=int)

    @g.step
    async def square(ctx: StepContext[None, Calls, int]) -> int:
        ctx.deps.per_item[ctx.inputs] += 1
        if ctx.inputs == ctx.deps.fail_on:
            # fail only once everything else that can finish has finished (and been recorded)
            await anyio.wait_all_tasks_blocked()
            raise RuntimeError(f"square failed on {ctx.inputs}")
        await anyio.lowlevel.checkpoint()
        return ctx.inputs * ctx.inputs

    @g.step
    async def plus_one(ctx: StepContext[None, Calls, int]) -> int:
        return ctx.inputs + 1

    total = g.join(reduce_sum, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).map().to(square),
        g.edge_from(square).to(plus_one),
        g.edge_from(plus_one).to(total),
        g.edge_from(total).to(g.end_node),
    )
    return g.build()


ITEMS = list(range(8))
EXPECTED = sum(i * i + 1 for i in ITEMS)


async def test_a_durable_builder_run_on_a_memory_store() -> None:
    graph = durable_map_graph()
    plain = Calls()
    assert await graph.run(inputs=ITEMS, deps=plain) == EXPECTED
    store = MemoryStore()
    durable = Calls()
    assert await graph.run(inputs=ITEMS, deps=durable, store=store, run_id="r") == EXPECTED
    assert durable.per_item == plain.per_item == Counter(ITEMS)
    (info,) = await store.runs()
    assert info.run_id == "r"
    assert info.status is RunStatus.ENDED
    # start, map, 8 squares, 8 plus_ones, 8 join tasks, end (the join's closing is not a step)
    assert info.steps == 1 + 1 + 3 * len(ITEMS) + 1
    assert info.last_node == "__end__"
    kinds = Counter(record.kind for record in await store.read("r"))
    # only steps that run user code record their start (8 squares, 8 plus_ones): the loop's
    # own tasks (start, map, join arrivals, end) run whole and record only their finish
    assert kinds["step_started"] == 2 * len(ITEMS)
    assert kinds["step_failed"] == 0


async def test_a_durable_run_that_fails_mid_map_resumes_without_rerunning_finished_items() -> None:
    graph = durable_map_graph()
    store = MemoryStore()
    calls = Calls(fail_on=5)
    with pytest.raises(RuntimeError) as info:
        await graph.run(inputs=ITEMS, deps=calls, store=store, run_id="r")
    assert info.value.args == ("square failed on 5",)
    assert info.value.__notes__ == [
        f"raised by node `square` (Step) in task {info.value.__notes__[0].rsplit(' ', 1)[-1]}"
    ]
    (failed,) = await store.runs()
    assert failed.status is RunStatus.FAILED
    assert calls.per_item == Counter(ITEMS)

    calls.fail_on = None
    assert await graph.resume(store, "r", deps=calls) == EXPECTED
    # every item ran once, but the one that failed, which ran again on resume
    assert calls.per_item == Counter({**dict.fromkeys(ITEMS, 1), 5: 2})
    (ended,) = await store.runs()
    assert ended.status is RunStatus.ENDED


# -- the caller's code in the run's block -----------------------------------------------------


async def wait_on_a_task_of_its_own() -> None:
    """Wait for an event another task sets (a real wait, not only a checkpoint)."""
    event = anyio.Event()

    async def set_it() -> None:
        await anyio.lowlevel.checkpoint()
        event.set()

    async with anyio.create_task_group() as group:
        group.start_soon(set_it)
        await event.wait()
    assert event.is_set()


async def test_the_callers_code_after_a_node_run_ends_can_still_wait() -> None:
    async with count_down_graph.iter(CountDown(), state=CountDownState(2)) as run:
        async for _ in run:
            pass
        await anyio.lowlevel.checkpoint()
        assert anyio.current_effective_deadline() == float("inf")
        await wait_on_a_task_of_its_own()
    assert run.result is not None
    assert run.result.output == 0


async def test_the_callers_code_after_a_builder_run_ends_can_still_wait() -> None:
    graph = chained_broadcast([], new_events("add_one", "add_two", "add_three"))
    async with graph.iter() as run:
        async for _ in run:
            pass
        await anyio.lowlevel.checkpoint()
        assert anyio.current_effective_deadline() == float("inf")
        await wait_on_a_task_of_its_own()
    assert run.output == [13, 12, 11]


async def test_the_callers_code_after_a_builder_run_fails_can_still_wait() -> None:
    g: GraphBuilder[None, None, None, None] = GraphBuilder()
    never = anyio.Event()
    cancelled: list[str] = []

    @g.step
    async def waits(ctx: StepContext[None, None, None]) -> int:
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append("waits")
            raise
        return 0

    @g.step
    async def fails(ctx: StepContext[None, None, None]) -> int:
        await anyio.lowlevel.checkpoint()
        raise LookupError("fails")

    join = g.join(reduce_sum, initial=0)
    g.add(
        g.edge_from(g.start_node).to(waits, fails),
        g.edge_from(waits, fails).to(join),
        g.edge_from(join).to(g.end_node),
    )
    async with g.build().iter() as run:
        with pytest.raises(LookupError, match="fails"):
            async for _ in run:
                pass
        await anyio.lowlevel.checkpoint()
        await anyio.wait_all_tasks_blocked()
        assert cancelled == ["waits"]
    assert run.output is None


async def test_leaving_a_builder_run_early_cancels_its_steps_but_not_the_callers_code() -> None:
    g: GraphBuilder[None, None, list[int], int] = GraphBuilder(input_type=list[int], output_type=int)
    never = anyio.Event()
    started: list[int] = []
    cancelled: list[int] = []

    @g.step
    async def waits(ctx: StepContext[None, None, int]) -> int:
        started.append(ctx.inputs)
        try:
            await never.wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.inputs)
            raise
        return ctx.inputs

    join = g.join(reduce_sum, initial=0)
    g.add(g.edge_from(g.start_node).map().to(waits), g.edge_from(waits).to(join), g.edge_from(join).to(g.end_node))
    async with g.build().iter(inputs=[1, 2, 3]) as run:
        async for batch in run:
            if not isinstance(batch, EndMarker) and batch and batch[0].node_id == "waits":
                break
        await anyio.wait_all_tasks_blocked()  # the steps started, and wait
        assert sorted(started) == [1, 2, 3]
        await anyio.lowlevel.checkpoint()
        assert cancelled == []
    # leaving the block cancelled what the run had started
    assert sorted(cancelled) == [1, 2, 3]
    assert run.output is None


async def test_cancelling_the_caller_cancels_every_step_and_returns() -> None:
    g: GraphBuilder[None, None, list[int], list[int]] = GraphBuilder(input_type=list[int], output_type=list[int])
    started: list[int] = []
    cancelled: list[int] = []

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        started.append(ctx.inputs)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.inputs)
            raise
        return 0

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(collect), g.edge_from(collect).to(g.end_node))
    graph = g.build()
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            await graph.run(inputs=[1, 2, 3])

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await anyio.wait_all_tasks_blocked()  # every step is waiting in its lane
        scope.cancel()
    assert sorted(started) == sorted(cancelled) == [1, 2, 3]
