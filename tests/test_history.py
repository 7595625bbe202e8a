"""The seeds' API: `railyard.v0`, `run.history`, `Graph.next`, `dump_history` / `load_history`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from railyard import FullStatePersistence, GraphRuntimeError, v0
from railyard.state import EndStep, HistoryStep, NodeStep
from tests.graphs import Check42, CountDown, CountDownState, Increment, MyState, count_down_graph, never_42_graph

pytestmark = pytest.mark.anyio


@dataclass
class V0State:
    counter: int


@dataclass
class V0CountDown(v0.BaseNode[V0State]):
    async def run(self, ctx: v0.GraphRunContext[V0State]) -> V0CountDown | v0.End[int]:
        if ctx.state.counter <= 0:
            return v0.End(ctx.state.counter)
        ctx.state.counter -= 1
        return V0CountDown()


v0_graph = v0.Graph(nodes=[V0CountDown])


async def test_v0_iteration_yields_what_each_step_returns() -> None:
    async with v0_graph.iter(V0CountDown(), state=V0State(3)) as run:
        nodes = [node async for node in run]
    assert nodes == [V0CountDown(), V0CountDown(), V0CountDown(), v0.End(0)]
    assert [step.data_snapshot() for step in run.history] == [V0CountDown()] * 4 + [v0.End(0)]


async def test_v0_history_holds_the_state_after_each_step() -> None:
    state = V0State(counter=5)
    async with v0_graph.iter(V0CountDown(), state=state) as run:
        node = run.next_node
        while not isinstance(node, v0.End):
            if state.counter == 2:
                break
            node = await run.next(node)
        assert run.result is None
        assert [(type(s).__name__, getattr(s, "state", None)) for s in run.history] == [
            ("NodeStep", V0State(4)),
            ("NodeStep", V0State(3)),
            ("NodeStep", V0State(2)),
        ]
        assert repr(run) == "<GraphRun name=v0_graph step=4>"


async def test_v0_result_has_the_history() -> None:
    result = await v0_graph.run(V0CountDown(), state=V0State(1))
    assert result.output == 0
    assert [type(step).__name__ for step in result.history] == ["NodeStep", "NodeStep", "EndStep"]
    assert repr(result) == "GraphRunResult(output=0, state=V0State(counter=0))"


async def test_v0_next_errors() -> None:
    async with v0_graph.iter(V0CountDown(), state=V0State(0)) as run:
        await run.next()
        with pytest.raises(GraphRuntimeError, match=r"^This graph run has already ended\.$"):
            await run.next()
        with pytest.raises(GraphRuntimeError, match=r"^Cannot call `next` with an `End` node: End\(data=1\)\.$"):
            await run.next(v0.End(1))  # type: ignore[arg-type]


def test_v0_context_takes_positional_arguments_and_get_id_names_nodes() -> None:
    ctx = v0.GraphRunContext(V0State(1), None)
    assert ctx.state == V0State(1)

    @dataclass
    class Renamed(v0.BaseNode[None, None, int]):
        @classmethod
        def get_id(cls) -> str:
            return "custom"

        async def run(self, ctx: v0.GraphRunContext[None]) -> v0.End[int]:
            return v0.End(1)

    assert list(v0.Graph(nodes=[Renamed]).node_defs) == ["custom"]


async def test_graph_next_appends_to_the_given_history() -> None:
    history: list[HistoryStep[MyState, int]] = []
    state = MyState(1)
    node = await never_42_graph.next(Increment(), history, state=state)
    assert node == Check42()
    assert len(history) == 1 and isinstance(history[0], NodeStep)
    assert history[0].state == MyState(2, ["inc 2"]) and history[0].state is not state
    end = await never_42_graph.next(node, history, state=state)  # type: ignore[arg-type]
    assert end == v0.End(2)
    assert [type(step) for step in history] == [NodeStep, NodeStep, EndStep]


async def test_graph_next_with_an_end_is_an_error() -> None:
    with pytest.raises(GraphRuntimeError, match=r"Cannot call `next` with an `End` node: End\(data=1\)\."):
        await never_42_graph.next(v0.End(1), [])  # type: ignore[arg-type]


async def test_iter_with_a_history_list_records_into_it() -> None:
    history: list[HistoryStep[CountDownState, int]] = []
    async with count_down_graph.iter(CountDown(), state=CountDownState(1), history=history) as run:
        async for _ in run:
            pass
    assert run.history is history
    assert [type(step).__name__ for step in history] == ["NodeStep", "NodeStep", "EndStep"]


async def test_default_run_keeps_no_history_but_full_persistence_gives_one() -> None:
    async with count_down_graph.iter(CountDown(), state=CountDownState(1)) as run:
        async for _ in run:
            pass
    assert run.history == []

    async with count_down_graph.iter(CountDown(), state=CountDownState(1), persistence=FullStatePersistence()) as run:
        async for _ in run:
            pass
    assert [step.data_snapshot() for step in run.history] == [CountDown(), CountDown(), v0.End(0)]


async def test_dump_and_load_history_round_trip() -> None:
    result = await v0_graph.run(V0CountDown(), state=V0State(1))
    dumped = v0_graph.dump_history(result.history)
    data = json.loads(dumped)
    assert [item["kind"] for item in data] == ["node", "node", "end"]
    assert data[0]["state"] == {"counter": 0} and data[0]["node"] == {"node_id": "V0CountDown"}
    assert set(data[0]) == {"state", "node", "start_ts", "duration", "kind"}
    assert data[-1]["result"] == {"data": 0}
    loaded = v0_graph.load_history(dumped)
    assert loaded == result.history
    assert json.loads(v0_graph.dump_history(result.history, indent=2)) == data


def test_load_history_rejects_bad_json() -> None:
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="Invalid JSON"):
        v0_graph.load_history(b"not json")
    with pytest.raises(pydantic.ValidationError, match="node id 'Nope' is not a node of this graph"):
        v0_graph.load_history(b'[{"kind":"node","node":{"node_id":"Nope"},"state":{"counter":1}}]')
    assert v0_graph.load_history(b"[]") == []


async def test_v0_nodes_get_the_v0_context() -> None:
    seen: list[object] = []

    @dataclass
    class Look(v0.BaseNode[V0State, None, int]):
        async def run(self, ctx: v0.GraphRunContext[V0State]) -> v0.End[int]:
            seen.append(ctx)
            return v0.End(ctx.state.counter)

    await v0.Graph(nodes=[Look]).run(Look(), state=V0State(3))
    assert isinstance(seen[0], v0.GraphRunContext)
