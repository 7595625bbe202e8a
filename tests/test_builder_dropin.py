"""The builder as a drop-in for pydantic-graph's: build-time checks, joins, iteration, names, v1 nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import pytest

from railyard.builder import (
    BaseNode,
    End,
    EndMarker,
    GraphBuilder,
    GraphBuildingError,
    GraphRunContext,
    GraphTaskRequest,
    GraphValidationError,
    StepContext,
    StepNode,
    reduce_list_append,
    reduce_list_extend,
    reduce_sum,
)
from railyard.builder.id_types import generate_placeholder_node_id, replace_placeholder_id
from railyard.builder.join import JoinNode
from railyard.builder.mermaid import build_mermaid_graph
from railyard.builder.node_types import is_destination, is_source
from railyard.builder.parent_forks import ParentForkFinder
from railyard.builder.paths import DestinationMarker, LabelMarker, MapMarker, Path, PathBuilder
from railyard.builder.util import Some, infer_name

pytestmark = pytest.mark.anyio


# -- parent forks ----------------------------------------------------------------------------


def test_parent_fork_finder_picks_the_farthest_dominating_fork_not_bypassed_by_a_cycle() -> None:
    edges = {"s": ["F1"], "F1": ["F2"], "F2": ["A", "B"], "A": ["J"], "B": ["J"], "J": ["e"]}
    nodes = {"s", "F1", "F2", "A", "B", "J", "e"}
    finder = ParentForkFinder(nodes, {"s"}, {"F1", "F2"}, edges)
    farthest = finder.find_parent_fork("J")
    assert farthest is not None and farthest.fork_id == "F1"
    assert farthest.intermediate_nodes == {"F2", "A", "B"}
    closest = finder.find_parent_fork("J", prefer_closest=True)
    assert closest is not None and closest.fork_id == "F2"
    assert closest.intermediate_nodes == {"A", "B"}


def test_parent_fork_finder_refuses_a_join_on_a_cycle_avoiding_every_fork() -> None:
    edges = {"s": ["F"], "F": ["A", "B"], "A": ["J"], "B": ["J"], "J": ["C"], "C": ["A"]}
    finder = ParentForkFinder({"s", "F", "A", "B", "C", "J"}, {"s"}, {"F"}, edges)
    assert finder.find_parent_fork("J") is None
    with pytest.raises(GraphBuildingError, match="cycle in the graph passing through 'J' that does not include 'F'"):
        finder.find_parent_fork("J", parent_fork_id="F")
    # a join no start reaches has no immediate dominator: no parent fork
    unreachable = ParentForkFinder({"s", "F", "A", "J"}, {"s"}, {"F"}, {"F": ["A"], "A": ["J"]})
    assert unreachable.find_parent_fork("J") is None


def test_a_join_on_a_loop_with_no_fork_inside_is_refused_at_build() -> None:
    g = GraphBuilder(input_type=int, output_type=int)

    @g.step
    async def again(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs + 1

    total = g.join(reduce_sum, initial=0)
    g.add(
        g.edge_from(g.start_node).to(again),
        g.edge_from(again).to(total),
        g.edge_from(total).to(
            g.decision().branch(g.match(int, matches=lambda x: x > 3).to(g.end_node)).branch(g.match(int).to(again))
        ),
    )
    with pytest.raises(GraphBuildingError, match="missing a dominating fork") as raised:
        g.build()
    assert "Join 'reduce_sum' in this graph has no dominating fork" in str(raised.value)
    assert "stateDiagram-v2" in str(raised.value)  # the message draws the graph


# -- structural checks -----------------------------------------------------------------------


def test_empty_broadcasts_and_maps_from_several_sources_are_refused_when_written() -> None:
    g = GraphBuilder(output_type=int)

    @g.step
    async def a(ctx: StepContext[None, None, None]) -> list[int]:
        return [1]

    @g.step
    async def b(ctx: StepContext[None, None, None]) -> list[int]:
        return [2]

    with pytest.raises(GraphBuildingError, match="returned no branches, but must return at least one"):
        g.edge_from(a).broadcast(lambda e: [])
    with pytest.raises(GraphBuildingError, match="returned no branches, but must return at least one"):
        g.match(int).broadcast(lambda branch: [])
    with pytest.raises(GraphBuildingError, match="needs at least one path"):
        PathBuilder[None, None, int]([]).broadcast([])
    with pytest.raises(NotImplementedError, match="Map is not currently supported with multiple source nodes"):
        g.edge_from(a, b).map()


def test_a_graph_without_edges_to_the_end_gives_pydantic_graphs_message_with_the_cause() -> None:
    g = GraphBuilder()

    @g.step
    async def a(ctx: StepContext[None, None, None]) -> None:
        return None

    g.add(g.edge_from(g.start_node).to(a))
    with pytest.raises(GraphValidationError, match=r"^The graph has no edges to the end node\.") as raised:
        g.build()
    assert "The following nodes have no outgoing edges: ['a']." in str(raised.value)
    decided = GraphBuilder()
    decided.add(decided.edge_from(decided.start_node).to(a), decided.edge_from(a).to(decided.decision()))
    with pytest.raises(GraphValidationError, match=r"^The graph has no edges to the end node\.") as raised:
        decided.build()
    assert "Decision node `decision` has no branches" in str(raised.value)


def test_two_nodes_with_one_id_across_kinds_are_refused() -> None:
    g = GraphBuilder(output_type=list[int])

    @g.step
    async def source(ctx: StepContext[None, None, None]) -> list[int]:
        return [1]

    clash = g.join(reduce_list_append, initial_factory=list[int], node_id="map")
    with pytest.raises(GraphBuildingError, match=r"All nodes must have unique node IDs\. 'map' was the ID for"):
        g.add(
            g.edge_from(g.start_node).to(source),
            g.edge_from(source).map(fork_id="map").to(clash),
            g.edge_from(clash).to(g.end_node),
        )


# -- joins -----------------------------------------------------------------------------------


async def test_a_join_feeding_a_join_of_the_same_fork_passes_on_every_branch() -> None:
    g = GraphBuilder(output_type=list[int])

    @g.step
    async def source(ctx: StepContext[None, None, None]) -> int:
        return 10

    @g.step
    async def one(ctx: StepContext[None, None, int]) -> list[int]:
        return [ctx.inputs + 1]

    @g.step
    async def two(ctx: StepContext[None, None, int]) -> list[int]:
        return [ctx.inputs + 2]

    @g.step
    async def three(ctx: StepContext[None, None, int]) -> list[int]:
        return [ctx.inputs + 3]

    outer = g.join(reduce_list_extend, initial_factory=list[int], parent_fork_id="fan", node_id="outer")
    inner = g.join(reduce_list_extend, initial_factory=list[int], node_id="inner")
    g.add(
        g.edge_from(g.start_node).to(source),
        g.edge_from(source).to(one, two, three, fork_id="fan"),
        g.edge_from(one, two).to(inner),
        g.edge_from(inner).to(outer),
        g.edge_from(three).to(outer),
        g.edge_from(outer).to(g.end_node),
    )
    graph = g.build()
    assert graph.intermediate_join_nodes["outer"] == {"inner"}
    assert not graph.is_final_join("inner") and graph.is_final_join("outer")
    assert sorted(await graph.run()) == [11, 12, 13]


async def test_independent_joins_each_close_with_their_own_values() -> None:
    @dataclass
    class Results:
        seen: dict[str, list[int]] = field(default_factory=dict[str, list[int]])

    g = GraphBuilder(state_type=Results, output_type=dict[str, list[int]])

    @g.step
    async def left(ctx: StepContext[Results, None, None]) -> list[int]:
        return [1, 2, 3]

    @g.step
    async def right(ctx: StepContext[Results, None, None]) -> list[int]:
        return [10, 20]

    @g.step
    async def double(ctx: StepContext[Results, None, int]) -> int:
        return ctx.inputs * 2

    @g.step
    async def triple(ctx: StepContext[Results, None, int]) -> int:
        return ctx.inputs * 3

    join_a = g.join(reduce_list_append, initial_factory=list[int], node_id="join_a")
    join_b = g.join(reduce_list_append, initial_factory=list[int], node_id="join_b")

    @g.step
    async def store_a(ctx: StepContext[Results, None, list[int]]) -> None:
        ctx.state.seen["a"] = ctx.inputs

    @g.step
    async def store_b(ctx: StepContext[Results, None, list[int]]) -> None:
        ctx.state.seen["b"] = ctx.inputs

    @g.step
    async def combine(ctx: StepContext[Results, None, None]) -> dict[str, list[int]]:
        return ctx.state.seen

    g.add(
        g.edge_from(g.start_node).to(left, right),
        g.edge_from(left).map().to(double),
        g.edge_from(right).map().to(triple),
        g.edge_from(double).to(join_a),
        g.edge_from(triple).to(join_b),
        g.edge_from(join_a).to(store_a),
        g.edge_from(join_b).to(store_b),
        g.edge_from(store_a, store_b).to(combine),
        g.edge_from(combine).to(g.end_node),
    )
    result = await g.build().run(state=Results())
    assert sorted(result["a"]) == [2, 4, 6]
    assert sorted(result["b"]) == [30, 60]


async def test_a_join_waits_for_an_open_join_on_its_way_in_the_same_fork_run() -> None:
    # both joins wait for the start's branches (their farthest fork): the outer must not close
    # while the inner one still holds values for it
    g = GraphBuilder(input_type=int, output_type=int)

    def add(name: str, delta: int) -> Any:
        async def step(ctx: StepContext[None, None, int]) -> int:
            return ctx.inputs + delta

        return g.step(node_id=name)(step)

    fan, inner_fan = add("fan", 0), add("inner_fan", 0)
    a, b, c, d, e = add("a", 1), add("b", 2), add("c", 10), add("d", 20), add("e", 30)
    inner = g.join(reduce_sum, initial=0, node_id="inner")
    outer = g.join(reduce_sum, initial=0, node_id="outer")
    g.add(
        g.edge_from(g.start_node).to(fan),
        g.edge_from(fan).to(a, b, inner_fan),
        g.edge_from(inner_fan).to(c, d, e),
        g.edge_from(c, d, e).to(inner),
        g.edge_from(a, b, inner).to(outer),
        g.edge_from(outer).to(g.end_node),
    )
    graph = g.build()
    assert graph.get_parent_fork("inner").fork_id == graph.get_parent_fork("outer").fork_id == "__start__"
    assert await graph.run(inputs=1) == (1 + 1) + (1 + 2) + (11 + 21 + 31)


# -- iteration -------------------------------------------------------------------------------


def _map_graph() -> Any:
    g = GraphBuilder(input_type=list[int], output_type=list[int])
    ran: list[int] = []

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        ran.append(ctx.inputs)
        return ctx.inputs * 10

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(collect), g.edge_from(collect).to(g.end_node))
    return g.build(), ran


async def test_filtering_a_batch_of_map_items_runs_only_the_kept_ones_once() -> None:
    graph, ran = _map_graph()
    async with graph.iter(inputs=[1, 2, 3]) as run:
        async for batch in run:
            if isinstance(batch, EndMarker):
                break
            if batch and batch[0].node_id == "work":
                run.override_next([task for task in batch if task.inputs != 2])
    assert sorted(ran) == [1, 3]
    assert sorted(run.output or []) == [10, 30]


async def test_replacing_a_batch_runs_exactly_the_requests_once() -> None:
    graph, ran = _map_graph()
    async with graph.iter(inputs=[1, 2]) as run:
        batch = await run.next()
        while isinstance(batch, list) and not (batch and batch[0].node_id == "work"):
            batch = await run.next()
        assert isinstance(batch, list)
        stack = batch[0].fork_stack
        event = await run.next([GraphTaskRequest("work", 7, stack), GraphTaskRequest("work", 8, batch[1].fork_stack)])
        while not isinstance(event, EndMarker):
            event = await run.next()
    assert sorted(ran) == [7, 8]
    assert sorted(event.value) == [70, 80]


async def test_ending_in_place_of_a_batch_runs_none_of_it() -> None:
    graph, ran = _map_graph()
    async with graph.iter(inputs=[1, 2]) as run:
        async for batch in run:
            if isinstance(batch, list) and batch and batch[0].node_id == "work":
                run.override_next(EndMarker([0]))
    assert ran == []
    assert run.output == [0]


async def test_an_error_re_raises_until_the_caller_recovers_with_override_next() -> None:
    g = GraphBuilder(input_type=int, output_type=int)

    @g.step
    async def fragile(ctx: StepContext[None, None, int]) -> int:
        if ctx.inputs < 0:
            raise ValueError("negative")
        return ctx.inputs

    g.add(g.edge_from(g.start_node).to(fragile), g.edge_from(fragile).to(g.end_node))
    graph = g.build()
    async with graph.iter(inputs=-1) as run:
        first = await anext(run)  # the start's batch: `fragile` is about to start
        assert isinstance(first, list) and first[0].node_id == "fragile"
        with pytest.raises(ValueError, match="negative"):
            await run.next()
        with pytest.raises(ValueError, match="negative"):  # not recovered: the same error again
            await run.next()
        run.override_next([GraphTaskRequest("fragile", 5, first[0].fork_stack)])
        event = await run.next()
        while not isinstance(event, EndMarker):
            event = await run.next()
    assert run.output == 5


# -- node-API classes in a builder graph -----------------------------------------------------


@dataclass
class Log:
    lines: list[str] = field(default_factory=list[str])


async def test_nodes_lead_to_steps_and_joins_and_steps_to_nodes_by_their_annotations() -> None:
    g = GraphBuilder(state_type=Log, input_type=int, output_type=list[str])
    collect = g.join(reduce_list_append, initial_factory=list[str])

    @g.step
    async def shout(ctx: StepContext[Log, None, str]) -> str:
        return ctx.inputs.upper()

    @dataclass
    class Second(BaseNode[Log, None, Any]):
        text: str

        async def run(self, ctx: GraphRunContext[Log, None]) -> Annotated[JoinNode[Log, None], collect]:
            ctx.state.lines.append(f"second {self.text}")
            return collect.as_node(self.text)

    @dataclass
    class First(BaseNode[Log, None, Any]):
        value: int

        async def run(self, ctx: GraphRunContext[Log, None]) -> Annotated[StepNode[Log, None], shout]:
            ctx.state.lines.append(f"first {self.value}")
            return shout.as_node(f"n{self.value}")

    @g.step
    async def make(ctx: StepContext[Log, None, int]) -> list[int]:
        return [ctx.inputs, ctx.inputs + 1]

    @g.step
    async def wrap(ctx: StepContext[Log, None, int]) -> First:  # its edge comes from the annotation
        return First(ctx.inputs)

    @g.step
    async def to_second(ctx: StepContext[Log, None, str]) -> Second:
        return Second(ctx.inputs)

    g.add(
        g.node(First),
        g.node(Second),
        g.edge_from(g.start_node).to(make),
        g.edge_from(make).map().to(wrap),
        g.edge_from(shout).to(to_second),
        g.edge_from(collect).to(g.end_node),
    )
    graph = g.build()
    log = Log()
    assert sorted(await graph.run(state=log, inputs=1)) == ["N1", "N2"]
    assert sorted(log.lines) == ["first 1", "first 2", "second N1", "second N2"]
    assert "wrap --> First" in graph.render()


async def test_a_node_whose_run_names_several_nodes_draws_a_decision_and_runs_by_what_it_returns() -> None:
    @dataclass
    class Router(BaseNode[None, None, str]):
        value: int

        async def run(self, ctx: GraphRunContext[None, None]) -> Low | End[str]:
            return Low() if self.value < 10 else End("high")

    @dataclass
    class Low(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext[None, None]) -> End[str]:
            return End("low")

    g = GraphBuilder(input_type=int, output_type=str)

    @g.step
    async def route(ctx: StepContext[None, None, int]) -> Router:
        return Router(ctx.inputs)

    g.add(g.node(Router), g.node(Low), g.edge_from(g.start_node).to(route))
    graph = g.build()
    assert await graph.run(inputs=3) == "low"
    assert await graph.run(inputs=30) == "high"
    assert "Router --> decision" in graph.render()


# -- names users import ----------------------------------------------------------------------


def test_paths_diagrams_ids_and_helpers_have_pydantic_graphs_shapes() -> None:
    label, map_marker = LabelMarker("x"), MapMarker("m", None)
    path = Path([map_marker, label, DestinationMarker("d")])
    assert path.last_fork is map_marker
    assert path.next_path.items == [label, DestinationMarker("d")]
    builder = PathBuilder[None, None, int]([]).label("l").transform(lambda ctx: ctx.inputs)
    assert len(builder.working_items) == 2 and builder.last_fork is None
    assert replace_placeholder_id(generate_placeholder_node_id("fork")) == "fork"
    assert Some(None).value is None
    named = object()
    assert infer_name(named, depth=1) == "named"

    g = GraphBuilder(output_type=int)

    @g.step(label="The step")
    async def step(ctx: StepContext[None, None, None]) -> int:
        return 1

    g.add(g.edge_from(g.start_node).label("go").to(step), g.edge_from(step).to(g.end_node))
    graph = g.build()
    diagram = build_mermaid_graph(graph)
    assert [node.kind for node in diagram.nodes] == ["start", "step", "end"]
    assert "go" in diagram.render() and "go" not in diagram.render(edge_labels=False)
    assert diagram.render() == graph.render()
    assert (
        build_mermaid_graph(graph.nodes, graph.edges_by_source)
        .render(direction="LR")
        .startswith("stateDiagram-v2\n  direction LR")
    )
    assert is_source(step) and is_destination(step) and is_destination(g.end_node) and not is_source(g.end_node)


async def test_a_first_next_runs_the_start_s_batch_and_the_one_after_it() -> None:
    g = GraphBuilder(input_type=int, output_type=int)

    @g.step
    async def add_one(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs + 1

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    g.add(g.edge_from(g.start_node).to(add_one), g.edge_from(add_one).to(double), g.edge_from(double).to(g.end_node))
    graph = g.build()
    async with graph.iter(inputs=1) as run:
        batch = await run.next()  # as pydantic-graph: the start ran, then `add_one`
        assert [(task.node_id, task.inputs) for task in batch] == [("double", 2)]
        assert [task.node_id for task in await run.next()] == ["__end__"]
        assert await run.next() == EndMarker(4)
    async with graph.iter(inputs=1) as run:
        # a value given to the first `next` takes the place of what follows the start
        batch = await run.next([GraphTaskRequest("add_one", 10, ())])
        assert [(task.node_id, task.inputs) for task in batch] == [("double", 11)]
    async with graph.iter(inputs=1) as run:
        assert [[task.node_id for task in event] if isinstance(event, list) else event async for event in run] == [
            ["add_one"],
            ["double"],
            ["__end__"],
            EndMarker(4),
        ]
