"""The builder API: docs-style graphs with their exact outputs, diagrams, iteration and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import anyio
import pytest

from railyard.builder import (
    BaseNode,
    End,
    EndMarker,
    GraphBuilder,
    GraphRunContext,
    GraphTask,
    GraphTaskRequest,
    GraphValidationError,
    ReduceFirstValue,
    ReducerContext,
    StepContext,
    TypeExpression,
    reduce_dict_update,
    reduce_list_append,
    reduce_list_extend,
    reduce_null,
    reduce_sum,
)

pytestmark = pytest.mark.anyio


@dataclass
class CounterState:
    value: int = 0
    log: list[str] = field(default_factory=list[str])


def counter_graph():  # type: ignore[no-untyped-def]
    g = GraphBuilder(state_type=CounterState, output_type=int)

    @g.step
    async def inc(ctx: StepContext[CounterState, None, int | None]) -> int:
        ctx.state.log.append(f"inc ran, inputs= {ctx.inputs} value= {ctx.state.value + 1}")
        ctx.state.value += 1
        return ctx.state.value

    g.add(
        g.edge_from(g.start_node).to(inc),
        g.edge_from(inc).to(
            g.decision()
            .branch(g.match(int, matches=lambda x: x >= 5).label("done").to(g.end_node))
            .branch(g.match(int).label("again").to(inc))
        ),
    )
    return g.build()


async def test_counter_loop_with_a_decision() -> None:
    graph = counter_graph()
    state = CounterState()
    assert await graph.run(state=state) == 5
    assert state.log == [
        "inc ran, inputs= None value= 1",
        "inc ran, inputs= 1 value= 2",
        "inc ran, inputs= 2 value= 3",
        "inc ran, inputs= 3 value= 4",
        "inc ran, inputs= 4 value= 5",
    ]
    assert str(graph) == (
        "stateDiagram-v2\n  inc\n  state decision <<choice>>\n\n  [*] --> inc\n  inc --> decision\n"
        "  decision --> inc: again\n  decision --> [*]: done"
    )


def broadcast_graph(order: list[str]):  # type: ignore[no-untyped-def]
    g = GraphBuilder(output_type=list[int])

    @g.step
    async def source(ctx: StepContext[None, None, None]) -> int:
        return 10

    def adder(amount: int, name: str):  # type: ignore[no-untyped-def]
        async def add(ctx: StepContext[None, None, int]) -> int:
            order.append(name)
            return ctx.inputs + amount

        add.__name__ = name
        return g.step(add)

    add_one, add_two, add_three = adder(1, "add_one"), adder(2, "add_two"), adder(3, "add_three")
    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).to(source),
        g.edge_from(source).to(add_one, add_two, add_three),
        g.edge_from(add_one, add_two, add_three).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


async def test_broadcast_to_three_steps_and_join() -> None:
    order: list[str] = []
    graph = broadcast_graph(order)
    assert await graph.run() == [11, 12, 13]
    assert order == ["add_one", "add_two", "add_three"]
    assert str(graph) == (
        "stateDiagram-v2\n  source\n  state broadcast <<fork>>\n  add_one\n  add_three\n  add_two\n"
        "  state reduce_list_append <<join>>\n\n  [*] --> source\n  source --> broadcast\n"
        "  broadcast --> add_one\n  broadcast --> add_three\n  broadcast --> add_two\n"
        "  add_one --> reduce_list_append\n  add_three --> reduce_list_append\n  add_two --> reduce_list_append\n"
        "  reduce_list_append --> [*]"
    )
    assert graph.render(title="T", direction="LR").startswith("---\ntitle: T\n---\nstateDiagram-v2\n  direction LR\n")


async def test_iteration_events_of_a_broadcast() -> None:
    graph = broadcast_graph([])
    events: list[object] = []
    async with graph.iter() as run:
        assert run.next_task == [GraphTask("__start__", None, (), "task:1")] or isinstance(run.next_task, list)
        async for event in run:
            events.append(event)
    assert [repr(e) for e in events] == [
        "[GraphTask(node_id='source', inputs=None)]",
        "[GraphTask(node_id='broadcast', inputs=10)]",
        "[GraphTask(node_id='add_one', inputs=10), GraphTask(node_id='add_two', inputs=10), "
        "GraphTask(node_id='add_three', inputs=10)]",
        "[GraphTask(node_id='reduce_list_append', inputs=11)]",
        "[GraphTask(node_id='reduce_list_append', inputs=12)]",
        "[GraphTask(node_id='reduce_list_append', inputs=13)]",
        "[GraphTask(node_id='__end__', inputs=[11, 12, 13])]",
        "EndMarker(_value=[11, 12, 13])",
    ]
    branch_tasks = events[2]
    assert isinstance(branch_tasks, list)
    stacks = [task.fork_stack for task in branch_tasks]
    assert [stack[-1].thread_index for stack in stacks] == [0, 1, 2]
    assert all(stack[0].fork_id == "__start__" and stack[-1].fork_id == "broadcast" for stack in stacks)
    assert len({task.task_id for task in branch_tasks}) == 3
    assert run.output == [11, 12, 13]
    assert run.next_task == EndMarker([11, 12, 13])


def map_graph():  # type: ignore[no-untyped-def]
    g = GraphBuilder(output_type=list[int])

    @g.step
    async def generate_list(ctx: StepContext[None, None, None]) -> list[int]:
        return [1, 2, 3, 4, 5]

    @g.step
    async def square(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).to(generate_list),
        g.edge_from(generate_list).map().to(square),
        g.edge_from(square).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


async def test_map_and_list_append_join() -> None:
    graph = map_graph()
    assert await graph.run() == [1, 4, 9, 16, 25]
    assert str(graph) == (
        "stateDiagram-v2\n  generate_list\n  state map <<fork>>\n  square\n  state reduce_list_append <<join>>\n\n"
        "  [*] --> generate_list\n  generate_list --> map\n  map --> square\n  square --> reduce_list_append\n"
        "  reduce_list_append --> [*]"
    )
    assert list(graph.nodes) == ["__start__", "generate_list", "map", "square", "reduce_list_append", "__end__"]
    assert graph.get_parent_fork("reduce_list_append").fork_id == "__start__"
    assert graph.get_parent_fork("reduce_list_append").intermediate_nodes == {"generate_list", "map", "square"}
    with pytest.raises(RuntimeError, match="Node square is not a join node"):
        graph.get_parent_fork("square")
    assert graph.is_final_join("reduce_list_append")


async def test_map_results_come_in_completion_order() -> None:
    g = GraphBuilder(output_type=list[int])

    @g.step
    async def slow_first(ctx: StepContext[None, None, int]) -> int:
        await anyio.sleep((5 - ctx.inputs) * 0.01)
        return ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).map().to(slow_first),
        g.edge_from(slow_first).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    assert await g.build().run(inputs=[1, 2, 3, 4, 5]) == [5, 4, 3, 2, 1]


async def test_map_over_an_async_iterable_from_a_stream_step() -> None:
    g = GraphBuilder(output_type=list[int])
    log: list[str] = []

    @g.stream
    async def numbers(ctx: StepContext[None, None, None]) -> AsyncIterator[int]:
        for n in (1, 2, 3):
            log.append(f"yielding {n}")
            yield n
            await anyio.sleep(0.01)

    @g.step
    async def triple(ctx: StepContext[None, None, int]) -> int:
        log.append(f"triple got {ctx.inputs}")
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


async def test_decisions_by_type_literal_and_predicate() -> None:
    g = GraphBuilder(input_type=object, output_type=str)

    @g.step
    async def left(ctx: StepContext[None, None, str]) -> str:
        return f"literal left: {ctx.inputs!r}"

    @g.step
    async def even(ctx: StepContext[None, None, int]) -> str:
        return f"even int: {ctx.inputs}"

    @g.step
    async def any_int(ctx: StepContext[None, None, int]) -> str:
        return f"int: {ctx.inputs}"

    @g.step
    async def number(ctx: StepContext[None, None, float]) -> str:
        return f"float|complex: {ctx.inputs}"

    decision = (
        g.decision(note="Pick a path")
        .branch(g.match(TypeExpression[Literal["left"]]).to(left))
        .branch(g.match(int, matches=lambda x: isinstance(x, int) and x % 2 == 0).label("even").to(even))
        .branch(g.match(int).to(any_int))
        .branch(g.match(TypeExpression[float | complex]).to(number))
    )
    g.add(
        g.edge_from(g.start_node).to(decision), *(g.edge_from(s).to(g.end_node) for s in (left, even, any_int, number))
    )
    graph = g.build()
    results = [await graph.run(inputs=value) for value in ("left", 4, 7, True, 1.5)]
    assert results == ["literal left: 'left'", "even int: 4", "int: 7", "int: True", "float|complex: 1.5"]
    with pytest.raises(RuntimeError, match=r"No branch matched inputs b'x' for decision node Decision\(id='decision'"):
        await graph.run(inputs=b"x")
    assert "  state decision <<choice>>\n  note right of decision\n    Pick a path\n  end note\n" in str(graph)
    assert "  decision --> even: even\n" in str(graph)


async def test_nested_map_inside_map() -> None:
    g = GraphBuilder(output_type=list[list[int]])

    @g.step
    async def outer(ctx: StepContext[None, None, None]) -> list[list[int]]:
        return [[1, 2], [3, 4, 5]]

    @g.step
    async def tenx(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 10

    inner = g.join(reduce_list_append, initial_factory=list[int], node_id="inner_join", preferred_parent_fork="closest")
    outer_join = g.join(reduce_list_append, initial_factory=list[list[int]], node_id="outer_join")
    g.add(
        g.edge_from(g.start_node).to(outer),
        g.edge_from(outer).map().map().to(tenx),
        g.edge_from(tenx).to(inner),
        g.edge_from(inner).to(outer_join),
        g.edge_from(outer_join).to(g.end_node),
    )
    graph = g.build()
    assert graph.get_parent_fork("inner_join").fork_id == "map_2"
    result = await graph.run()
    assert sorted(result) == [[10, 20], [30, 40, 50]]

    farthest = GraphBuilder(output_type=list[list[int]])
    far_inner = farthest.join(reduce_list_append, initial_factory=list[int], node_id="inner_join")
    far_outer = farthest.join(reduce_list_append, initial_factory=list[list[int]], node_id="outer_join")
    farthest.add(
        farthest.edge_from(farthest.start_node).to(outer),
        farthest.edge_from(outer).map().map().to(tenx),
        farthest.edge_from(tenx).to(far_inner),
        farthest.edge_from(far_inner).to(far_outer),
        farthest.edge_from(far_outer).to(farthest.end_node),
    )
    assert await farthest.build().run() == [[10, 20, 30, 40, 50]]


async def test_first_value_join_cancels_the_other_branches() -> None:
    g = GraphBuilder(output_type=str)
    finished: list[int] = []
    cancelled: list[int] = []

    @g.step
    async def search(ctx: StepContext[None, None, int]) -> str:
        try:
            await anyio.sleep(ctx.inputs * 0.02)
        except anyio.get_cancelled_exc_class():
            cancelled.append(ctx.inputs)
            raise
        finished.append(ctx.inputs)
        return f"Result from task {ctx.inputs}"

    @g.step
    async def after(ctx: StepContext[None, None, str]) -> str:
        return f"after got {ctx.inputs}"

    first = g.join(ReduceFirstValue[str](), initial="", node_id="first_result")
    g.add(
        g.edge_from(g.start_node).map().to(search),
        g.edge_from(search).to(first),
        g.edge_from(first).to(after),
        g.edge_from(after).to(g.end_node),
    )
    with anyio.fail_after(5):
        assert await g.build().run(inputs=[3, 1, 12, 13, 14]) == "after got Result from task 1"
    assert finished == [1]
    assert sorted(cancelled) == [3, 12, 13, 14]


async def test_custom_reducer_with_context_and_other_reducers() -> None:
    async def run_with(reducer, initial, items, step=lambda x: x):  # type: ignore[no-untyped-def]
        g = GraphBuilder()

        @g.step
        async def apply(ctx: StepContext[None, None, object]) -> object:
            return step(ctx.inputs)

        join = g.join(reducer, initial=initial)
        g.add(g.edge_from(g.start_node).map().to(apply), g.edge_from(apply).to(join), g.edge_from(join).to(g.end_node))
        return await g.build().run(inputs=items)

    assert await run_with(reduce_list_extend, [], [1, 2, 3], range) == [0, 0, 1, 0, 1, 2]
    assert await run_with(reduce_dict_update, {}, ["apple", "kiwi"], lambda x: {x: len(x)}) == {"apple": 5, "kiwi": 4}
    assert await run_with(reduce_sum, 0, [10, 20, 70]) == 100
    assert await run_with(reduce_null, None, [1, 2]) is None
    seen: list[str] = []

    def counting(ctx: ReducerContext[int], current: int, inputs: int) -> int:
        seen.append(type(ctx).__name__)
        return current + inputs

    assert await run_with(counting, 0, [1, 2]) == 3
    assert seen == ["ReducerContext", "ReducerContext"]
    # `initial` is copied for each run, not shared between them
    assert await run_with(reduce_list_append, [], [1]) == [1]
    assert await run_with(reduce_list_append, [], [2]) == [2]


async def test_empty_map() -> None:
    g = GraphBuilder(output_type=list[int])

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(
        g.edge_from(g.start_node).map(downstream_join_id="collect").to(double),
        g.edge_from(double).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    assert await g.build().run(inputs=[]) == []

    plain = GraphBuilder(output_type=list[int])
    plain_collect = plain.join(reduce_list_append, initial_factory=list[int])
    plain.add(
        plain.edge_from(plain.start_node).map().to(double),
        plain.edge_from(double).to(plain_collect),
        plain.edge_from(plain_collect).to(plain.end_node),
    )
    with pytest.raises(RuntimeError, match="Graph run completed, but no result was produced"):
        await plain.build().run(inputs=[])


async def test_empty_maps_inside_a_map_each_close_their_own_join() -> None:
    g = GraphBuilder(input_type=int, output_type=list[int])

    @g.step
    async def expand(ctx: StepContext[None, None, int]) -> list[int]:
        return list(range(ctx.inputs))

    @g.step
    async def nothing(ctx: StepContext[None, None, int]) -> list[int]:
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
    # each of the three empty inner maps closes a join of its own, on its initial value
    assert await g.build().run(inputs=3) == [0, 0, 0]


async def test_transform_and_labels() -> None:
    g = GraphBuilder(output_type=str)

    @g.step
    async def generate_number(ctx: StepContext[None, None, None]) -> int:
        return 42

    @g.step
    async def format_output(ctx: StepContext[None, None, int]) -> str:
        return f"The answer is: {ctx.inputs}"

    g.add(
        g.edge_from(g.start_node).to(generate_number),
        g.edge_from(generate_number).transform(lambda ctx: ctx.inputs * 2).label("x2").to(format_output),
        g.edge_from(format_output).to(g.end_node),
    )
    graph = g.build()
    assert await graph.run() == "The answer is: 84"
    assert "  generate_number --> format_output: x2\n" in str(graph)


@dataclass
class NodeState:
    log: list[str] = field(default_factory=list[str])


@dataclass
class NodeA(BaseNode[NodeState, None, int]):
    value: int

    async def run(self, ctx: GraphRunContext[NodeState, None]) -> NodeB:
        ctx.state.log.append(f"A({self.value})")
        return NodeB(self.value * 10)


@dataclass
class NodeB(BaseNode[NodeState, None, int]):
    value: int

    async def run(self, ctx: GraphRunContext[NodeState, None]) -> NodeA | End[int]:
        ctx.state.log.append(f"B({self.value})")
        return NodeA(self.value) if self.value < 100 else End(self.value + 1)


async def test_base_nodes_inside_a_builder_graph() -> None:
    g = GraphBuilder(state_type=NodeState, output_type=int)

    @g.step
    async def make_node(ctx: StepContext[NodeState, None, int]) -> NodeA:
        return NodeA(ctx.inputs)

    g.add(g.edge_from(g.start_node).to(make_node), g.edge_from(make_node).to(NodeA), g.node(NodeA), g.node(NodeB))
    graph = g.build()
    state = NodeState()
    assert await graph.run(state=state, inputs=3) == 301
    assert state.log == ["A(3)", "B(30)", "A(30)", "B(300)"]
    assert str(graph) == (
        "stateDiagram-v2\n  make_node\n  NodeA\n  NodeB\n  state decision <<choice>>\n\n  [*] --> make_node\n"
        "  make_node --> NodeA\n  NodeA --> NodeB\n  NodeB --> decision\n  decision --> NodeA\n  decision --> [*]"
    )


async def test_an_exception_in_one_branch_cancels_the_others_and_surfaces_as_itself() -> None:
    g = GraphBuilder()
    log: list[str] = []

    @g.step
    async def slow(ctx: StepContext[None, None, None]) -> int:
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class():
            log.append("slow cancelled")
            raise
        return 1

    @g.step
    async def boom(ctx: StepContext[None, None, None]) -> int:
        raise ValueError("boom!")

    join = g.join(reduce_null, initial=None)
    g.add(g.edge_from(g.start_node).to(slow, boom), g.edge_from(slow, boom).to(join), g.edge_from(join).to(g.end_node))
    with anyio.fail_after(3), pytest.raises(ValueError, match="boom!") as info:
        await g.build().run()
    assert log == ["slow cancelled"]
    assert any("raised by node `boom`" in note for note in info.value.__notes__)


async def test_max_concurrency_bounds_running_branches() -> None:
    g = GraphBuilder(output_type=int)
    running = 0
    peak = 0

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001)
        running -= 1
        return ctx.inputs

    total = g.join(reduce_sum, initial=0)
    g.add(
        g.edge_from(g.start_node).map(max_concurrency=7).to(work),
        g.edge_from(work).to(total),
        g.edge_from(total).to(g.end_node),
    )
    graph = g.build()
    assert await graph.run(inputs=range(200)) == sum(range(200))
    assert peak == 7
    peak = 0
    assert await graph.run(inputs=range(200), max_concurrency=3) == sum(range(200))
    assert peak <= 3
    with pytest.raises(ValueError, match=r"max_concurrency must be a whole number of at least 1, or None; got 0"):
        g.edge_from(g.start_node).map(max_concurrency=0)
    with pytest.raises(ValueError, match=r"Graph.iter\(\): max_concurrency must be a whole number"):
        await graph.run(inputs=[1], max_concurrency=-1)


async def test_next_can_replace_the_pending_tasks_or_end_the_run() -> None:
    graph = broadcast_graph([])
    async with graph.iter() as run:
        event = await run.next()
        while not (isinstance(event, list) and event and event[0].node_id == "add_one"):
            event = await run.next()
        first = event[0]
        result = await run.next([GraphTaskRequest(first.node_id, 100, first.fork_stack)])
        while not isinstance(result, EndMarker):
            result = await run.next()
    assert run.output == [101]
    async with graph.iter() as run:
        with pytest.raises(StopAsyncIteration):
            await run.next(EndMarker([0]))
    assert run.output == [0]


def test_build_errors_name_the_nodes() -> None:
    g = GraphBuilder()

    @g.step
    async def a(ctx: StepContext[None, None, None]) -> None:
        return None

    @g.step
    async def b(ctx: StepContext[None, None, None]) -> None:
        return None

    g.add(g.edge_from(g.start_node).to(a), g.edge_from(a).to(b))
    with pytest.raises(GraphValidationError, match=r"The following nodes have no outgoing edges: \['b'\]\."):
        g.build()
    empty = GraphBuilder()
    with pytest.raises(GraphValidationError, match="The graph has no edges from the start node"):
        empty.build()
    loop = GraphBuilder()
    loop.add(loop.edge_from(loop.start_node).to(a), loop.edge_from(a).to(b), loop.edge_from(b).to(a))
    with pytest.raises(GraphValidationError, match="The graph has no edges to the end node"):
        loop.build()
    decisions = GraphBuilder()
    decisions.add(decisions.edge_from(decisions.start_node).to(decisions.decision()))
    with pytest.raises(GraphValidationError, match="Decision node `decision` has no branches"):
        decisions.build()
    stuck = GraphBuilder()
    stuck.add(
        stuck.edge_from(stuck.start_node).to(a, b),
        stuck.edge_from(a).to(stuck.end_node),
        stuck.edge_from(b).to(b),
    )
    with pytest.raises(GraphValidationError, match=r"The following nodes have no path to the end node: \['b'\]"):
        stuck.build()


def test_build_rejects_sync_steps_and_duplicate_ids() -> None:
    from railyard.builder import GraphBuildingError

    g = GraphBuilder()
    with pytest.raises(GraphBuildingError, match="Step `sync_step` must be an `async def` function"):

        @g.step
        def sync_step(ctx: StepContext[None, None, None]) -> int:  # type: ignore[misc]
            return 5

    def make(name: str):  # type: ignore[no-untyped-def]
        async def step(ctx: StepContext[None, None, None]) -> None:
            return None

        return g.step(node_id=name)(step)

    first, second = make("dup"), make("dup")
    # refused where the clash is made, as pydantic-graph does
    with pytest.raises(GraphBuildingError, match=r"All nodes must have unique node IDs\. 'dup' was the ID for"):
        g.add(g.edge_from(g.start_node).to(first), g.edge_from(first).to(second), g.edge_from(second).to(g.end_node))


def test_map_over_a_non_iterable_is_a_clear_error() -> None:
    graph = map_graph()
    g = GraphBuilder()

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    join = g.join(reduce_list_append, initial_factory=list[int])
    g.add(g.edge_from(g.start_node).map().to(double), g.edge_from(double).to(join), g.edge_from(join).to(g.end_node))
    with pytest.raises(RuntimeError, match="Cannot map non-iterable value: 5"):
        g.build().run_sync(inputs=5)
    assert graph.run_sync() == [1, 4, 9, 16, 25]


def test_a_step_that_cannot_take_what_flows_into_it_is_a_build_error() -> None:
    g = GraphBuilder()

    @g.step
    async def make_text(ctx: StepContext[None, None, None]) -> str:
        return "x"

    @g.step
    async def needs_int(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs

    g.add(
        g.edge_from(g.start_node).to(make_text),
        g.edge_from(make_text).to(needs_int),
        g.edge_from(needs_int).to(g.end_node),
    )
    with pytest.raises(
        GraphValidationError,
        match=r"`needs_int` takes `int` \(its StepContext input type\), but `make_text` gives it `str`",
    ):
        g.build()
    assert g.build(validate_graph_structure=False) is not None

    mapped = GraphBuilder()

    @mapped.step
    async def make_texts(ctx: StepContext[None, None, None]) -> list[str]:
        return ["x"]

    join = mapped.join(reduce_list_append, initial_factory=list[int])
    mapped.add(
        mapped.edge_from(mapped.start_node).to(make_texts),
        mapped.edge_from(make_texts).map().to(needs_int),
        mapped.edge_from(needs_int).to(join),
        mapped.edge_from(join).to(mapped.end_node),
    )
    with pytest.raises(GraphValidationError, match=r"`needs_int` takes `int`.*`make_texts` gives it `str`"):
        mapped.build()
