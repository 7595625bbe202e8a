"""The one replay: node and builder runs resume from their records through `railyard._replay`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from railyard import Graph, GraphMismatchError, SqliteStore
from railyard._replay import replay
from railyard.durable import read_run
from railyard.store.codec import RecordCodec
from railyard.store.records import RunCreated
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
