"""Child runs: a graph run as a step of another graph (`ctx.run_child`), on node, builder and agent runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal as os_signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pydantic
import pytest
from anyio import wait_all_tasks_blocked

from railyard import BaseNode, End, Graph, GraphRunContext, RetryPolicy, run_worker
from railyard.agent import Agent, RunContext
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.builder import GraphBuilder, StepContext, reduce_list_append
from railyard.children import ChildLink, ChildRunError, child_run_id, child_wait_key, parent_of
from railyard.exceptions import GraphRuntimeError
from railyard.store import RunStatus, RunStore, StoredRecord
from railyard.store.codec import RecordCodec, RecordDecodeError
from railyard.store.memory import MemoryStore
from railyard.store.records import RunCreated
from railyard.store.sqlite import SqliteStore
from railyard.suspension import RunSuspended, cancel, signal, waiting_for
from tests.support.stores import open_test_store

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


# -- the graphs: a builder child (packing) run by a node of a node graph (shipping) -----------


@dataclass
class Shop:
    """The deps of both graphs: where side effects go, and which steps fail, wait or block."""

    workdir: str | None = None
    """Side effects go to `<workdir>/effects.log` (another process's); else to `effects`."""
    effects: list[str] = field(default_factory=list[str])
    fail_in: set[str] = field(default_factory=set[str])
    """Steps that raise, once each."""
    block_in: str | None = None
    """The step that blocks before its side effect: it says so on stdout (or sets `reached`) and waits."""
    reached: anyio.Event | None = None
    release: anyio.Event | None = None


async def act(deps: Shop, name: str) -> None:
    """A step's side effect, after it blocks or fails as `deps` says."""
    if deps.block_in == name:
        deps.block_in = None
        if deps.reached is not None:
            deps.reached.set()
        if deps.release is not None:
            await deps.release.wait()
        else:
            print(f"blocked in {name}", flush=True)
            await anyio.Event().wait()  # until the test kills this process
    if name in deps.fail_in:
        deps.fail_in.discard(name)
        raise RuntimeError(f"{name} broke")
    if deps.workdir is None:
        deps.effects.append(name)
    else:
        fd = os.open(Path(deps.workdir) / "effects.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{name}\n".encode())
        os.close(fd)


g: GraphBuilder[None, Shop, list[str], int] = GraphBuilder(
    name="packing", deps_type=Shop, input_type=list[str], output_type=int
)


@g.step
async def pick(ctx: StepContext[None, Shop, list[str]]) -> list[str]:
    await act(ctx.deps, "pick")
    return sorted(ctx.inputs)


@g.step
async def wrap(ctx: StepContext[None, Shop, list[str]]) -> list[str]:
    await act(ctx.deps, "wrap")
    return [f"wrapped {item}" for item in ctx.inputs]


@g.step
async def label(ctx: StepContext[None, Shop, list[str]]) -> int:
    await act(ctx.deps, "label")
    return len(ctx.inputs)


g.add(
    g.edge_from(g.start_node).to(pick),
    g.edge_from(pick).to(wrap),
    g.edge_from(wrap).to(label),
    g.edge_from(label).to(g.end_node),
)
packing = g.build()


@dataclass
class Order:
    items: list[str]
    boxes: int = 0


@dataclass
class Prepare(BaseNode[Order, Shop, str]):
    async def run(self, ctx: GraphRunContext[Order, Shop]) -> Pack:
        await act(ctx.deps, "prepare")
        return Pack()


@dataclass
class Pack(BaseNode[Order, Shop, str]):
    child_graphs = (packing,)

    async def run(self, ctx: GraphRunContext[Order, Shop]) -> Send:
        ctx.state.boxes = await ctx.run_child(packing, inputs=ctx.state.items, deps=ctx.deps)
        await act(ctx.deps, "pack")
        return Send()


@dataclass
class Send(BaseNode[Order, Shop, str]):
    async def run(self, ctx: GraphRunContext[Order, Shop]) -> End[str]:
        await act(ctx.deps, "send")
        return End(f"sent {ctx.state.boxes} boxes")


shipping = Graph(nodes=[Prepare, Pack, Send], name="shipping")


def main() -> None:
    """The process the acceptance test kills: `DB WORKDIR start|resume [BLOCK_IN]`."""
    db, workdir, mode, *block = sys.argv[1:]

    async def go() -> None:
        store = SqliteStore(db)
        deps = Shop(workdir=workdir, block_in=block[0] if block else None)
        try:
            if mode == "start":
                result = await shipping.run(
                    Prepare(), state=Order(["lamp", "book"]), deps=deps, store=store, run_id="trip"
                )
            else:
                result = await shipping.resume(store, "trip", deps=deps)
            print(result.output, flush=True)
        finally:
            await store.aclose()

    asyncio.run(go())


def _process(db: Path, workdir: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", "from tests.test_children import main; main()", str(db), str(workdir), *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _bodies(records: Sequence[StoredRecord], kind: str) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in records if r.kind == kind]


def _finished_per_step(records: Sequence[StoredRecord]) -> Counter[str]:
    return Counter(str(body["task_id"]) for body in _bodies(records, "step_finished"))


def _finished_nodes(records: Sequence[StoredRecord]) -> list[str]:
    return [str(body["node_id"]) for body in _bodies(records, "step_finished")]


async def _child_id(store: RunStore, parent_id: str) -> str:
    (child,) = [info.run_id for info in await store.runs() if info.run_id != parent_id]
    return child


# -- the acceptance test ----------------------------------------------------------------------


async def test_a_builder_child_of_a_node_run_killed_mid_child_resumes_without_repeating_a_finished_step(
    tmp_path: Path,
) -> None:
    db, workdir = tmp_path / "runs.db", tmp_path / "work"
    workdir.mkdir()
    first = _process(db, workdir, "start", "wrap")
    try:
        assert first.stdout is not None
        line = await anyio.to_thread.run_sync(first.stdout.readline)
        assert line == "blocked in wrap\n", first.stderr.read() if first.stderr else ""
        first.send_signal(os_signal.SIGKILL)  # mid-child: `pick` finished, `wrap` in flight
    finally:
        first.kill()
        await anyio.to_thread.run_sync(first.communicate)
    assert first.returncode == -os_signal.SIGKILL
    assert (workdir / "effects.log").read_text().split() == ["prepare", "pick"]

    store = SqliteStore(db)
    child_id = await _child_id(store, "trip")
    assert {info.run_id: info.status for info in await store.runs()} == {
        "trip": RunStatus.RUNNING,
        child_id: RunStatus.RUNNING,
    }
    assert _finished_nodes(await store.read(child_id)) == ["__start__", "pick"]
    await store.aclose()

    second = _process(db, workdir, "resume")
    out, err = await anyio.to_thread.run_sync(lambda: second.communicate(timeout=120))
    assert second.returncode == 0, err
    assert out == "sent 2 boxes\n"

    # every side effect once: the finished steps did not run again, the one in flight had not acted
    assert Counter((workdir / "effects.log").read_text().split()) == dict.fromkeys(
        ["prepare", "pick", "wrap", "label", "pack", "send"], 1
    )
    store = SqliteStore(db)
    parent, child = await store.read("trip"), await store.read(child_id)
    for records in (parent, child):
        assert set(_finished_per_step(records).values()) == {1}  # no step of either finished twice
    assert _finished_nodes(parent) == ["Prepare", "Pack", "Send"]
    assert _finished_nodes(child) == ["__start__", "pick", "wrap", "label", "__end__"]
    started = Counter(str(body["task_id"]) for body in _bodies(child, "step_started"))
    pick_step = next(str(b["task_id"]) for b in _bodies(child, "step_finished") if b["node_id"] == "pick")
    assert started[pick_step] == 1  # the finished child step was not even started again
    pack_step = next(str(b["task_id"]) for b in _bodies(parent, "step_finished") if b["node_id"] == "Pack")
    assert child_id == child_run_id("trip", pack_step, "0")
    assert await parent_of(store, child_id) == ChildLink("trip", pack_step, "0")
    assert await parent_of(store, "trip") is None
    assert {info.run_id: info.status for info in await store.runs()} == {
        "trip": RunStatus.ENDED,
        child_id: RunStatus.ENDED,
    }
    await store.aclose()


# -- durable children, on every store ---------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "file", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    made = open_test_store(request.param, tmp_path, request)
    yield made
    await made.aclose()


async def test_a_durable_child_is_a_linked_run_of_its_own_in_the_parent_s_store(store: RunStore) -> None:
    deps = Shop()
    result = await shipping.run(Prepare(), state=Order(["b", "a", "c"]), deps=deps, store=store, run_id="p1")
    assert result.output == "sent 3 boxes"
    assert deps.effects == ["prepare", "pick", "wrap", "label", "pack", "send"]
    child_id = await _child_id(store, "p1")
    link = await parent_of(store, child_id)
    assert link is not None and link.run_id == "p1" and link.key == "0"
    assert link.step_id.startswith("Pack:")
    assert child_id == child_run_id("p1", link.step_id, "0")
    infos = {info.run_id: info for info in await store.runs()}
    assert infos[child_id].graph == "packing" and infos[child_id].status is RunStatus.ENDED
    assert json.loads((await store.read(child_id))[0].body)["parent"] == {
        "run_id": "p1",
        "step_id": link.step_id,
        "key": "0",
    }


async def test_a_child_that_ended_gives_its_stored_output_when_the_step_runs_again(store: RunStore) -> None:
    deps = Shop(fail_in={"pack"})  # the parent's step fails after its child ended
    with pytest.raises(RuntimeError, match="pack broke"):
        await shipping.run(Prepare(), state=Order(["x", "y"]), deps=deps, store=store, run_id="p2")
    child_id = await _child_id(store, "p2")
    child_records = list(await store.read(child_id))
    assert child_records[-1].status is RunStatus.ENDED
    assert deps.effects == ["prepare", "pick", "wrap", "label"]

    result = await shipping.resume(store, "p2", deps=deps)
    assert result.output == "sent 2 boxes"
    assert deps.effects == ["prepare", "pick", "wrap", "label", "pack", "send"]  # the child ran nothing again
    assert list(await store.read(child_id)) == child_records  # and nothing was written to it


async def test_a_child_that_fails_fails_the_step_naming_the_child_and_resumes_after_a_fix(store: RunStore) -> None:
    deps = Shop(fail_in={"wrap"})
    with pytest.raises(ChildRunError) as info:
        await shipping.run(Prepare(), state=Order(["x"]), deps=deps, store=store, run_id="p3")
    child_id = await _child_id(store, "p3")
    error = info.value
    assert error.child_run_id == child_id and error.parent_run_id == "p3" and error.graph == "packing"
    assert f"Child run {child_id!r} of graph `packing`" in str(error)
    assert "failed: RuntimeError: wrap broke" in str(error)
    assert "resume run 'p3'" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    statuses = {i.run_id: i.status for i in await store.runs()}
    assert statuses == {"p3": RunStatus.FAILED, child_id: RunStatus.FAILED}
    detail = await store.run("p3")
    assert detail.error is not None and child_id in detail.error.message

    result = await shipping.resume(store, "p3", deps=deps)  # `wrap` no longer fails
    assert result.output == "sent 1 boxes"
    assert deps.effects == ["prepare", "pick", "wrap", "label", "pack", "send"]  # `pick` did not run again
    assert set(_finished_per_step(await store.read(child_id)).values()) == {1}


async def test_a_cancelled_child_fails_the_step(store: RunStore) -> None:
    deps = Shop(fail_in={"wrap"})
    with pytest.raises(ChildRunError):
        await shipping.run(Prepare(), state=Order(["x"]), deps=deps, store=store, run_id="p4")
    child_id = await _child_id(store, "p4")
    await cancel(store, child_id, "out of stock")
    with pytest.raises(ChildRunError, match=r"was cancelled \(out of stock\)") as info:
        await shipping.resume(store, "p4", deps=deps)
    assert info.value.child_run_id == child_id


# -- keys, retries, in memory, and wrong calls --------------------------------------------------


@dataclass
class PackTwice(BaseNode[Order, Shop, str]):
    async def run(self, ctx: GraphRunContext[Order, Shop]) -> End[str]:
        first = await ctx.run_child(packing, inputs=["a"], deps=ctx.deps)
        second = await ctx.run_child(packing, inputs=["b", "c"], deps=ctx.deps)
        gift = await ctx.run_child(packing, inputs=["d", "e", "f"], deps=ctx.deps, key="gift")
        await act(ctx.deps, "twice")
        return End(f"{first} {second} {gift}")


twice = Graph(nodes=[PackTwice], name="twice")


async def test_each_call_of_a_step_has_its_own_child_and_finds_it_again() -> None:
    store = MemoryStore()
    deps = Shop(fail_in={"twice"})
    with pytest.raises(RuntimeError, match="twice broke"):
        await twice.run(PackTwice(), state=Order([]), deps=deps, store=store, run_id="t")
    links = {info.run_id: await parent_of(store, info.run_id) for info in await store.runs() if info.run_id != "t"}
    assert sorted(link.key for link in links.values() if link is not None) == ["0", "1", "gift"]
    assert len({link.step_id for link in links.values() if link is not None}) == 1
    assert all(run_id == child_run_id("t", link.step_id, link.key) for run_id, link in links.items() if link)
    deps.effects.clear()
    assert (await twice.resume(store, "t", deps=deps)).output == "1 2 3"
    assert deps.effects == ["twice"]  # each call found its own ended child


@dataclass
class PackWithRetries(BaseNode[Order, Shop, str]):
    retry_policy = RetryPolicy(attempts=2, initial_interval=0, jitter=0)

    async def run(self, ctx: GraphRunContext[Order, Shop]) -> End[str]:
        boxes = await ctx.run_child(packing, inputs=ctx.state.items, deps=ctx.deps)
        return End(f"{boxes} on attempt {ctx.attempt}")


retried = Graph(nodes=[PackWithRetries], name="retried")


async def test_a_step_s_next_attempt_carries_on_the_child_its_last_attempt_left() -> None:
    store = MemoryStore()
    deps = Shop(fail_in={"label"})
    result = await retried.run(PackWithRetries(), state=Order(["x", "y"]), deps=deps, store=store, run_id="r")
    assert result.output == "2 on attempt 2"
    assert deps.effects == ["pick", "wrap", "label"]  # attempt 2 resumed the child at `label`
    assert len(await store.runs()) == 2  # one child: both attempts' first call


async def test_a_parent_in_memory_runs_its_child_in_memory() -> None:
    deps = Shop()
    result = await shipping.run(Prepare(), state=Order(["a", "b"]), deps=deps)
    assert result.output == "sent 2 boxes"
    assert deps.effects == ["prepare", "pick", "wrap", "label", "pack", "send"]
    with pytest.raises(ChildRunError, match=r"A child run of graph `packing`, run in memory by step `Pack:") as info:
        await shipping.run(Prepare(), state=Order(["a"]), deps=Shop(fail_in={"wrap"}))
    assert info.value.child_run_id is None and isinstance(info.value.__cause__, RuntimeError)


async def test_wrong_calls_say_what_to_do() -> None:
    nameless_builder: GraphBuilder[None, None, None, int] = GraphBuilder(output_type=int)

    @nameless_builder.step
    async def one(ctx: StepContext[None, None, None]) -> int:
        return 1

    nameless_builder.add(nameless_builder.edge_from(nameless_builder.start_node).to(one))
    nameless_builder.add(nameless_builder.edge_from(one).to(nameless_builder.end_node))
    nameless = nameless_builder.build()

    @dataclass
    class Runs(BaseNode[None, None, int]):
        how: str = "nameless"

        async def run(self, ctx: GraphRunContext) -> End[int]:
            if self.how == "nameless":
                return End(await ctx.run_child(nameless))
            if self.how == "positional":
                return End(await ctx.run_child(nameless, 5))  # type: ignore[call-overload]
            return End(await ctx.run_child(object()))  # type: ignore[call-overload]

    graph = Graph(nodes=[Runs], name="runs")
    assert (await graph.run(Runs())).output == 1  # in memory, a graph needs no name
    store = MemoryStore()
    with pytest.raises(GraphRuntimeError, match="runs a child graph that has no name"):
        await graph.run(Runs(), store=store, run_id="n")
    with pytest.raises(TypeError, match=r"inputs by keyword: `ctx.run_child\(graph, inputs=5\)`"):
        await graph.run(Runs("positional"))
    with pytest.raises(TypeError, match="runs a node `Graph`, a builder `Graph` or an `Agent`; got object"):
        await graph.run(Runs("object"))


async def test_a_run_kept_where_a_child_cannot_be_says_where_to_keep_it(tmp_path: Path) -> None:
    from railyard import FileStatePersistence

    persistence: FileStatePersistence[Order, str] = FileStatePersistence(tmp_path / "run.json")
    with pytest.raises(GraphRuntimeError, match=r"holds one run\)\. Run the parent with `store=` a store of many"):
        await shipping.run(Prepare(), state=Order(["x"]), deps=Shop(), persistence=persistence)


# -- a builder parent, a node child ------------------------------------------------------------


@dataclass
class Count(BaseNode[None, None, int]):
    items: list[str]

    async def run(self, ctx: GraphRunContext) -> End[int]:
        return End(len(self.items))


counting = Graph(nodes=[Count], name="counting")

b: GraphBuilder[None, None, list[list[str]], list[int]] = GraphBuilder(
    name="totals", input_type=list[list[str]], output_type=list[int]
)


@b.step(child_graphs=[counting])
async def count_each(ctx: StepContext[None, None, list[str]]) -> int:
    return await ctx.run_child(counting, Count(ctx.inputs))


totals_join = b.join(reduce_list_append, initial_factory=list[int], node_id="collect")
b.add(
    b.edge_from(b.start_node).map().to(count_each),
    b.edge_from(count_each).to(totals_join),
    b.edge_from(totals_join).to(b.end_node),
)
totals = b.build()


async def test_builder_steps_in_a_fan_out_run_node_children(store: RunStore) -> None:
    result = await totals.run(inputs=[["a"], ["b", "c"], []], store=store, run_id="tot")
    assert sorted(result) == [0, 1, 2]
    children = [info for info in await store.runs() if info.run_id != "tot"]
    assert len(children) == 3 and {info.graph for info in children} == {"counting"}
    links = [await parent_of(store, info.run_id) for info in children]
    assert len({link.step_id for link in links if link is not None}) == 3  # one per map item


# -- an agent's tool runs a child graph ----------------------------------------------------------


def _packing_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]
    if not returns:
        return ModelResponse([ToolCallPart("pack", {"items": ["mug", "pen"]}, tool_call_id="call-1")])
    return ModelResponse([TextPart(f"packed into {returns[0].content} boxes")])


clerk = Agent(FunctionModel(_packing_model), deps_type=Shop, name="clerk")


@clerk.tool
async def pack(ctx: RunContext[Shop], items: list[str]) -> int:
    return await ctx.run_child(packing, inputs=items, deps=ctx.deps)


async def test_an_agent_s_tool_runs_a_child_graph() -> None:
    deps = Shop()
    assert (await clerk.run("pack my things", deps=deps)).output == "packed into 2 boxes"
    assert deps.effects == ["pick", "wrap", "label"]

    store = MemoryStore()
    result = await clerk.run("pack my things", deps=deps, store=store, run_id="a1")
    assert result.output == "packed into 2 boxes"
    child_id = await _child_id(store, "a1")
    link = await parent_of(store, child_id)
    assert link is not None and link.run_id == "a1" and link.key == "pack:call-1:0"


@dataclass
class Ask(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        return End(await ctx.run_child(clerk, "pack my things", deps=Shop()))


asking = Graph(nodes=[Ask], name="asking")


async def test_a_node_runs_an_agent_as_its_child(store: RunStore) -> None:
    assert (await asking.run(Ask(), store=store, run_id="ask")).output == "packed into 2 boxes"
    by_graph = {info.graph: info for info in await store.runs()}
    assert set(by_graph) == {"asking", "clerk", "packing"}  # the agent's tool ran a grandchild
    grandchild = await parent_of(store, by_graph["packing"].run_id)
    assert grandchild is not None and grandchild.run_id == by_graph["clerk"].run_id


class Parcel(pydantic.BaseModel):
    boxes: int


def _parcel_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse([ToolCallPart(info.result_tools[0].name, {"boxes": 4})])


parcels = Agent(FunctionModel(_parcel_model), result_type=Parcel, name="parcels")


@dataclass
class AskParcel(BaseNode[None, Shop, str]):
    async def run(self, ctx: GraphRunContext[None, Shop]) -> End[str]:
        parcel = await ctx.run_child(parcels, "how many?")
        await act(ctx.deps, "asked")
        return End(f"{parcel.boxes} boxes ({type(parcel).__name__})")


asking_parcels = Graph(nodes=[AskParcel], name="asking_parcels")


async def test_an_agent_child_s_stored_output_comes_back_as_its_result_type() -> None:
    store = MemoryStore()
    deps = Shop(fail_in={"asked"})
    with pytest.raises(RuntimeError, match="asked broke"):
        await asking_parcels.run(AskParcel(), deps=deps, store=store, run_id="ap")
    assert (await asking_parcels.resume(store, "ap", deps=deps)).output == "4 boxes (Parcel)"


# -- a child that waits for a signal ----------------------------------------------------------


class Decision(pydantic.BaseModel):
    approved: bool
    note: str = ""


a: GraphBuilder[None, None, None, str] = GraphBuilder(name="approval", output_type=str)


@a.step
async def first_look(ctx: StepContext[None, None, None]) -> str:
    decision = await ctx.wait_for("approval", Decision, prompt="First look?")
    return decision.note


@a.step
async def second_look(ctx: StepContext[None, None, str]) -> str:
    decision = await ctx.wait_for("approval", Decision, prompt="Second look?")
    return f"{ctx.inputs}+{decision.note}"


a.add(
    a.edge_from(a.start_node).to(first_look),
    a.edge_from(first_look).to(second_look),
    a.edge_from(second_look).to(a.end_node),
)
approval = a.build()


@dataclass
class Approve(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        return End(await ctx.run_child(approval))


approving = Graph(nodes=[Approve], name="approving")


async def _suspended(run: Awaitable[object]) -> RunSuspended:
    with pytest.raises(RunSuspended) as info:
        await run
    return info.value


async def test_a_child_that_waits_makes_its_parent_wait_and_an_answer_to_the_parent_reaches_it(
    store: RunStore,
) -> None:
    suspended = await _suspended(approving.run(Approve(), store=store, run_id="ok"))
    child_id = await _child_id(store, "ok")
    key = child_wait_key(child_id, "approval")
    assert suspended.run_id == "ok" and suspended.waiting.key == key == f"{child_id}/approval"
    assert suspended.waiting.prompt == f"First look? (child run {child_id!r} waits for 'approval')"
    assert f"signal(store, 'ok', {key!r}, payload)" in str(suspended)
    (waiting,) = await waiting_for(store, "ok")
    assert waiting.payload_type == f"{__name__}:Decision"  # the parent checks the child's payload type
    assert {i.run_id: i.status for i in await store.runs()} == {
        "ok": RunStatus.SUSPENDED,
        child_id: RunStatus.SUSPENDED,
    }
    assert await run_worker([approving, approval], store) == []  # neither is taken while they wait

    await signal(store, "ok", key, {"approved": True, "note": "one"})
    # the worker drives the parent, which passes the answer on; the child waits again, for the same key
    assert await run_worker([approving], store) == ["ok"]
    (waiting,) = await waiting_for(store, "ok")
    assert waiting.key == key and waiting.prompt is not None and waiting.prompt.startswith("Second look?")
    assert await run_worker([approving], store) == []  # the first answer is not passed on twice

    await signal(store, "ok", key, {"approved": True, "note": "two"})
    assert await run_worker([approving], store) == ["ok"]
    assert {i.run_id: i.status for i in await store.runs()} == {"ok": RunStatus.ENDED, child_id: RunStatus.ENDED}
    passed = _bodies(await store.read(child_id), "signal_received")
    assert [(body["payload"], body["from_parent"]) for body in passed] == [
        ({"approved": True, "note": "one"}, "ok"),
        ({"approved": True, "note": "two"}, "ok"),
    ]
    records = await store.read("ok")
    ended = [body for body in _bodies(records, "step_finished") if body["end"] is not None]
    assert [body["end"] for body in ended] == [{"data": "one+two"}]


async def test_a_waiting_child_answered_directly_goes_on_when_its_parent_is_resumed() -> None:
    store = MemoryStore()
    await _suspended(approving.run(Approve(), store=store, run_id="direct"))
    child_id = await _child_id(store, "direct")
    await signal(store, child_id, "approval", {"approved": True, "note": "one"})
    await _suspended(approving.resume(store, "direct"))  # the child went on, and waits again
    await signal(store, child_id, "approval", {"approved": True, "note": "two"})
    assert (await approving.resume(store, "direct")).output == "one+two"


async def test_a_parent_answer_the_child_cannot_take_fails_the_step() -> None:
    store = MemoryStore()
    await _suspended(approving.run(Approve(), store=store, run_id="bad"))
    child_id = await _child_id(store, "bad")
    key = child_wait_key(child_id, "approval")
    await signal(store, "bad", key, {"approved": True})
    await cancel(store, child_id, "withdrawn")
    with pytest.raises(ChildRunError, match="withdrawn"):
        await approving.resume(store, "bad")


sg: GraphBuilder[None, None, str, str] = GraphBuilder(name="signing", input_type=str, output_type=str)


@sg.step
async def sign(ctx: StepContext[None, None, str]) -> str:
    decision = await ctx.wait_for("signature", Decision, prompt=f"Sign {ctx.inputs}?")
    return f"{ctx.inputs}:{decision.note}"


sg.add(sg.edge_from(sg.start_node).to(sign), sg.edge_from(sign).to(sg.end_node))
signing = sg.build()

fg: GraphBuilder[None, None, list[str], list[str]] = GraphBuilder(
    name="contracts", input_type=list[str], output_type=list[str]
)


@fg.step(child_graphs=[signing])
async def get_signed(ctx: StepContext[None, None, str]) -> str:
    return await ctx.run_child(signing, inputs=ctx.inputs)


signed = fg.join(reduce_list_append, initial_factory=list[str], node_id="signed")
fg.add(
    fg.edge_from(fg.start_node).map().to(get_signed),
    fg.edge_from(get_signed).to(signed),
    fg.edge_from(signed).to(fg.end_node),
)
contracts = fg.build()


async def test_children_of_a_fan_out_wait_at_once_and_are_answered_one_by_one(store: RunStore) -> None:
    suspended = await _suspended(contracts.run(inputs=["lease", "loan"], store=store, run_id="c"))
    keys = sorted(wait.key for wait in suspended.waits)
    assert len(keys) == 2 and all(key.endswith("/signature") for key in keys)  # one key a child
    prompts = {wait.key: wait.prompt for wait in suspended.waits}
    first = next(key for key, prompt in prompts.items() if prompt is not None and prompt.startswith("Sign lease?"))
    await signal(store, "c", first, {"approved": True, "note": "ok"})
    (still,) = (await _suspended(contracts.resume(store, "c"))).waits
    assert still.key != first and still.prompt is not None and still.prompt.startswith("Sign loan?")
    await signal(store, "c", still.key, {"approved": True, "note": "fine"})
    assert sorted(await contracts.resume(store, "c")) == ["lease:ok", "loan:fine"]


# -- who drives a child -------------------------------------------------------------------------


async def test_a_parent_waits_while_another_driver_holds_its_child() -> None:
    store = MemoryStore()
    deps = Shop(fail_in={"wrap"})
    with pytest.raises(ChildRunError) as info:
        await shipping.run(Prepare(), state=Order(["x"]), deps=deps, store=store, run_id="held")
    child_id = info.value.child_run_id
    assert child_id is not None
    done: list[str] = []

    async def resume() -> None:
        done.append((await shipping.resume(store, "held", deps=deps)).output)

    async with anyio.create_task_group() as group, store.lock(child_id):  # another driver has the child
        group.start_soon(resume)
        await wait_all_tasks_blocked()
        assert done == [] and deps.effects == ["prepare", "pick"]
        # let go: the parent takes the child up
    assert done == ["sent 1 boxes"]
    assert deps.effects == ["prepare", "pick", "wrap", "label", "pack", "send"]


async def test_a_worker_finishes_a_child_whose_parent_died_and_the_parent_takes_its_output() -> None:
    store = MemoryStore()
    deps = Shop(block_in="wrap", reached=anyio.Event(), release=anyio.Event())
    async with anyio.create_task_group() as group:
        group.start_soon(
            lambda: shipping.run(Prepare(), state=Order(["x", "y"]), deps=deps, store=store, run_id="died")
        )
        await deps.reached.wait()  # type: ignore[union-attr]
        group.cancel_scope.cancel()  # the parent's driver dies mid-child
    child_id = await _child_id(store, "died")
    cut_off = {RunStatus.RUNNING, RunStatus.STALLED}  # its driver is gone: how a store reports it
    assert {i.run_id for i in await store.runs() if i.status in cut_off} == {"died", child_id}
    assert await run_worker([packing], store, deps=deps) == [child_id]  # a worker that knows the child's graph
    assert deps.effects == ["prepare", "pick", "wrap", "label"]
    assert (await shipping.resume(store, "died", deps=deps)).output == "sent 2 boxes"
    assert deps.effects == ["prepare", "pick", "wrap", "label", "pack", "send"]


async def test_a_worker_that_knows_only_the_parent_finishes_both() -> None:
    store = MemoryStore()
    deps = Shop(block_in="wrap", reached=anyio.Event(), release=anyio.Event())
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: shipping.run(Prepare(), state=Order(["x"]), deps=deps, store=store, run_id="w"))
        await deps.reached.wait()  # type: ignore[union-attr]
        group.cancel_scope.cancel()  # the parent's driver dies mid-child
    assert await run_worker([shipping], store, deps=deps) == ["w"]
    assert deps.effects == ["prepare", "pick", "wrap", "label", "pack", "send"]
    assert {i.status for i in await store.runs()} == {RunStatus.ENDED}


# -- the record --------------------------------------------------------------------------------


def test_run_created_carries_the_parent_only_when_there_is_one() -> None:
    codec = RecordCodec((), None)
    plain = RunCreated("g", "fp", "1.0", 2, 1.5)
    assert "parent" not in codec.dump(plain)
    assert codec.decode(codec.encode(plain)) == plain
    linked = RunCreated("g", "fp", "1.0", 2, 1.5, parent={"run_id": "p", "step_id": "s", "key": "0"})
    assert codec.dump(linked)["parent"] == {"run_id": "p", "step_id": "s", "key": "0"}
    assert codec.decode(codec.encode(linked)) == linked
    old = '{"kind":"run_created","graph":"g","fingerprint":null,"railyard_version":"0.1.0","dialect":2,"ts":1.0}'
    loaded = codec.decode(old)
    assert isinstance(loaded, RunCreated) and loaded.parent is None
    with pytest.raises(RecordDecodeError, match="field `parent`: must be an object of strings"):
        codec.decode(old[:-1] + ',"parent":[1]}')


def test_child_run_ids_are_stable_and_differ_by_step_and_key() -> None:
    one = child_run_id("order-7", "Pack:0123", "0")
    assert one == child_run_id("order-7", "Pack:0123", "0")
    assert one.startswith("order-7.child-") and len(one) == len("order-7.child-") + 20
    assert len({one, child_run_id("order-7", "Pack:0123", "1"), child_run_id("order-7", "Pack:4567", "0")}) == 3


# -- diagrams -----------------------------------------------------------------------------------


def test_a_node_that_runs_a_child_is_a_composite_state_holding_the_child_s_diagram() -> None:
    assert shipping.mermaid_code(start_node=Prepare) == (
        "---\n"
        "title: shipping\n"
        "---\n"
        "stateDiagram-v2\n"
        "  [*] --> Prepare\n"
        "  Prepare --> Pack\n"
        "  state Pack {\n"
        "    Pack_pick: pick\n"
        "    Pack_wrap: wrap\n"
        "    Pack_label: label\n"
        "    [*] --> Pack_pick\n"
        "    Pack_pick --> Pack_wrap\n"
        "    Pack_wrap --> Pack_label\n"
        "    Pack_label --> [*]\n"
        "  }\n"
        "  Pack --> Send\n"
        "  Send --> [*]"
    )


def test_a_builder_step_that_runs_a_child_is_a_composite_state() -> None:
    assert totals.render() == (
        "stateDiagram-v2\n"
        "  state map <<fork>>\n"
        "  state count_each {\n"
        "    count_each_Count: Count\n"
        "    count_each_Count --> [*]\n"
        "  }\n"
        "  state collect <<join>>\n"
        "\n"
        "  [*] --> map\n"
        "  map --> count_each\n"
        "  count_each --> collect\n"
        "  collect --> [*]"
    )


def test_several_children_are_regions_and_an_agent_is_drawn_from_its_first_node() -> None:
    @dataclass
    class Both(BaseNode[None, None, int]):
        child_graphs = (counting, clerk)

        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(0)

    code = Graph(nodes=[Both]).mermaid_code(title=False, infer_name=False)
    assert code == (
        "stateDiagram-v2\n"
        "  state Both {\n"
        "    Both_1_Count: Count\n"
        "    Both_1_Count --> [*]\n"
        "    --\n"
        "    Both_2_UserPromptNode: UserPromptNode\n"
        "    [*] --> Both_2_UserPromptNode\n"
        "    Both_2_UserPromptNode --> Both_2_ModelRequestNode\n"
        "    Both_2_ModelRequestNode: ModelRequestNode\n"
        "    Both_2_ModelRequestNode --> Both_2_CallToolsNode\n"
        "    Both_2_CallToolsNode: CallToolsNode\n"
        "    Both_2_CallToolsNode --> Both_2_ModelRequestNode\n"
        "    Both_2_CallToolsNode --> [*]\n"
        "  }\n"
        "  Both --> [*]"
    )


def test_a_graph_that_runs_itself_is_drawn_once() -> None:
    @dataclass
    class Again(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(0)

    recursive = Graph(nodes=[Again], name="recursive")
    Again.child_graphs = (recursive,)
    assert recursive.mermaid_code() == "---\ntitle: recursive\n---\nstateDiagram-v2\n  Again --> [*]"


async def test_cancelling_a_parent_cancels_its_waiting_child(store: RunStore) -> None:
    from railyard import RunCancelled
    from railyard.suspension import cancel

    await _suspended(approving.run(Approve(), store=store, run_id="gone"))
    child_id = await _child_id(store, "gone")
    await cancel(store, "gone", "order withdrawn")
    assert {i.run_id: i.status for i in await store.runs()} == {
        "gone": RunStatus.CANCELLED,
        child_id: RunStatus.CANCELLED,
    }
    assert (await store.run(child_id)).cancel_reason == "its parent run 'gone' was cancelled: order withdrawn"
    with pytest.raises(RunCancelled):
        await approval.resume(store, child_id)


@dataclass
class ChargeThenConfirm(BaseNode[None, list[str], str]):
    """Runs a child that charges a card once, then waits for a confirmation."""

    async def run(self, ctx: GraphRunContext[None, list[str]]) -> End[str]:
        charged = await ctx.run_child(charging, Charge(), deps=ctx.deps)
        await ctx.wait_for("confirm", Decision)
        return End(charged)


@dataclass
class Charge(BaseNode[None, list[str], str]):
    async def run(self, ctx: GraphRunContext[None, list[str]]) -> End[str]:
        ctx.deps.append("charged the card")
        return End("charged")


charging = Graph(nodes=[Charge], name="charging")
confirming = Graph(nodes=[ChargeThenConfirm], name="confirming")


async def test_prune_keeps_an_ended_child_its_unfinished_parent_still_needs_and_delete_takes_both(
    store: RunStore,
) -> None:
    effects: list[str] = []
    await _suspended(confirming.run(ChargeThenConfirm(), deps=effects, store=store, run_id="o1"))
    child_id = await _child_id(store, "o1")
    assert await store.prune(older_than=0) == []  # the child ended, but its parent waits and reads it again
    await signal(store, "o1", "confirm", {"approved": True})
    assert (await confirming.resume(store, "o1", deps=effects)).output == "charged"
    assert effects == ["charged the card"]  # once: the parent took the child's stored output
    assert sorted(await store.prune(older_than=0)) == ["o1", child_id]  # both finished: they go together
    await _suspended(confirming.run(ChargeThenConfirm(), deps=effects, store=store, run_id="o2"))
    await store.delete("o2")
    assert await store.runs() == []


async def test_cancelling_a_parent_whose_child_is_in_a_long_step_cancels_both(tmp_path: Path) -> None:
    from railyard import RunCancelled, SqliteStore
    from railyard.suspension import cancel

    entered = anyio.Event()

    @dataclass
    class Slow(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> End[str]:
            entered.set()
            await anyio.sleep_forever()
            return End("never")  # pragma: no cover

    slow = Graph(nodes=[Slow], name="slow")

    @dataclass
    class Wrap(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> End[str]:
            return End(await ctx.run_child(slow, Slow()))

    driver = SqliteStore(tmp_path / "runs.db", lease=0.3)
    raised: list[BaseException] = []

    async def drive() -> None:
        try:
            await Graph(nodes=[Wrap], name="wrap").run(Wrap(), store=driver, run_id="p")
        except RunCancelled as error:
            raised.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(drive)
        await entered.wait()
        await cancel(SqliteStore(tmp_path / "runs.db"), "p", "stop")
    assert len(raised) == 1
    assert {
        i.run_id.split(".")[0] + ("/child" if ".child-" in i.run_id else ""): i.status for i in await driver.runs()
    } == {
        "p": RunStatus.CANCELLED,
        "p/child": RunStatus.CANCELLED,
    }
    await driver.aclose()
