"""The one replay: node and builder runs resume from their records through `railyard._replay`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from railyard import Graph, GraphMismatchError, SqliteStore
from railyard._replay import replay
from railyard.durable import read_run
from railyard.store.codec import RecordCodec
from railyard.store.records import RunCreated, TasksScheduled
from railyard.testing._sample import CountTo, CrashState, FailPlan, count_graph, map_graph

pytestmark = pytest.mark.anyio


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _codec() -> RecordCodec:
    return RecordCodec(count_graph.get_nodes(), CrashState, int)


async def test_a_node_run_stands_at_its_one_pending_task(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    async with count_graph.iter(CountTo(5), state=CrashState(), store=store, run_id="r") as run:
        await run.next()
        await run.next()
    records = await read_run(store, "r", _codec())
    assert isinstance(records[0], RunCreated) and records[0].graph == "count_graph"
    position = replay(records)
    assert position.state == CrashState(count=2)
    assert [task.node_id for task in position.pending] == ["CountTo"]
    assert position.end is None and position.graph == "count_graph" and position.fingerprint
    await store.aclose()


async def test_a_replaced_node_is_not_the_one_resumed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    async with count_graph.iter(CountTo(5), state=CrashState(), store=store, run_id="r") as run:
        await run.next()
        await run.next(CountTo(2))  # the caller replaces the node the step led to
    result = await count_graph.resume(store, "r")
    assert result.output == 2  # it went on with the replacement's target
    await store.aclose()


async def test_a_run_is_resumed_only_by_the_graph_that_made_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SqliteStore(path)
    async with count_graph.iter(CountTo(3), state=CrashState(), store=store, run_id="node-run") as run:
        await run.next()
    with pytest.raises(RuntimeError, match="asked to fail at item 2"):
        await map_graph.run(inputs=6, deps=FailPlan(fail_at=2), store=store, run_id="map-run")
    await store.aclose()
    before = _sha(path)

    impostor = Graph(nodes=(CountTo,), name="another_graph")
    store = SqliteStore(path)
    with pytest.raises(
        GraphMismatchError, match=r"Run 'node-run' .* was created by graph 'count_graph', not by graph 'another_graph'"
    ):
        await impostor.resume(store, "node-run")
    from railyard.testing._sample import _map_graph

    other_map = _map_graph()
    other_map.name = "another_map"
    with pytest.raises(
        GraphMismatchError, match=r"Run 'map-run' .* created by graph 'map_graph', not by graph 'another_map'"
    ):
        await other_map.resume(store, "map-run", deps=FailPlan())
    await store.aclose()
    assert _sha(path) == before  # refused before anything was written
    store = SqliteStore(path)
    assert (await count_graph.resume(store, "node-run")).output == 3  # the right graph goes on
    assert await map_graph.resume(store, "map-run", deps=FailPlan()) == sum(n**3 for n in range(6))
    await store.aclose()


def _double_graph() -> Any:
    from railyard.builder import GraphBuilder, StepContext

    g = GraphBuilder(name="double_graph", input_type=int, output_type=int)

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    g.add(g.edge_from(g.start_node).to(double), g.edge_from(double).to(g.end_node))
    return g.build()


async def test_a_builder_run_resumes_with_the_tasks_a_caller_put_in_place(tmp_path: Path) -> None:
    from railyard.builder import GraphTaskRequest

    graph = _double_graph()
    store = SqliteStore(tmp_path / "runs.db")
    async with graph.iter(inputs=1, store=store, run_id="r") as run:
        batch = await anext(run)  # the start ran: `double` of 1 is about to start
        assert [(task.node_id, task.inputs) for task in batch] == [("double", 1)]
        run.override_next([GraphTaskRequest("double", 21, batch[0].fork_stack)])
    # stopped before the replacement ran: resuming runs it, and never the task it replaced
    assert await graph.resume(store, "r") == 42
    await store.aclose()


async def test_a_node_replaced_by_the_caller_is_not_pending(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    async with count_graph.iter(CountTo(5), state=CrashState(), store=store, run_id="r") as run:
        replaced = await run.next()  # CountTo(5), about to run
        await run.next(CountTo(2))  # the caller runs another node in its place
    records = await read_run(store, "r", _codec())
    scheduled = [r for r in records if isinstance(r, TasksScheduled) and r.replaces]
    assert [r.replaces for r in scheduled] == [(replaced.get_snapshot_id(),)]
    position = replay(records)
    assert [task.inputs for task in position.pending] == [CountTo(2)]  # not the replaced CountTo(5)
    assert (await count_graph.resume(store, "r")).output == 2
    await store.aclose()
