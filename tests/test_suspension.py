"""Waiting for a signal: `ctx.wait_for`, suspended runs, `signal`, on node and builder runs and every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pydantic
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, RunLocked, run_worker
from railyard.agent import Agent, RunContext
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.builder import GraphBuilder, StepContext
from railyard.exceptions import GraphRuntimeError, RunNotFound
from railyard.store import RunStatus, RunStore
from railyard.store.sqlite import SqliteStore
from railyard.suspension import RunSuspended, SignalError, signal, waiting_for
from tests.support.stores import open_test_store

pytestmark = pytest.mark.anyio


class Decision(pydantic.BaseModel):
    approved: bool
    reason: str = ""


@dataclass
class OrderState:
    visits: list[str] = field(default_factory=list[str])


@dataclass
class Review(BaseNode[OrderState, None, str]):
    async def run(self, ctx: GraphRunContext[OrderState]) -> End[str]:
        ctx.state.visits.append("review")
        decision = await ctx.wait_for("approval", Decision, prompt="Approve order 7?")
        return End("shipped" if decision.approved else f"rejected: {decision.reason}")


orders = Graph(nodes=[Review], name="orders")


@pytest.fixture(params=["sqlite", "file", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    made = open_test_store(request.param, tmp_path, request)
    yield made
    await made.aclose()  # type: ignore[attr-defined]


async def _suspend(store: RunStore) -> RunSuspended:
    with pytest.raises(RunSuspended) as info:
        await orders.run(Review(), state=OrderState(), store=store, run_id="order-7")
    return info.value


async def test_a_waiting_node_suspends_the_run_and_a_signal_lets_a_worker_finish_it(store: RunStore) -> None:
    suspended = await _suspend(store)
    assert suspended.run_id == "order-7"
    assert suspended.waiting.key == "approval" and suspended.waiting.prompt == "Approve order 7?"
    assert str(suspended).startswith("Run 'order-7' is suspended: step `Review:")
    assert "Answer it with `await signal(store, 'order-7', 'approval', payload)`" in str(suspended)
    (info,) = await store.runs()
    assert info.status is RunStatus.SUSPENDED
    (waiting,) = await waiting_for(store, "order-7")
    assert waiting.payload_type == f"{__name__}:Decision"
    assert waiting.payload_schema["required"] == ["approved"]
    assert await run_worker([orders], store) == []  # a worker never takes a suspended run

    await signal(store, "order-7", "approval", {"approved": True})
    assert [i.status for i in await store.runs()] == [RunStatus.WAITING]
    assert await waiting_for(store, "order-7") == []
    assert await run_worker([orders], store) == ["order-7"]
    (info,) = await store.runs()
    assert info.status is RunStatus.ENDED


async def test_resuming_runs_the_waiting_step_again_with_the_payload(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await _suspend(store)
    with pytest.raises(RunSuspended):  # no answer yet: resuming suspends it again
        await orders.resume(store, "order-7")
    await signal(store, "order-7", "approval", {"approved": False, "reason": "out of stock"})
    result = await orders.resume(store, "order-7")
    assert result.output == "rejected: out of stock"
    # the step ran again from its start, on the state as it was before it (what an unfinished step did is not kept)
    assert result.state.visits == ["review"]
    await store.aclose()


@pytest.mark.parametrize(
    ("key", "payload", "message"),
    [
        ("shipping", {"approved": True}, r"^Run 'order-7' does not wait for 'shipping'; it waits for 'approval'\.$"),
        (
            "approval",
            {"approved": "perhaps"},
            r"^The payload for 'approval' of run 'order-7' is not a valid `tests\.test_suspension:Decision`: "
            r"1 validation error for Decision\napproved\n",
        ),
    ],
)
async def test_a_wrong_key_or_payload_is_refused_and_nothing_is_stored(
    tmp_path: Path, key: str, payload: object, message: str
) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await _suspend(store)
    before = await store.read("order-7")
    with pytest.raises(SignalError, match=message):
        await signal(store, "order-7", key, payload)
    assert await store.read("order-7") == before
    await store.aclose()


async def test_signal_names_an_unknown_run_and_refuses_a_run_a_driver_holds(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunNotFound):
        await signal(store, "nope", "approval", {"approved": True})
    await _suspend(store)
    async with store.lock("order-7"):
        with pytest.raises(RunLocked):
            await signal(SqliteStore(tmp_path / "runs.db"), "order-7", "approval", {"approved": True})
    await store.aclose()


async def test_a_payload_type_that_cannot_be_imported_is_given_to_signal(tmp_path: Path) -> None:
    class LocalAnswer(pydantic.BaseModel):
        value: int

    @dataclass
    class Ask(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End((await ctx.wait_for("number", LocalAnswer)).value)

    graph = Graph(nodes=[Ask], name="ask")
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended):
        await graph.run(Ask(), store=store, run_id="a")
    with pytest.raises(SignalError, match=r"its type `.*LocalAnswer` cannot be imported here\. Pass it"):
        await signal(store, "a", "number", {"value": 4})
    await signal(store, "a", "number", {"value": 4}, payload_type=LocalAnswer)
    assert (await graph.resume(store, "a")).output == 4
    await store.aclose()


async def test_waiting_needs_a_durable_run() -> None:
    with pytest.raises(
        GraphRuntimeError, match=r"`wait_for\('approval', \.\.\.\)` in step `Review:.*` needs a durable"
    ):
        await orders.run(Review(), state=OrderState())


async def test_a_builder_step_waits_and_goes_on_with_the_payload(tmp_path: Path) -> None:
    g = GraphBuilder(input_type=int, output_type=str, name="quotes")

    @g.step
    async def quote(ctx: StepContext[None, None, int]) -> str:
        decision = await ctx.wait_for("discount", Decision, prompt=f"Discount on {ctx.inputs}?")
        return f"{ctx.inputs} at {'90%' if decision.approved else '100%'}"

    g.add(g.edge_from(g.start_node).to(quote), g.edge_from(quote).to(g.end_node))
    graph = g.build()
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended) as info:
        await graph.run(inputs=120, store=store, run_id="q")
    assert info.value.waiting.prompt == "Discount on 120?"
    assert [i.status for i in await store.runs()] == [RunStatus.SUSPENDED]
    await signal(store, "q", "discount", {"approved": True})
    assert await graph.resume(store, "q") == "120 at 90%"
    await store.aclose()


def test_a_run_waits_in_one_process_a_worker_leaves_it_until_a_third_signals_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = str(tmp_path / "runs.db")
    command = [sys.executable, "-m", "tests.support.approval_subjects"]
    root = Path(__file__).resolve().parents[1]
    started = subprocess.run(
        [*command, "start", db], check=False, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert started.stdout == "suspended\n", started.stderr
    worker = subprocess.Popen(
        [*command, "work", db], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "working\n"  # the worker is polling the store beside the suspended run
        signalled = subprocess.run(
            [*command, "signal", db], check=False, cwd=root, capture_output=True, text=True, timeout=120
        )
        assert signalled.stdout == "signalled\n", signalled.stderr
        out, err = worker.communicate(timeout=120)
        assert out == "ended\n", err
    finally:
        worker.kill()
    import anyio

    async def check() -> None:
        store = SqliteStore(Path(db))
        (info,) = await store.runs()
        assert info.status is RunStatus.ENDED and info.steps == 1  # the review finished once, by the worker
        await store.aclose()

    anyio.run(check)


async def test_a_worker_that_drives_a_run_into_a_wait_leaves_it_suspended(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await orders.initialize(Review(), store=store, run_id="order-8", state=OrderState())
    assert await run_worker([orders], store) == ["order-8"]  # driven as far as it goes
    assert [(i.status, i.last_node) for i in await store.runs()] == [(RunStatus.SUSPENDED, "Review")]
    assert await run_worker([orders], store) == []
    await store.aclose()


class Check(pydantic.BaseModel):
    ok: bool


async def test_three_of_fifty_branches_wait_at_once_and_are_answered_one_by_one(tmp_path: Path) -> None:
    from railyard.builder import reduce_list_append

    g = GraphBuilder(input_type=list[int], output_type=list[str], name="batch")
    ran: list[int] = []

    @g.step
    async def item(ctx: StepContext[None, None, int]) -> str:
        ran.append(ctx.inputs)
        if ctx.inputs in (7, 21, 42):
            check = await ctx.wait_for(f"check-{ctx.inputs}", Check, prompt=f"Is {ctx.inputs} fine?")
            return f"{ctx.inputs}:{'ok' if check.ok else 'held'}"
        return f"{ctx.inputs}:auto"

    collect = g.join(reduce_list_append, initial_factory=list[str])
    g.add(g.edge_from(g.start_node).map().to(item), g.edge_from(item).to(collect), g.edge_from(collect).to(g.end_node))
    graph = g.build()
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended) as info:
        await graph.run(inputs=list(range(50)), store=store, run_id="b")
    assert sorted(w.key for w in info.value.waits) == ["check-21", "check-42", "check-7"]
    assert sorted(ran) == list(range(50))  # the other 47 ran to their end; no sibling was cancelled
    assert [i.status for i in await store.runs()] == [RunStatus.SUSPENDED]
    assert sorted(w.key for w in await waiting_for(store, "b")) == ["check-21", "check-42", "check-7"]

    for key, ok, left in (("check-21", True, 2), ("check-7", False, 1)):
        await signal(store, "b", key, {"ok": ok})
        with pytest.raises(RunSuspended) as info:
            await graph.resume(store, "b")
        assert len(info.value.waits) == left
    await signal(store, "b", "check-42", {"ok": True})
    ran.clear()
    result = await graph.resume(store, "b")
    assert ran == [42]  # only the branch that still waited ran again
    assert sorted(result) == sorted(
        [f"{i}:auto" for i in range(50) if i not in (7, 21, 42)] + ["7:held", "21:ok", "42:ok"]
    )
    await store.aclose()


class Refund(pydantic.BaseModel):
    approved: bool


async def test_an_agent_tool_waits_for_a_person_and_the_run_goes_on_with_the_answer(tmp_path: Path) -> None:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if not returns:
            return ModelResponse(parts=[ToolCallPart("refund", {"amount": 40}, "call-1")])
        return ModelResponse(parts=[TextPart(f"done: {returns[-1].content}")])

    agent = Agent(FunctionModel(model), name="refunds")

    @agent.tool
    async def refund(ctx: RunContext[None], amount: int) -> str:
        """Refund an amount, once a person approves it."""
        answer = await ctx.wait_for("refund", Refund, prompt=f"Refund ${amount}?")
        return f"refunded ${amount}" if answer.approved else "refund refused"

    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended) as info:
        await agent.run("refund my order", store=store, run_id="chat-1")
    assert info.value.waiting.prompt == "Refund $40?"
    assert [i.status for i in await store.runs()] == [RunStatus.SUSPENDED]
    await signal(store, "chat-1", "refund", {"approved": True})
    result = await agent.resume(store, "chat-1")
    assert result.output == "done: refunded $40"
    await store.aclose()


# -- cancelling a run no driver holds -----------------------------------------------------------------


async def test_a_cancelled_run_is_never_resumed_or_claimed(tmp_path: Path) -> None:
    from railyard import RunCancelled
    from railyard.suspension import cancel

    store = SqliteStore(tmp_path / "runs.db")
    await _suspend(store)
    await cancel(store, "order-7", "the customer withdrew the order")
    assert [i.status for i in await store.runs()] == [RunStatus.CANCELLED]
    with pytest.raises(RunCancelled, match=r"^Run 'order-7' in .* was cancelled \(the customer withdrew the order\)"):
        await orders.resume(store, "order-7")
    assert await run_worker([orders], store) == []
    before = await store.read("order-7")
    with pytest.raises(RunCancelled):  # twice: refused, nothing stored
        await cancel(store, "order-7", "again")
    assert await store.read("order-7") == before
    await store.aclose()


async def test_a_cancel_asked_while_the_run_is_held_stops_its_next_drive_before_a_step_runs(tmp_path: Path) -> None:
    from railyard import RunCancelled
    from railyard.suspension import cancel

    store = SqliteStore(tmp_path / "runs.db")
    await _suspend(store)
    await signal(store, "order-7", "approval", {"approved": True})
    before = await store.read("order-7")
    async with store.lock("order-7"):  # held (by a driver that writes nothing more)
        await cancel(SqliteStore(tmp_path / "runs.db"), "order-7", "too late")
        assert await store.read("order-7") == before, "a cancel asked of a held run records nothing itself"
    (info,) = await store.runs()
    assert (info.status, info.cancel_requested) == (RunStatus.WAITING, "too late")
    with pytest.raises(RunCancelled, match=r"was cancelled \(too late\)"):
        await orders.resume(store, "order-7")
    records = await store.read("order-7")
    assert [r.kind for r in records[len(before) :]][-1] == "run_cancelled"
    assert not any(r.kind == "step_finished" for r in records[len(before) :]), "the approved step never ran"
    assert [i.status for i in await store.runs()] == [RunStatus.CANCELLED]
    await store.aclose()


async def test_cancel_refuses_an_ended_run(tmp_path: Path) -> None:
    from railyard import RunEnded
    from railyard.suspension import cancel

    store = SqliteStore(tmp_path / "runs.db")
    await _suspend(store)
    await signal(store, "order-7", "approval", {"approved": True})
    await orders.resume(store, "order-7")
    before = await store.read("order-7")
    with pytest.raises(RunEnded):
        await cancel(store, "order-7", "too late")
    assert await store.read("order-7") == before
    await store.aclose()


async def test_a_cancelled_builder_run_is_not_resumed(tmp_path: Path) -> None:
    from railyard import RunCancelled
    from railyard.suspension import cancel

    g = GraphBuilder(output_type=str, name="ask")

    @g.step
    async def ask(ctx: StepContext[None, None, None]) -> str:
        return str((await ctx.wait_for("go", Decision)).approved)

    g.add(g.edge_from(g.start_node).to(ask), g.edge_from(ask).to(g.end_node))
    graph = g.build()
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended):
        await graph.run(store=store, run_id="a")
    await cancel(store, "a", "not needed")
    with pytest.raises(RunCancelled, match=r"\(not needed\)"):
        await graph.resume(store, "a")
    await store.aclose()
