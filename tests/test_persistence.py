"""pydantic-graph's persistence classes: snapshots, statuses, JSON, pause and resume."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from railyard import (
    BaseNode,
    End,
    EndSnapshot,
    FileStatePersistence,
    FullStatePersistence,
    Graph,
    GraphNodeStatusError,
    GraphRunContext,
    GraphRuntimeError,
    NodeSnapshot,
    SimpleStatePersistence,
    Snapshot,
)
from railyard.persistence import BaseStatePersistence
from tests.graphs import (
    Check42,
    CountDown,
    CountDownState,
    Increment,
    MyState,
    count_down_graph,
    never_42_graph,
)

pytestmark = pytest.mark.anyio


def _statuses(snapshots: list[Snapshot[Any, Any]]) -> list[tuple[str, str]]:
    return [(s.node.__class__.__name__, s.status if isinstance(s, NodeSnapshot) else "end") for s in snapshots]


async def test_full_persistence_records_every_snapshot_with_the_state_before_the_node() -> None:
    persistence = FullStatePersistence()
    result = await count_down_graph.run(CountDown(), state=CountDownState(2), persistence=persistence)
    assert result.persistence is persistence
    history = persistence.history
    assert [s.state for s in history] == [CountDownState(2), CountDownState(1), CountDownState(0), CountDownState(0)]
    assert _statuses(history) == [
        ("CountDown", "success"),
        ("CountDown", "success"),
        ("CountDown", "success"),
        ("End", "end"),
    ]
    assert all(s.start_ts is not None and s.duration is not None for s in history if isinstance(s, NodeSnapshot))
    assert isinstance(history[-1], EndSnapshot) and history[-1].result == End(0)


async def test_snapshot_ids_have_the_node_id_and_32_hex_digits_and_are_unique() -> None:
    persistence = FullStatePersistence()
    await count_down_graph.run(CountDown(), state=CountDownState(3), persistence=persistence)
    ids = [s.id for s in persistence.history]
    assert len(set(ids)) == len(ids)
    for snapshot_id in ids[:-1]:
        prefix, hex_part = snapshot_id.split(":")
        assert prefix == "CountDown" and len(hex_part) == 32 and int(hex_part, 16) >= 0
    assert ids[-1].startswith("end:")


async def test_deep_copy_keeps_each_state_apart_and_no_copy_shares_it() -> None:
    copied = FullStatePersistence(deep_copy=True)
    await count_down_graph.run(CountDown(), state=CountDownState(2), persistence=copied)
    assert len({id(s.state) for s in copied.history[:-1]}) == 3

    shared = FullStatePersistence(deep_copy=False)
    state = CountDownState(2)
    await count_down_graph.run(CountDown(), state=state, persistence=shared)
    assert all(s.state is state for s in shared.history)


async def test_deep_copy_copies_mutable_state() -> None:
    persistence = FullStatePersistence()
    await never_42_graph.run(Increment(), state=MyState(41), persistence=persistence)
    logs = [s.state.log for s in persistence.history]
    assert logs == [[], ["inc 42"], ["inc 42"], ["inc 42", "inc 43"], ["inc 42", "inc 43"]]


async def test_statuses_while_a_node_runs() -> None:
    persistence = FullStatePersistence()
    seen: list[list[tuple[str, str]]] = []

    class Watch(BaseNode[CountDownState, None, int]):
        async def run(self, ctx: GraphRunContext[CountDownState]) -> Watch | End[int]:
            seen.append(_statuses(persistence.history))
            return End(ctx.state.counter)

    graph = Graph(nodes=[Watch])
    async with graph.iter(Watch(), state=CountDownState(0), persistence=persistence) as run:
        assert _statuses(persistence.history) == [("Watch", "created")]
        await run.next()
    assert seen == [[("Watch", "running")]]


async def test_error_status_when_a_node_raises() -> None:
    from tests.failing import Boom, boom_graph

    persistence = FullStatePersistence()
    with pytest.raises(ValueError, match="boom!"):
        await boom_graph.run(Boom(), persistence=persistence)
    assert _statuses(persistence.history) == [("Boom", "error")]
    assert await persistence.load_next() is None


async def test_simple_persistence_keeps_only_the_latest_snapshot() -> None:
    persistence = SimpleStatePersistence()
    assert repr(persistence) == "SimpleStatePersistence(last_snapshot=None)"
    async with count_down_graph.iter(CountDown(), state=CountDownState(1), persistence=persistence) as run:
        await run.next()
        last = persistence.last_snapshot
        assert isinstance(last, NodeSnapshot) and last.status == "created" and last.state == CountDownState(0)
        await run.next()
    last = persistence.last_snapshot
    assert isinstance(last, EndSnapshot) and last.result == End(0)
    assert repr(persistence).startswith(
        "SimpleStatePersistence(last_snapshot=EndSnapshot(state=CountDownState(counter=0)"
    )
    assert await persistence.load_all() == [last]


async def test_rerunning_a_finished_node_is_a_status_error() -> None:
    async with count_down_graph.iter(CountDown(), state=CountDownState(3), persistence=FullStatePersistence()) as run:
        first = run.next_node
        await run.next()
        with pytest.raises(
            GraphNodeStatusError, match=r"Incorrect snapshot status 'success', must be 'created' or 'pending'\."
        ):
            await run.next(first)  # type: ignore[arg-type]


async def test_record_run_for_an_unknown_snapshot() -> None:
    persistence = FullStatePersistence()
    with pytest.raises(LookupError, match=r"No snapshot found with id='nope'"):
        async with persistence.record_run("nope"):
            pass


async def test_initialize_then_resume_from_persistence() -> None:
    persistence = FullStatePersistence()
    await never_42_graph.initialize(Increment(), persistence, state=MyState(1))
    assert _statuses(persistence.history) == [("Increment", "created")]
    async with never_42_graph.iter_from_persistence(persistence) as run:
        assert run.next_node == Increment()
        assert run.state == MyState(1)
        nodes = [node async for node in run]
    assert nodes == [Increment(), Check42(), End(2)]
    assert run.result is not None and run.result.output == 2
    assert _statuses(persistence.history) == [("Increment", "success"), ("Check42", "success"), ("End", "end")]


async def test_resume_with_nothing_to_run_is_a_clear_error() -> None:
    with pytest.raises(GraphRuntimeError, match=r"Unable to restore snapshot from state persistence\."):
        async with never_42_graph.iter_from_persistence(FullStatePersistence()):
            pass
    persistence = FullStatePersistence()
    await never_42_graph.run(Increment(), state=MyState(1), persistence=persistence)
    with pytest.raises(GraphRuntimeError, match="Unable to restore"):
        async with never_42_graph.iter_from_persistence(persistence):
            pass


async def test_load_next_marks_pending_once() -> None:
    persistence = FullStatePersistence()
    await never_42_graph.initialize(Increment(), persistence, state=MyState(1))
    snapshot = await persistence.load_next()
    assert snapshot is not None and snapshot.status == "pending"
    assert await persistence.load_next() is None


async def test_full_persistence_json_round_trip() -> None:
    persistence = FullStatePersistence()
    await never_42_graph.run(Increment(), state=MyState(41), persistence=persistence)
    dumped = persistence.dump_json()
    data = json.loads(dumped)
    assert [item["kind"] for item in data] == ["node", "node", "node", "node", "end"]
    assert data[0]["node"] == {"node_id": "Increment"}
    assert data[0]["state"] == {"number": 41, "log": []}
    assert data[-1]["result"] == {"data": 43}

    restored = FullStatePersistence()
    restored.set_graph_types(never_42_graph)
    restored.load_json(dumped)
    assert restored.history == persistence.history
    assert json.loads(persistence.dump_json(indent=2)) == data


async def test_json_of_a_node_with_fields_puts_the_node_id_last() -> None:
    from tests.graphs import Deps, Greet, greet_graph

    persistence = FullStatePersistence()
    await greet_graph.run(Greet("Ada"), deps=Deps("Hi"), persistence=persistence)
    assert json.loads(persistence.dump_json())[0]["node"] == {"name": "Ada", "node_id": "Greet"}
    assert list(json.loads(persistence.dump_json())[0]["node"]) == ["name", "node_id"]


async def test_load_json_with_an_unknown_node_is_a_validation_error() -> None:
    import pydantic

    restored = FullStatePersistence()
    restored.set_graph_types(never_42_graph)
    with pytest.raises(pydantic.ValidationError, match=r"node id 'Nope' is not a node of this graph"):
        restored.load_json('[{"kind": "node", "node": {"node_id": "Nope"}, "state": {"number": 1}}]')


async def test_load_json_fills_defaults_and_keeps_ids() -> None:
    restored = FullStatePersistence()
    restored.set_graph_types(never_42_graph)
    restored.load_json('[{"kind":"node","node":{"node_id":"Increment"},"state":{"number":1},"id":"Increment:x"}]')
    (snapshot,) = restored.history
    assert isinstance(snapshot, NodeSnapshot)
    assert (snapshot.node, snapshot.status, snapshot.id, snapshot.start_ts) == (
        Increment(),
        "created",
        "Increment:x",
        None,
    )
    async with never_42_graph.iter_from_persistence(restored) as run:
        assert run.next_node.get_snapshot_id() == "Increment:x"  # type: ignore[union-attr]
        result = await run.next()
    assert result == Check42()


async def test_file_persistence_pause_and_resume_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    persistence = FileStatePersistence(path)
    assert repr(persistence) == f"FileStatePersistence(json_file={path!r})"
    await never_42_graph.initialize(Increment(), persistence, state=MyState(41))
    async with never_42_graph.iter_from_persistence(persistence) as run:
        assert await run.next() == Check42()  # stop after one step, as if the process exited

    # a new process: a fresh persistence object over the same file
    resumed = FileStatePersistence(path)
    async with never_42_graph.iter_from_persistence(resumed) as run:
        assert run.next_node == Check42()
        assert run.state == MyState(42, ["inc 42"])
        nodes = [node async for node in run]
    assert nodes[-1] == End(43)

    reader = FileStatePersistence(path)
    reader.set_graph_types(never_42_graph)
    assert _statuses(await reader.load_all()) == [
        ("Increment", "success"),
        ("Check42", "success"),
        ("Increment", "success"),
        ("Check42", "success"),
        ("End", "end"),
    ]
    lines = path.read_text().splitlines()
    assert all(json.loads(line)["kind"] for line in lines)  # an append-only JSON Lines run log


async def test_file_persistence_reads_pydantic_graph_files(tmp_path: Path) -> None:
    # pydantic-graph 1.x writes a JSON list of snapshots; such a file resumes, and is
    # rewritten as a run log (the original kept beside it).
    legacy = FullStatePersistence()
    await never_42_graph.initialize(Increment(), legacy, state=MyState(41))
    path = tmp_path / "old.json"
    path.write_bytes(legacy.dump_json(indent=2))
    result = await never_42_graph.resume(FileStatePersistence(path))
    assert result.output == 43
    assert (tmp_path / "old.json.pydantic-graph").read_bytes() == legacy.dump_json(indent=2)
    assert json.loads(path.read_text().splitlines()[0])["kind"] == "tasks_scheduled"


async def test_file_persistence_with_a_damaged_line_is_a_clear_error(tmp_path: Path) -> None:
    from railyard.exceptions import CorruptRunError

    path = tmp_path / "run.json"
    await never_42_graph.run(Increment(), state=MyState(1), persistence=FileStatePersistence(path))
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    persistence = FileStatePersistence(path)
    persistence.set_graph_types(never_42_graph)
    with pytest.raises(
        CorruptRunError, match=r"Run 'run' in .*run\.json line 3: record 3 cannot be read: not a run record"
    ):
        await persistence.load_all()
    assert path.read_bytes() == before


class RecordingPersistence(BaseStatePersistence[Any, Any]):
    """A user's own persistence: keeps calls and snapshots in lists."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.snapshots: list[Snapshot[Any, Any]] = []

    async def snapshot_node(self, state: Any, next_node: BaseNode[Any, Any, Any]) -> None:
        self.calls.append(f"snapshot_node {next_node.get_node_id()}")
        self.snapshots.append(NodeSnapshot(state=state, node=next_node))

    async def snapshot_node_if_new(self, snapshot_id: str, state: Any, next_node: BaseNode[Any, Any, Any]) -> None:
        self.calls.append(f"snapshot_node_if_new {next_node.get_node_id()}")
        if all(s.id != snapshot_id for s in self.snapshots):
            await self.snapshot_node(state, next_node)

    async def snapshot_end(self, state: Any, end: End[Any]) -> None:
        self.calls.append(f"snapshot_end {end.data}")
        self.snapshots.append(EndSnapshot(state=state, result=end))

    @asynccontextmanager
    async def record_run(self, snapshot_id: str) -> AsyncIterator[None]:
        self.calls.append(f"record_run {snapshot_id.split(':', maxsplit=1)[0]}")
        yield
        self.calls.append("record_run done")

    async def load_next(self) -> NodeSnapshot[Any, Any] | None:
        return next((s for s in self.snapshots if isinstance(s, NodeSnapshot) and s.status == "created"), None)

    async def load_all(self) -> list[Snapshot[Any, Any]]:
        return list(self.snapshots)


async def test_a_user_subclass_of_base_state_persistence_is_driven_through_its_methods() -> None:
    persistence = RecordingPersistence()
    result = await never_42_graph.run(Increment(), state=MyState(1), persistence=persistence)
    assert result.output == 2
    assert persistence.calls == [
        "snapshot_node_if_new Increment",
        "snapshot_node Increment",
        "record_run Increment",
        "record_run done",
        "snapshot_node Check42",
        "record_run Check42",
        "record_run done",
        "snapshot_end 2",
    ]
