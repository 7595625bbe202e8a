"""The node API as code written for pydantic-graph uses it: module paths, patch points, private spellings, errors."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import railyard.nodes
import railyard.v0.nodes
from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.exceptions import GraphNodeStatusError, GraphRuntimeError, GraphSetupError
from railyard.persistence import NodeSnapshot
from railyard.persistence.file import FileStatePersistence
from railyard.persistence.in_mem import FullStatePersistence, SimpleStatePersistence

pytestmark = pytest.mark.anyio


@dataclass
class Counter:
    value: int = 0


@dataclass
class Start(BaseNode[Counter]):
    async def run(self, ctx: GraphRunContext[Counter]) -> Finish:
        ctx.state.value += 1
        return Finish()


@dataclass
class Finish(BaseNode[Counter, None, int]):
    async def run(self, ctx: GraphRunContext[Counter]) -> End[int]:
        return End(ctx.state.value)


counter_graph = Graph(nodes=[Start, Finish])


@pytest.fixture
def numbered_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Patch `railyard.v0.nodes.generate_snapshot_id` (as test suites patch pydantic-graph's) to count."""
    made: list[str] = []

    def generate(node_id: str) -> str:
        made.append(f"{node_id}:{len(made) + 1}")
        return made[-1]

    monkeypatch.setattr(railyard.v0.nodes, "generate_snapshot_id", generate)
    yield made


# -- module paths --------------------------------------------------------------------------


def test_v0_has_pydantic_graph_0_0_x_modules() -> None:
    from railyard.v0 import BaseNode as V0BaseNode
    from railyard.v0._utils import get_event_loop
    from railyard.v0.exceptions import GraphRuntimeError as V0RuntimeError
    from railyard.v0.graph import Graph as V0Graph
    from railyard.v0.graph import GraphRunResult
    from railyard.v0.mermaid import DEFAULT_HIGHLIGHT_CSS, generate_code
    from railyard.v0.nodes import BaseNode as NodesBaseNode
    from railyard.v0.nodes import NodeDef
    from railyard.v0.state import EndStep, NodeStep, deep_copy_state

    assert NodesBaseNode is V0BaseNode
    assert V0RuntimeError is GraphRuntimeError
    assert V0Graph.__module__ == "railyard.v0.graph"
    assert NodeDef is railyard.nodes.NodeDef
    assert callable(get_event_loop) and callable(generate_code) and callable(deep_copy_state)
    assert DEFAULT_HIGHLIGHT_CSS == "fill:#fdff32"
    assert (
        EndStep.__name__ == "EndStep"
        and NodeStep.__name__ == "NodeStep"
        and GraphRunResult.__name__ == "GraphRunResult"
    )


def test_one_x_module_paths_re_export_what_pydantic_graph_s_do() -> None:
    from railyard.graph import SimpleStatePersistence as FromGraph
    from railyard.persistence.file import BaseStatePersistence, EndSnapshot, Snapshot, build_snapshot_list_type_adapter

    assert FromGraph is SimpleStatePersistence
    assert BaseStatePersistence.__name__ == "BaseStatePersistence" and EndSnapshot.__name__ == "EndSnapshot"
    assert Snapshot is not None and callable(build_snapshot_list_type_adapter)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = railyard.graph.Nope  # type: ignore[attr-defined]


def test_get_event_loop_makes_a_loop_in_a_thread_without_one() -> None:
    from railyard._utils import get_event_loop

    loops: list[asyncio.AbstractEventLoop] = []

    def in_thread() -> None:
        loop = get_event_loop()
        loops.append(loop)
        assert get_event_loop() is loop  # set as the thread's loop
        loop.close()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert len(loops) == 1 and loops[0].is_closed()


# -- patch points ----------------------------------------------------------------------------


async def test_patching_v0_nodes_generate_snapshot_id_numbers_the_history(numbered_ids: list[str]) -> None:
    from railyard.v0 import BaseNode as V0Node
    from railyard.v0 import End as V0End
    from railyard.v0 import Graph as V0Graph
    from railyard.v0 import GraphRunContext as V0Context

    @dataclass
    class Ping(V0Node[None, None, str]):
        async def run(self, ctx: V0Context) -> V0End[str]:
            return V0End("pong")

    graph = V0Graph(nodes=[Ping])
    sp = FullStatePersistence()
    await graph.run(Ping(), persistence=sp)
    assert [snapshot.id for snapshot in sp.history] == ["Ping:1", "end:2"]
    assert numbered_ids == ["Ping:1", "end:2"]


# -- the node API --------------------------------------------------------------------------------


async def test_nodes_defined_later_resolve_when_the_graph_is_built_as_a_generic_alias() -> None:
    @dataclass
    class First(BaseNode):
        async def run(self, ctx: GraphRunContext) -> Second:  # `Second` is defined below, in this function
            return Second()

    @dataclass
    class Second(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(7)

    graph = Graph[None, None, int](nodes=(First, Second))  # called through typing's alias
    assert (await graph.run(First())).output == 7
    assert graph.name == "graph"


def test_plain_base_node_in_a_v0_annotation_means_any_node() -> None:
    from railyard.v0 import BaseNode as V0Node
    from railyard.v0 import Graph as V0Graph
    from railyard.v0 import GraphRunContext as V0Context

    @dataclass
    class Anywhere(V0Node):
        async def run(self, ctx: V0Context) -> V0Node:
            return self

    @dataclass
    class Other(V0Node):
        async def run(self, ctx: V0Context) -> Anywhere:
            return Anywhere()

    graph = V0Graph(nodes=[Anywhere, Other])
    assert graph.node_defs["Anywhere"].returns_base_node
    assert "Anywhere --> Other" in graph.mermaid_code()


def test_node_def_compares_as_pydantic_graph_s() -> None:
    from railyard.nodes import Edge, NodeDef

    assert Start.get_node_def({}) == NodeDef(
        node=Start, node_id="Start", note=None, next_node_edges={"Finish": Edge(label=None)}, end_edge=None
    )


def test_v0_private_type_readers_follow_0_0_x() -> None:
    from railyard.v0 import BaseNode as V0Node
    from railyard.v0 import Graph as V0Graph
    from railyard.v0 import GraphRunContext as V0Context

    @dataclass
    class Loop(V0Node):
        async def run(self, ctx: V0Context) -> Loop:
            return Loop()

    graph = V0Graph(nodes=[Loop])
    assert graph._get_state_type() is type(None)
    with pytest.raises(
        GraphSetupError, match=r"^Could not infer run end type from nodes, please set `run_end_type`\.$"
    ):
        graph._get_run_end_type()
    assert V0Graph(nodes=[Loop], run_end_type=None)._get_run_end_type() is None  # type: ignore[arg-type]
    assert V0Graph(nodes=[Start, Finish])._get_state_type() is Counter  # type: ignore[list-item]
    assert V0Graph(nodes=[Start, Finish])._get_run_end_type() is int  # type: ignore[list-item]


async def test_a_non_node_return_has_pydantic_graph_s_message_and_names_the_node_in_a_note() -> None:
    @dataclass
    class Junk(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> End[None]:
            return 42  # type: ignore[return-value]

    with pytest.raises(GraphRuntimeError) as info:
        await Graph(nodes=[Junk]).run(Junk())
    assert info.value.message == "Invalid node return type: `int`. Expected `BaseNode` or `End`."
    assert info.value.__notes__ == ["`Junk.run` returned 42."]


# -- persistence ----------------------------------------------------------------------------------------


async def test_a_node_object_keeps_its_snapshot_id_so_running_it_again_on_the_same_persistence_is_refused() -> None:
    node = Start()
    sp = FullStatePersistence()
    async with counter_graph.iter(node, state=Counter(), persistence=sp) as run:
        await run.next()
    first_id = node.get_snapshot_id()
    with pytest.raises(
        GraphNodeStatusError, match=r"Incorrect snapshot status 'success', must be 'created' or 'pending'"
    ):
        async with counter_graph.iter(node, state=Counter(), persistence=sp) as run:
            await run.next()
    assert node.get_snapshot_id() == first_id
    # on a fresh persistence (the default), the same node object runs again
    assert (await counter_graph.run(node, state=Counter())).output == 1


async def test_loaded_snapshots_keep_their_start_time_and_duration() -> None:
    sp = FullStatePersistence()
    sp.set_graph_types(counter_graph)
    sp.load_json(
        json.dumps(
            [
                {
                    "state": {"value": 3},
                    "node": {"node_id": "Start"},
                    "start_ts": "2025-01-01T00:00:00Z",
                    "duration": 12.5,
                    "kind": "node",
                    "id": "Start:a",
                }
            ]
        )
    )
    (snapshot,) = sp.history
    assert isinstance(snapshot, NodeSnapshot)
    assert (snapshot.status, snapshot.start_ts, snapshot.duration) == (
        "created",
        datetime(2025, 1, 1, tzinfo=UTC),
        12.5,
    )
    # the loaded node still runs, and its start time is then the real one
    async with counter_graph.iter_from_persistence(sp) as run:
        await run.next()
    assert sp.history[0].start_ts != datetime(2025, 1, 1, tzinfo=UTC)  # type: ignore[union-attr]


async def test_simple_persistence_hands_out_the_same_snapshot_object_until_the_run_moves_on() -> None:
    sp: SimpleStatePersistence[Any, Any] = SimpleStatePersistence()
    async with counter_graph.iter(Start(), state=Counter(), persistence=sp) as run:
        await run.next()
        assert sp.last_snapshot is sp.last_snapshot
        held = sp.last_snapshot
        await run.next()
    assert sp.last_snapshot is sp.last_snapshot
    assert held is not sp.last_snapshot


async def test_file_persistence_lock_waits_at_most_its_timeout(tmp_path: Path) -> None:
    persistence: FileStatePersistence[Any, Any] = FileStatePersistence(tmp_path / "run.json")
    async with persistence._lock():
        pass
    async with persistence._lock():
        other: FileStatePersistence[Any, Any] = FileStatePersistence(tmp_path / "run.json")
        with pytest.raises(TimeoutError):
            async with other._lock(timeout=0.05):
                pass
    async with persistence._lock(timeout=0.05):  # let go: free again
        pass


async def test_an_in_memory_run_goes_on_after_its_block_exits() -> None:
    async with counter_graph.iter(Start(), state=Counter()) as run:
        pass
    assert await run.next() == Finish()  # as upstream; a run on a store refuses (it let go of the run's lock)
    assert await run.next() == End(1)


async def test_v0_has_the_persistence_package_0_0_40_added() -> None:
    from railyard.v0 import BaseNode as V0Node
    from railyard.v0 import End as V0End
    from railyard.v0 import FullStatePersistence as V0Full
    from railyard.v0 import Graph as V0Graph
    from railyard.v0 import GraphRunContext as V0Context
    from railyard.v0.persistence import BaseStatePersistence as V0Base
    from railyard.v0.persistence.file import FileStatePersistence as V0File
    from railyard.v0.persistence.in_mem import SimpleStatePersistence as V0Simple

    assert (V0Full, V0Simple, V0File) == (FullStatePersistence, SimpleStatePersistence, FileStatePersistence)

    @dataclass
    class Once(V0Node[None, None, int]):
        async def run(self, ctx: V0Context) -> V0End[int]:
            return V0End(5)

    sp = V0Full()
    assert isinstance(sp, V0Base)
    assert (await V0Graph(nodes=[Once]).run(Once(), persistence=sp)).output == 5
    assert [type(s).__name__ for s in sp.history] == ["NodeSnapshot", "EndSnapshot"]


def test_a_snapshot_schema_needs_the_graph_s_node_types() -> None:
    from railyard.persistence import build_snapshot_list_type_adapter

    with pytest.raises(RuntimeError, match=r"^Unable to build a Pydantic schema for `BaseNode` without setting"):
        build_snapshot_list_type_adapter(int, int)
    sp = FullStatePersistence()
    sp.set_graph_types(counter_graph)  # what a run does: the persistence knows the nodes
    assert sp.dump_json() == b"[]"
