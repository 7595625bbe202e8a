"""Changing a graph under stored runs: shapes recorded and compared on resume, migrations for old runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, Migration, NodeSnapshot
from railyard.builder import GraphBuilder, StepContext
from railyard.builder.graph import EndMarker
from railyard.builder.graph import Graph as BuilderGraph
from railyard.durable import DurablePersistence, read_run
from railyard.exceptions import CorruptRunError, GraphSetupError, GraphVersionError
from railyard.store import RunStore, StoredRecord
from railyard.store.codec import RecordCodec
from railyard.store.memory import MemoryStore
from railyard.store.records import RunCreated
from railyard.store.sqlite import SqliteStore
from railyard.worker import run_worker
from tests.support.stores import open_test_store

pytestmark = pytest.mark.anyio


# -- version 1 of the order graph ------------------------------------------------------------------


@dataclass
class OrderStateV1:
    order_id: int
    total: int
    """In euros."""
    log: list[str] = field(default_factory=list[str])


@dataclass
class ReceiveV1(BaseNode[OrderStateV1, None, str]):
    @classmethod
    def get_node_id(cls) -> str:
        return "Receive"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ReviewV1:
        ctx.state.log.append("received")
        return ReviewV1(amount=ctx.state.total)


@dataclass
class ReviewV1(BaseNode[OrderStateV1, None, str]):
    amount: int

    @classmethod
    def get_node_id(cls) -> str:
        return "Review"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ShipV1 | RejectV1:
        ctx.state.log.append(f"reviewed {self.amount}")
        return ShipV1() if self.amount < 1000 else RejectV1()


@dataclass
class RejectV1(BaseNode[OrderStateV1, None, str]):
    @classmethod
    def get_node_id(cls) -> str:
        return "Reject"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> End[str]:
        return End("rejected")


@dataclass
class ShipV1(BaseNode[OrderStateV1, None, str]):
    @classmethod
    def get_node_id(cls) -> str:
        return "Ship"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> End[str]:
        ctx.state.log.append("shipped")
        return End(f"shipped {ctx.state.order_id}")


orders_v1: Graph[OrderStateV1, None, str] = Graph(nodes=[ReceiveV1, ReviewV1, RejectV1, ShipV1], name="orders")


# -- version 2: totals in cents, a priority, `Review` renamed `Approve`, no more rejections ----------


@dataclass
class OrderStateV2:
    order_id: int
    total_cents: int
    priority: str
    log: list[str] = field(default_factory=list[str])


@dataclass
class ReceiveV2(BaseNode[OrderStateV2, None, str]):
    @classmethod
    def get_node_id(cls) -> str:
        return "Receive"

    async def run(self, ctx: GraphRunContext[OrderStateV2, None]) -> ApproveV2:
        ctx.state.log.append("received")
        return ApproveV2(amount_cents=ctx.state.total_cents)


@dataclass
class ApproveV2(BaseNode[OrderStateV2, None, str]):
    amount_cents: int

    @classmethod
    def get_node_id(cls) -> str:
        return "Approve"

    async def run(self, ctx: GraphRunContext[OrderStateV2, None]) -> ShipV2:
        ctx.state.log.append(f"approved {self.amount_cents} cents")
        return ShipV2()


@dataclass
class ShipV2(BaseNode[OrderStateV2, None, str]):
    @classmethod
    def get_node_id(cls) -> str:
        return "Ship"

    async def run(self, ctx: GraphRunContext[OrderStateV2, None]) -> End[str]:
        ctx.state.log.append("shipped")
        state = ctx.state
        return End(f"shipped {state.order_id} ({state.priority}, {state.total_cents} cents)")


MIGRATED: list[str] = []
"""What the migrations below were called on, in order (cleared by each test that reads it)."""


def to_cents(state: dict[str, Any]) -> dict[str, Any]:
    MIGRATED.append(f"state {state['total']}")
    return {
        "order_id": state["order_id"],
        "total_cents": state["total"] * 100,
        "priority": "normal",
        "log": state["log"],
    }


def review_to_cents(review: dict[str, Any]) -> dict[str, Any]:
    MIGRATED.append(f"review {review['amount']}")
    return {"amount_cents": review["amount"] * 100}


TO_V2 = Migration(from_version=1, state=to_cents, nodes={"Review": review_to_cents}, renames={"Review": "Approve"})

orders_v2: Graph[OrderStateV2, None, str] = Graph(
    nodes=[ReceiveV2, ApproveV2, ShipV2], name="orders", version=2, migrations=[TO_V2]
)
unversioned_v2: Graph[OrderStateV2, None, str] = Graph(nodes=[ReceiveV2, ApproveV2, ShipV2], name="orders")
"""Version 2's code, with the version and migration forgotten."""


# -- helpers -----------------------------------------------------------------------------------------


def snapshot(records: list[StoredRecord] | Any) -> list[tuple[str, str, str]]:
    """What a store holds of a run, byte for byte: each record's kind, JSON and status."""
    return [(r.kind, r.body, r.status.value) for r in records]


async def paused_v1(store: RunStore, run_id: str = "order-7", total: int = 42) -> None:
    """A version-1 run stopped after `Receive`, with `Review` to run next (the process "died")."""
    async with orders_v1.iter(ReceiveV1(), state=OrderStateV1(7, total), store=store, run_id=run_id) as run:
        await run.next()


def created_records(stored: list[StoredRecord] | Any) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in stored if r.kind == "run_created"]


def resolve(shape: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema of a shape, its `$ref` into the shape's shared `$defs` followed."""
    ref = schema.get("$ref")
    return shape["$defs"][ref.rpartition("/")[2]] if isinstance(ref, str) else schema


@pytest.fixture(params=["sqlite", "file", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> RunStore:
    return open_test_store(request.param, tmp_path, request)


# -- the shape a run records -----------------------------------------------------------------------------


async def test_a_run_records_its_graphs_version_nodes_edges_and_schemas() -> None:
    store = MemoryStore()
    await paused_v1(store)
    codec = RecordCodec(orders_v1.get_nodes(), OrderStateV1, str)
    created = (await read_run(store, "order-7", codec))[0]
    assert isinstance(created, RunCreated) and created.shape is not None
    shape = created.shape
    assert (shape["api"], shape["version"]) == ("node", 1)
    assert set(shape["nodes"]) == {"Receive", "Review", "Reject", "Ship"}
    assert shape["nodes"]["Review"]["edges"] == ["Reject", "Ship"]
    assert shape["nodes"]["Ship"]["edges"] == ["End"]
    review, state = resolve(shape, shape["nodes"]["Review"]["schema"]), resolve(shape, shape["state"])
    assert review["properties"] == {"amount": {"title": "Amount", "type": "integer"}}
    assert state["required"] == ["order_id", "total"]
    assert "description" not in json.dumps(state)  # docstrings are not stored
    assert created.fingerprint is not None and len(created.fingerprint) == 16


async def test_a_builder_run_records_its_steps_input_schemas_and_joins_forks(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    assert await batch_v1.run(inputs=[1, 2], state=BatchState(), store=store, run_id="b") == [2, 4]
    created = json.loads((await store.read("b"))[0].body)
    shape = created["shape"]
    assert (shape["api"], shape["version"]) == ("builder", 1)
    assert shape["nodes"]["double"]["kind"] == "step"
    assert shape["nodes"]["double"]["schema"] == {"type": "integer"}
    assert shape["nodes"]["collect"]["kind"] == "join"
    assert shape["nodes"]["collect"]["fork"] == batch_v1.get_parent_fork("collect").fork_id


async def test_an_agent_run_records_the_agent_graphs_shape(tmp_path: Path) -> None:
    from railyard.agent import Agent
    from railyard.agent.models.test import TestModel

    store = SqliteStore(tmp_path / "runs.db")
    agent = Agent(TestModel(), name="helper")
    result = await agent.run("hello", store=store, run_id="a")
    assert result.data
    shape = json.loads((await store.read("a"))[0].body)["shape"]
    assert set(shape["nodes"]) == {"UserPromptNode", "ModelRequestNode", "CallToolsNode"}
    assert shape["state"] is not None


# -- comparing on resume --------------------------------------------------------------------------------


@dataclass
class OrderStateWithCoupon(OrderStateV1):
    coupon: str | None = None


@dataclass
class ReviewWithNote(BaseNode[OrderStateV1, None, str]):
    amount: int
    note: str | None = None

    @classmethod
    def get_node_id(cls) -> str:
        return "Review"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ShipV1 | RejectV1:
        return ShipV1()


@dataclass
class ReviewOfAnyAmount(BaseNode[OrderStateV1, None, str]):
    amount: float | None

    @classmethod
    def get_node_id(cls) -> str:
        return "Review"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ShipV1 | RejectV1 | Audit:
        return Audit() if self.amount is None else ShipV1()


@dataclass
class Audit(BaseNode[OrderStateV1, None, str]):
    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ShipV1:
        return ShipV1()


@dataclass
class ReviewShipsAll(BaseNode[OrderStateV1, None, str]):
    amount: int

    @classmethod
    def get_node_id(cls) -> str:
        return "Review"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ShipV1:
        return ShipV1()


COMPATIBLE: dict[str, Graph[OrderStateV1, None, str]] = {
    "node-added": Graph(nodes=[ReceiveV1, ReviewV1, RejectV1, ShipV1, Audit], name="orders"),
    "edge-added-and-type-widened": Graph(nodes=[ReceiveV1, ReviewOfAnyAmount, RejectV1, ShipV1, Audit], name="orders"),
    "state-field-with-default": Graph(
        nodes=[ReceiveV1, ReviewV1, RejectV1, ShipV1], name="orders", state_type=OrderStateWithCoupon
    ),
    "optional-node-field": Graph(nodes=[ReceiveV1, ReviewWithNote, RejectV1, ShipV1], name="orders"),
    "node-never-reached-removed": Graph(nodes=[ReceiveV1, ReviewShipsAll, ShipV1], name="orders"),
}


@pytest.mark.parametrize("change", list(COMPATIBLE), ids=list(COMPATIBLE))
async def test_a_compatible_change_resumes_and_says_where_the_new_shape_begins(store: RunStore, change: str) -> None:
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))
    graph = COMPATIBLE[change]
    result = await graph.resume(store, "order-7")
    assert result.output == "shipped 7"
    after = await store.read("order-7")
    assert snapshot(after)[: len(before)] == before  # the log only grew
    marker = after[len(before)]
    assert marker.kind == "run_created" and marker.status.value == before[-1][2]  # the status stays as it was
    assert json.loads(marker.body)["shape"]["version"] == 1
    assert len(created_records(after)) == 2


async def test_resuming_with_the_same_graph_adds_no_record(store: RunStore) -> None:
    await paused_v1(store)
    await orders_v1.resume(store, "order-7")
    assert len(created_records(await store.read("order-7"))) == 1


async def test_incompatible_changes_refuse_the_run_in_one_error_listing_each(store: RunStore) -> None:
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))
    with pytest.raises(GraphVersionError) as caught:
        await unversioned_v2.resume(store, "order-7")
    err = caught.value
    assert err.differences == (
        "node `Review` is gone (renamed?) and the run has a task for it",
        "state field `total_cents` added without a default",
        "state field `priority` added without a default",
    )
    assert isinstance(err, CorruptRunError)  # a record no longer fits the graph's types: caught as before
    assert (err.run_id, err.record, err.stored_version, err.version) == ("order-7", 2, 1, 1)
    assert (
        err.problem
        == "field `state.total_cents`: Field required (stored value: {'order_id': 7, 'total': 42, 'log': []})"
    )
    lines = err.message.splitlines()
    assert lines[0] == (
        f"Run 'order-7' in {store!r}: record 2 cannot be read: {err.problem}. Graph 'orders' (version 1) cannot "
        f"resume it: the run was stored by version 1, and the graph differs in what the run needs:"
    )
    assert lines[1:4] == [f"  - {difference}" for difference in err.differences]
    assert lines[4] == (
        "Give each new field a default, or raise the graph's version and add a migration that upgrades what the "
        "run stored: Graph(..., version=2, migrations=[Migration(from_version=1, ...)]). Nothing was changed."
    )
    assert snapshot(await store.read("order-7")) == before  # not a byte changed
    assert await orders_v1.resume(store, "order-7")  # the old code still resumes it


@dataclass
class ReviewOfText(BaseNode[OrderStateV1, None, str]):
    amount: str

    @classmethod
    def get_node_id(cls) -> str:
        return "Review"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ShipV1 | RejectV1:
        return ShipV1()


@dataclass
class ReviewWithReviewer(BaseNode[OrderStateV1, None, str]):
    amount: int
    reviewer: str

    @classmethod
    def get_node_id(cls) -> str:
        return "Review"

    async def run(self, ctx: GraphRunContext[OrderStateV1, None]) -> ShipV1 | RejectV1:
        return ShipV1()


INCOMPATIBLE: dict[str, tuple[Graph[OrderStateV1, None, str], str]] = {
    "field-type-changed": (
        Graph(nodes=[ReceiveV1, ReviewOfText, RejectV1, ShipV1], name="orders"),
        "field `amount` of node `Review` changed type (was integer, now string)",
    ),
    "required-node-field-added": (
        Graph(nodes=[ReceiveV1, ReviewWithReviewer, RejectV1, ShipV1], name="orders"),
        "field `reviewer` of node `Review` added without a default",
    ),
    "node-in-history-removed": (
        Graph(nodes=[ReviewV1, RejectV1, ShipV1], name="orders"),
        "node `Receive` is gone (renamed?) and the run's history has a step of it",
    ),
}


@pytest.mark.parametrize("change", list(INCOMPATIBLE), ids=list(INCOMPATIBLE))
async def test_each_incompatible_change_is_named(tmp_path: Path, change: str) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))
    graph, difference = INCOMPATIBLE[change]
    with pytest.raises(GraphVersionError) as caught:
        await graph.resume(store, "order-7")
    assert caught.value.differences == (difference,)
    assert snapshot(await store.read("order-7")) == before


class Line(pydantic.BaseModel):
    sku: str
    qty: int = 1


class PricedLine(pydantic.BaseModel):
    sku: str
    qty: int = 1
    price: int


@dataclass
class Basket:
    lines: list[Line]
    size: Literal["s", "m"] = "s"


@dataclass
class BasketOfPricedLines:
    lines: list[PricedLine]
    size: Literal["s", "m"] = "s"


@dataclass
class BasketOfMoreSizes:
    lines: list[Line]
    size: Literal["s", "m", "l"] = "s"


@dataclass
class Pack(BaseNode[Any, None, str]):
    async def run(self, ctx: GraphRunContext[Any, None]) -> End[str]:
        return End(f"packed {len(ctx.state.lines)}")


@pytest.mark.parametrize(
    ("state_type", "differences"),
    [
        pytest.param(BasketOfMoreSizes, (), id="choice-widened"),
        pytest.param(BasketOfPricedLines, ("state field `lines[].price` added without a default",), id="nested"),
    ],
)
async def test_nested_state_types_are_compared_field_by_field(
    tmp_path: Path, state_type: type[Any], differences: tuple[str, ...]
) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    baskets = Graph[Any, None, str](nodes=[Pack], name="baskets", state_type=Basket)
    await baskets.initialize(Pack(), store=store, run_id="basket", state=Basket([Line(sku="tea")]))
    changed = Graph[Any, None, str](nodes=[Pack], name="baskets", state_type=state_type)
    if not differences:
        assert (await changed.resume(store, "basket")).output == "packed 1"
        return
    with pytest.raises(GraphVersionError) as caught:
        await changed.resume(store, "basket")
    assert caught.value.differences == differences


async def test_a_worker_leaves_a_run_its_graph_cannot_resume_as_it_was(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))
    assert await run_worker([unversioned_v2], store) == []
    assert snapshot(await store.read("order-7")) == before
    assert await run_worker([orders_v2], store) == ["order-7"]  # the migrated graph takes it


async def test_a_run_stored_before_shapes_were_recorded_resumes_unchecked(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store, run_id="new")
    stored = list(await store.read("new"))
    old_created = {k: v for k, v in json.loads(stored[0].body).items() if k != "shape"}
    await store.create("old", [replace(stored[0], body=json.dumps(old_created)), *stored[1:]])
    codec = RecordCodec(orders_v1.get_nodes(), OrderStateV1, str)
    created = (await read_run(store, "old", codec))[0]
    assert isinstance(created, RunCreated) and created.shape is None  # read as unknown
    result = await COMPATIBLE["optional-node-field"].resume(store, "old")
    assert result.output == "shipped 7"
    assert [c.get("shape") is not None for c in created_records(await store.read("old"))] == [False, True]


# -- migrations -------------------------------------------------------------------------------------------


async def test_a_run_of_version_1_resumes_on_version_2_through_its_migration(store: RunStore) -> None:
    MIGRATED.clear()
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))
    result = await orders_v2.resume(store, "order-7")
    assert result.output == "shipped 7 (normal, 4200 cents)"
    assert result.state == OrderStateV2(7, 4200, "normal", ["received", "approved 4200 cents", "shipped"])
    after = await store.read("order-7")
    assert snapshot(after)[: len(before)] == before  # the stored records are never rewritten
    marker = json.loads(after[len(before)].body)
    assert (marker["kind"], marker["shape"]["version"]) == ("run_created", 2)
    assert "review 42" in MIGRATED and "state 42" in MIGRATED


async def test_a_migrated_runs_history_reads_as_the_new_version(store: RunStore) -> None:
    await paused_v1(store)
    await orders_v2.resume(store, "order-7")
    persistence: DurablePersistence[OrderStateV2, str] = DurablePersistence(store, "order-7")
    persistence.set_graph_types(orders_v2)
    snapshots = await persistence.load_all()
    nodes = [type(s.node).__name__ for s in snapshots if isinstance(s, NodeSnapshot)]
    assert nodes == ["ReceiveV2", "ApproveV2", "ShipV2"]
    assert snapshots[1].node == ApproveV2(amount_cents=4200)


async def test_a_run_resumed_twice_is_migrated_once(store: RunStore) -> None:
    MIGRATED.clear()
    await paused_v1(store)
    async with orders_v2.iter_resume(store, "order-7") as run:
        assert await run.next() == ShipV2()  # `Approve` ran on version 2, then the process "died"
    written_by_v2 = len(await store.read("order-7"))
    MIGRATED.clear()
    result = await orders_v2.resume(store, "order-7")
    # the records version 2 wrote are read as they are: a second migration would have made 420000 cents
    assert result.output == "shipped 7 (normal, 4200 cents)"
    stored = await store.read("order-7")
    assert len(created_records(stored)) == 2  # the second resume, by the same version, added none
    assert len(stored) > written_by_v2
    assert MIGRATED == ["state 42", "state 42", "review 42"]  # only version 1's records: two states, one review


async def test_a_run_two_versions_old_goes_through_each_migration(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)

    def express(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "priority": "express"}

    v3: Graph[OrderStateV2, None, str] = Graph(
        nodes=[ReceiveV2, ApproveV2, ShipV2],
        name="orders",
        version=3,
        migrations=[TO_V2, Migration(from_version=2, state=express)],
    )
    assert (await v3.resume(store, "order-7")).output == "shipped 7 (express, 4200 cents)"


async def test_a_missing_migration_is_named(store: RunStore) -> None:
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))
    v3: Graph[OrderStateV2, None, str] = Graph(
        nodes=[ReceiveV2, ApproveV2, ShipV2], name="orders", version=3, migrations=[Migration(from_version=2)]
    )
    with pytest.raises(GraphVersionError) as caught:
        await v3.resume(store, "order-7")
    assert caught.value.differences == ("no migration upgrades what version 1 stored",)
    assert "Add Graph(..., version=3, migrations=[Migration(from_version=1, ...)]) for each." in caught.value.message
    assert snapshot(await store.read("order-7")) == before


async def test_a_run_of_a_newer_version_is_left_to_the_newer_code(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)
    async with orders_v2.iter_resume(store, "order-7") as run:
        await run.next()
    before = snapshot(await store.read("order-7"))
    with pytest.raises(GraphVersionError) as caught:
        await orders_v1.resume(store, "order-7")
    assert caught.value.differences == ("the run was stored by version 2 of the graph, newer than this one",)
    assert (caught.value.stored_version, caught.value.version) == (2, 1)
    assert snapshot(await store.read("order-7")) == before


async def test_a_migration_that_raises_refuses_the_run(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))

    def broken(state: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("totl")

    graph: Graph[OrderStateV2, None, str] = Graph(
        nodes=[ReceiveV2, ApproveV2, ShipV2],
        name="orders",
        version=2,
        migrations=[Migration(from_version=1, state=broken, renames={"Review": "Approve"})],
    )
    with pytest.raises(GraphVersionError) as caught:
        await graph.resume(store, "order-7")
    assert caught.value.differences == ("Migration(from_version=1) raised KeyError: 'totl'",)
    assert (caught.value.record, caught.value.problem) == (2, "a migration raised KeyError")
    assert isinstance(caught.value.__cause__, KeyError)
    assert snapshot(await store.read("order-7")) == before


async def test_a_migration_that_leaves_a_record_unreadable_says_which(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)
    before = snapshot(await store.read("order-7"))
    graph: Graph[OrderStateV2, None, str] = Graph(
        nodes=[ReceiveV2, ApproveV2, ShipV2],
        name="orders",
        version=2,
        migrations=[Migration(from_version=1, renames={"Review": "Approve"})],  # the state is left as it was
    )
    with pytest.raises(GraphVersionError) as caught:
        await graph.resume(store, "order-7")
    assert caught.value.differences == ("what version 1 stored does not fit the graph once migrated",)
    assert caught.value.record == 2
    assert caught.value.problem is not None and caught.value.problem.startswith("field `state.total_cents`: Field")
    assert "Fix the migrations so they return what this version of the graph reads." in caught.value.message
    assert snapshot(await store.read("order-7")) == before


async def test_a_rename_to_nowhere_is_named_on_resume(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)
    graph: Graph[OrderStateV2, None, str] = Graph(
        nodes=[ReceiveV2, ApproveV2, ShipV2],
        name="orders",
        version=2,
        migrations=[Migration(from_version=1, state=to_cents)],  # `Review` is not renamed
    )
    with pytest.raises(GraphVersionError) as caught:
        await graph.resume(store, "order-7")
    assert caught.value.differences == (
        "node `Review` is gone, no migration renames it, and the run has a task for it",
    )


async def test_a_forked_run_of_an_old_version_is_a_run_of_the_new_one(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store)
    forked = await orders_v2.fork(store, "order-7", at_step=1)
    created = created_records(await store.read(forked))
    assert [c["shape"]["version"] for c in created] == [2]
    assert (await orders_v2.resume(store, forked)).output == "shipped 7 (normal, 4200 cents)"


# -- the builder -------------------------------------------------------------------------------------------


@dataclass
class BatchState:
    seen: int = 0


async def double(ctx: StepContext[BatchState, None, int]) -> int:
    ctx.state.seen += 1
    return ctx.inputs * 2


async def double_text(ctx: StepContext[BatchState, None, str]) -> int:
    return int(ctx.inputs) * 2


def build_batch(
    *,
    name: str = "batch",
    step_id: str = "double",
    input_type: type[Any] = int,
    version: int = 1,
    migrations: tuple[Migration, ...] = (),
    extra_step: bool = False,
) -> BuilderGraph[BatchState, None, list[int], list[int]]:
    g: GraphBuilder[BatchState, None, list[int], list[int]] = GraphBuilder(
        name=name,
        state_type=BatchState,
        input_type=list[int],
        output_type=list[int],
        version=version,
        migrations=migrations,
    )

    step = g.step(node_id=step_id)(double if input_type is int else double_text)
    collect = g.join(lambda values, value: [*values, value], initial_factory=list[int], node_id="collect")

    async def tidy(ctx: StepContext[BatchState, None, list[int]]) -> list[int]:
        return sorted(ctx.inputs)

    if extra_step:
        tidy_step = g.step(node_id="tidy")(tidy)
        g.add(
            g.edge_from(g.start_node).map().to(step),
            g.edge_from(step).to(collect),
            g.edge_from(collect).to(tidy_step),
            g.edge_from(tidy_step).to(g.end_node),
        )
    else:
        g.add(
            g.edge_from(g.start_node).map().to(step),
            g.edge_from(step).to(collect),
            g.edge_from(collect).to(g.end_node),
        )
    return g.build()


batch_v1 = build_batch()


async def paused_batch(store: RunStore) -> None:
    """A version-1 builder run stopped once its map has started (the process "died")."""
    async with batch_v1.iter(inputs=[1, 2, 3], state=BatchState(), store=store, run_id="batch-1") as run:
        async for tasks in run:
            if not isinstance(tasks, EndMarker) and any(task.node_id == "double" for task in tasks):
                break


@pytest.fixture(params=["sqlite", "memory"])
def builder_store(request: pytest.FixtureRequest, tmp_path: Path) -> RunStore:
    return open_test_store(request.param, tmp_path, request)


async def test_a_builder_run_resumes_with_a_step_added(builder_store: RunStore) -> None:
    await paused_batch(builder_store)
    assert sorted(await build_batch(extra_step=True).resume(builder_store, "batch-1")) == [2, 4, 6]


async def test_a_builder_step_renamed_without_a_migration_refuses_the_run(builder_store: RunStore) -> None:
    await paused_batch(builder_store)
    before = snapshot(await builder_store.read("batch-1"))
    with pytest.raises(GraphVersionError) as caught:
        await build_batch(step_id="twice").resume(builder_store, "batch-1")
    assert caught.value.differences == ("step `double` is gone (renamed?) and the run has a task for it",)
    assert (caught.value.record, caught.value.problem) == (1, None)  # its records read: the graph lacks the step
    assert caught.value.message.splitlines()[0] == (
        f"Run 'batch-1' in {builder_store!r} cannot be resumed by graph 'batch' (version 1); it was stored by "
        f"version 1, and the graph differs in what the run needs:"
    )
    assert "GraphBuilder(..., version=2, migrations=[Migration(from_version=1, ...)])" in caught.value.message
    assert snapshot(await builder_store.read("batch-1")) == before


async def test_a_builder_steps_input_type_changed_refuses_the_run(builder_store: RunStore) -> None:
    await paused_batch(builder_store)
    before = snapshot(await builder_store.read("batch-1"))
    with pytest.raises(GraphVersionError) as caught:
        await build_batch(input_type=str).resume(builder_store, "batch-1")
    assert caught.value.differences == ("the input of step `double` changed type (was integer, now string)",)
    assert snapshot(await builder_store.read("batch-1")) == before


async def test_a_builder_step_renamed_with_a_migration_resumes_twice(builder_store: RunStore) -> None:
    await paused_batch(builder_store)
    v2 = build_batch(step_id="twice", version=2, migrations=(Migration(from_version=1, renames={"double": "twice"}),))
    async with v2.iter_resume(builder_store, "batch-1") as run:
        async for tasks in run:
            if not isinstance(tasks, EndMarker) and any(task.node_id == "collect" for task in tasks):
                break  # some branches joined, then the process "died" again
    assert sorted(await v2.resume(builder_store, "batch-1")) == [2, 4, 6]
    assert [c["shape"]["version"] for c in created_records(await builder_store.read("batch-1"))] == [1, 2]


# -- declaring versions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda: Graph(nodes=[ShipV2], version=0),
            "Graph(version=0): a graph's version is a whole number of at least 1.",
            id="version-0",
        ),
        pytest.param(
            lambda: Graph(nodes=[ShipV2], version=2, migrations=[Migration(1), Migration(1)]),
            "Graph(migrations=[...]) has two migrations from version 1; give one per version.",
            id="two-from-one-version",
        ),
        pytest.param(
            lambda: Graph(nodes=[ShipV2], migrations=[Migration(1)]),
            "Graph(version=1) has a migration from version 1: a migration upgrades an older version. "
            "Raise `version=` to 2 or more.",
            id="migration-from-the-current-version",
        ),
        pytest.param(
            lambda: Graph(nodes=[ShipV2], version=2, migrations=[Migration(1, renames={"Review": "Approve"})]),
            "Migration(from_version=1) renames node `Review` to `Approve`, which is no node of the graph "
            "(its nodes: Ship).",
            id="rename-to-nowhere",
        ),
        pytest.param(
            lambda: Graph(nodes=[ShipV2], version=2, migrations=["not a migration"]),  # type: ignore[list-item]
            "Graph(migrations=[...]) takes `railyard.versioning.Migration` objects, got 'not a migration'.",
            id="not-a-migration",
        ),
        pytest.param(
            lambda: Migration(0),
            "Migration(from_version=0): the version it upgrades from must be a whole number of at least 1 "
            "(a graph's first version is 1).",
            id="from-version-0",
        ),
        pytest.param(
            lambda: build_batch(version=2, migrations=(Migration(1, renames={"double": "triple"}),)),
            "Migration(from_version=1) renames node `double` to `triple`, which is no node of the graph "
            "(its nodes: __end__, __start__, collect, double, ",
            id="builder-rename-to-nowhere",
        ),
    ],
)
def test_a_version_or_migration_that_cannot_work_is_refused_when_the_graph_is_made(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(GraphSetupError) as caught:
        make()
    assert str(caught.value).startswith(message)


def test_a_chain_of_renames_is_checked_to_its_end() -> None:
    graph: Graph[OrderStateV2, None, str] = Graph(
        nodes=[ReceiveV2, ApproveV2, ShipV2],
        version=3,
        migrations=[Migration(1, renames={"Review": "Check"}), Migration(2, renames={"Check": "Approve"})],
    )
    assert graph.version == 3
    with pytest.raises(GraphSetupError, match="renames node `Review` to `Check`, which becomes `Vet`"):
        Graph[OrderStateV2, None, str](
            nodes=[ReceiveV2, ApproveV2, ShipV2],
            version=3,
            migrations=[Migration(1, renames={"Review": "Check"}), Migration(2, renames={"Check": "Vet"})],
        )


async def test_a_damaged_record_of_a_migrated_run_is_still_a_corrupt_run(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await paused_v1(store, run_id="good")
    stored = list(await store.read("good"))
    await store.create("bad", [*stored[:2], replace(stored[2], body="{not json"), *stored[3:]])
    with pytest.raises(CorruptRunError) as caught:
        await orders_v2.resume(store, "bad")
    assert not isinstance(caught.value, GraphVersionError)
    assert caught.value.record == 3
