"""Running graphs: `run`, `run_sync`, `iter`, `next`, names, types and limits."""

from __future__ import annotations

import asyncio

import pytest

from railyard import End, Graph, GraphRunResult, SimpleStatePersistence
from railyard.exceptions import GraphRuntimeError, GraphStepLimitError
from tests.graphs import (
    Check42,
    CountDown,
    CountDownState,
    Deps,
    Greet,
    Increment,
    MyState,
    count_down_graph,
    greet_graph,
    never_42_graph,
)

pytestmark = pytest.mark.anyio


async def test_run_returns_output_and_final_state() -> None:
    result = await never_42_graph.run(Increment(), state=MyState(1))
    assert result.output == 2
    assert result.state == MyState(2, ["inc 2"])
    assert repr(result) == "GraphRunResult(output=2, state=MyState(number=2, log=['inc 2']))"


async def test_run_loops_through_the_graph_until_end() -> None:
    result = await never_42_graph.run(Increment(), state=MyState(41))
    assert result.output == 43
    assert result.state.log == ["inc 42", "inc 43"]


async def test_deps_reach_the_nodes() -> None:
    result = await greet_graph.run(Greet("Ada"), deps=Deps(greeting="Hello"))
    assert result.output == "Hello, Ada!"
    assert result.state is None


def test_run_sync_outside_a_loop() -> None:
    result = count_down_graph.run_sync(CountDown(), state=CountDownState(3))
    assert (result.output, result.state) == (0, CountDownState(0))


async def test_run_sync_inside_a_running_loop_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"cannot be called from a running event loop.*await graph\.run"):
        count_down_graph.run_sync(CountDown(), state=CountDownState(3))


async def test_iter_yields_start_node_then_each_next_node_then_end() -> None:
    state = CountDownState(counter=3)
    seen: list[object] = []
    async with count_down_graph.iter(CountDown(), state=state) as run:
        assert run.result is None
        async for node in run:
            seen.append(node)
    assert seen == [CountDown(), CountDown(), CountDown(), CountDown(), End(0)]
    assert run.result is not None
    assert run.result.output == 0
    assert run.next_node == End(0)
    assert run.state is state


async def test_iterating_an_ended_run_again_yields_nothing() -> None:
    async with count_down_graph.iter(CountDown(), state=CountDownState(0)) as run:
        first = [node async for node in run]
        second = [node async for node in run]
    assert first == [CountDown(), End(0)]
    assert second == []


async def test_next_drives_the_run_by_hand() -> None:
    state = CountDownState(counter=5)
    async with count_down_graph.iter(CountDown(), state=state) as run:
        node = run.next_node
        steps = 0
        while not isinstance(node, End):
            if state.counter == 2:
                break
            node = await run.next(node)
            steps += 1
        assert run.result is None
    assert steps == 3
    assert state.counter == 2


async def test_next_with_another_node_runs_that_node_instead() -> None:
    state = MyState(10)
    async with never_42_graph.iter(Increment(), state=state) as run:
        # skip Increment entirely: jump straight to Check42
        result = await run.next(Check42())
    assert result == End(10)
    assert state.number == 10
    assert run.result is not None and run.result.output == 10


async def test_next_after_end_is_a_type_error() -> None:
    async with count_down_graph.iter(CountDown(), state=CountDownState(0)) as run:
        assert await run.next() == End(0)
        with pytest.raises(TypeError, match=r"`next` must be called with a `BaseNode` instance, got End\(data=0\)"):
            await run.next()
        with pytest.raises(TypeError, match="got End"):
            await run.next(End(1))  # type: ignore[arg-type]


async def test_start_from_an_end_returns_at_once() -> None:
    result = await count_down_graph.run(End(7), state=CountDownState(1))  # type: ignore[arg-type]
    assert result.output == 7


async def test_graph_name_is_inferred_from_the_variable_on_first_run() -> None:
    my_graph = Graph(nodes=[CountDown])
    assert my_graph.name is None
    await my_graph.run(CountDown(), state=CountDownState(1))
    assert my_graph.name == "my_graph"


async def test_name_is_not_inferred_when_asked_not_to() -> None:
    unnamed = Graph(nodes=[CountDown])
    await unnamed.run(CountDown(), state=CountDownState(1), infer_name=False)
    assert unnamed.name is None


async def test_iter_infers_the_name_and_run_repr_shows_it() -> None:
    named_here = Graph(nodes=[CountDown])
    async with named_here.iter(CountDown(), state=CountDownState(1)) as run:
        assert repr(run) == "<GraphRun graph=named_here>"
    anonymous = [Graph(nodes=[CountDown])]
    async with anonymous[0].iter(CountDown(), state=CountDownState(1)) as run:
        assert repr(run) == "<GraphRun graph=[unnamed]>"


def test_explicit_name_wins() -> None:
    graph = Graph(nodes=[CountDown], name="countdown")
    graph.run_sync(CountDown(), state=CountDownState(1))
    assert graph.name == "countdown"


def test_inferred_types() -> None:
    assert count_down_graph.inferred_types == (CountDownState, int)
    assert never_42_graph.inferred_types == (MyState, int)
    assert greet_graph.inferred_types == (type(None), str)


def test_inferred_end_type_falls_back_to_end_annotations() -> None:
    from tests.untyped_end import UntypedState, untyped_graph

    assert untyped_graph.inferred_types == (UntypedState, int)


def test_explicit_types_win_over_inference() -> None:
    graph = Graph(nodes=[CountDown], state_type=object, run_end_type=str)
    assert graph.inferred_types == (object, str)


async def test_max_steps_stops_an_endless_run_with_a_clear_error() -> None:
    with pytest.raises(GraphStepLimitError, match=r"exceeded max_steps=5: about to run `CountDown` as step 6") as info:
        await count_down_graph.run(CountDown(), state=CountDownState(100), max_steps=5)
    assert info.value.max_steps == 5
    assert isinstance(info.value, GraphRuntimeError)


async def test_max_steps_allows_a_run_that_fits() -> None:
    result = await count_down_graph.run(CountDown(), state=CountDownState(4), max_steps=5)
    assert result.output == 0


async def test_a_node_exception_propagates_unchanged() -> None:
    from tests.failing import Boom, boom_graph

    with pytest.raises(ValueError, match="boom!"):
        await boom_graph.run(Boom())


async def test_default_persistence_keeps_the_latest_snapshot() -> None:
    result = await count_down_graph.run(CountDown(), state=CountDownState(2))
    assert isinstance(result.persistence, SimpleStatePersistence)
    snapshot = result.persistence.last_snapshot
    assert snapshot is not None and snapshot.kind == "end"
    assert snapshot.node == End(0)
    assert snapshot.id.startswith("end:")


async def test_result_equality_and_fields() -> None:
    result = await count_down_graph.run(CountDown(), state=CountDownState(1))
    assert isinstance(result, GraphRunResult)
    assert result == GraphRunResult(0, CountDownState(0), result.persistence)


async def test_runs_are_independent_and_concurrent() -> None:
    states = [CountDownState(n) for n in (3, 5, 7)]
    results = await asyncio.gather(*(count_down_graph.run(CountDown(), state=s) for s in states))
    assert [r.output for r in results] == [0, 0, 0]
    assert all(s.counter == 0 for s in states)
