"""Timers: `ctx.sleep_until` and `wait_for(..., timeout=)`, stored with the run and woken by workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import time

import anyio
import pydantic
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, run_worker
from railyard.agent import Agent, RunContext
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.builder import GraphBuilder, StepContext
from railyard.store import RunStatus
from railyard.store.sqlite import SqliteStore
from railyard.suspension import TIMER_PREFIX, RunSuspended, SignalError, WaitTimedOut, signal, waiting_for

pytestmark = pytest.mark.anyio


@dataclass
class Remind(BaseNode[None, None, str]):
    """Sleeps until the time it is given, then ends."""

    at: float = 0.0

    async def run(self, ctx: GraphRunContext) -> End[str]:
        await ctx.sleep_until(self.at)
        return End(f"reminded after {self.at:.0f}")


reminders = Graph(nodes=[Remind], name="reminders")


class Answer(pydantic.BaseModel):
    text: str


@dataclass
class Ask(BaseNode[None, None, str]):
    """Waits up to `seconds` for an answer; goes on without one."""

    seconds: float = 60.0

    async def run(self, ctx: GraphRunContext) -> End[str]:
        try:
            answer = await ctx.wait_for("answer", Answer, prompt="Anything to add?", timeout=self.seconds)
        except WaitTimedOut as timed_out:
            return End(f"no answer within {timed_out.timeout:g} s")
        return End(answer.text)


questions = Graph(nodes=[Ask], name="questions")


async def _until(when: float) -> None:
    """Sleep until the POSIX time `when` (what a timer is due at: the event the test waits for)."""
    await anyio.sleep(max(0.0, when - time()) + 0.01)


async def test_a_timer_suspends_the_run_and_a_worker_wakes_it_when_due(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    due = time() + 0.3
    with pytest.raises(RunSuspended) as suspended:
        await reminders.run(Remind(due), store=store, run_id="r")
    (wait,) = suspended.value.waits
    assert wait.key == TIMER_PREFIX + datetime.fromtimestamp(due, UTC).isoformat() and wait.wake_at == due
    (info,) = await store.runs()
    assert info.status is RunStatus.SUSPENDED and info.wake_at == datetime.fromtimestamp(due, UTC)
    if time() < due:  # not due yet: no worker takes it
        assert await run_worker([reminders], store) == []
    await _until(due)
    assert await run_worker([reminders], store) == ["r"]
    (info,) = await store.runs()
    assert (info.status, info.wake_at, info.waiting_for, info.steps) == (RunStatus.ENDED, None, (), 1)
    await store.aclose()


async def test_a_timer_that_has_passed_does_not_wait() -> None:
    result = await reminders.run(Remind(time() - 5))
    assert result.output.startswith("reminded")


async def test_a_run_without_a_store_sleeps_in_its_process() -> None:
    due = time() + 0.05
    result = await reminders.run(Remind(due))
    assert time() >= due and result.output.startswith("reminded")


async def test_a_timer_is_not_signalled(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended) as suspended:
        await reminders.run(Remind(time() + 3600), store=store, run_id="r")
    before = await store.read("r")
    with pytest.raises(SignalError, match=r"is a timer: it is not signalled"):
        await signal(store, "r", suspended.value.waiting.key, None)
    assert await store.read("r") == before
    await store.aclose()


async def test_an_answer_before_the_timeout_is_delivered(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended) as suspended:
        await questions.run(Ask(3600), store=store, run_id="q")
    deadline = suspended.value.waiting.wake_at
    assert deadline is not None and deadline > time() + 3500
    assert [w.wake_at for w in await waiting_for(store, "q")] == [deadline]
    await signal(store, "q", "answer", {"text": "ship it"})
    assert (await questions.resume(store, "q")).output == "ship it"
    await store.aclose()


async def test_without_an_answer_the_wait_times_out_and_the_step_goes_on(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended) as suspended:
        await questions.run(Ask(0.3), store=store, run_id="q")
    deadline = suspended.value.waiting.wake_at
    assert deadline is not None
    if time() < deadline:  # run again before its deadline: it waits on, for the deadline it had
        with pytest.raises(RunSuspended) as again:
            await questions.resume(store, "q")
        assert again.value.waiting.wake_at == deadline
    await _until(deadline)
    (info,) = await store.runs()
    assert info.status is RunStatus.SUSPENDED and info.wake_at is not None  # due: a worker would take it now
    assert (await questions.resume(store, "q")).output == "no answer within 0.3 s"
    await store.aclose()


async def test_a_builder_step_sleeps_until_its_timer(tmp_path: Path) -> None:
    g = GraphBuilder(input_type=float, output_type=str, name="later")

    @g.step
    async def later(ctx: StepContext[None, None, float]) -> str:
        await ctx.sleep_until(ctx.inputs)
        return "woken"

    g.add(g.edge_from(g.start_node).to(later), g.edge_from(later).to(g.end_node))
    graph = g.build()
    store = SqliteStore(tmp_path / "runs.db")
    due = time() + 0.2
    with pytest.raises(RunSuspended):
        await graph.run(inputs=due, store=store, run_id="b")
    await _until(due)
    assert (await graph.resume(store, "b")) == "woken"
    await store.aclose()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("naive", r"sleep_until\(.*\) in step `.*`: give an aware datetime"),
        ("timeout", r"wait_for\('answer', \.\.\., timeout=\): a timeout is .* more than 0 \(got 0\)"),
        ("key", r"wait_for\('timer:x', \.\.\.\) in step .*: a key is a non-empty line of text"),
    ],
)
async def test_a_bad_time_or_key_is_named(call: str, message: str) -> None:
    @dataclass
    class Bad(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> End[str]:
            if call == "naive":
                await ctx.sleep_until(datetime.now() + timedelta(hours=1))
            elif call == "timeout":
                await ctx.wait_for("answer", Answer, timeout=0)
            else:
                await ctx.wait_for("timer:x", Answer)
            return End("never")

    with pytest.raises(ValueError, match=message):
        await Graph(nodes=[Bad]).run(Bad())


# -- a run's timeout ---------------------------------------------------------------------------


@dataclass
class Dawdle(BaseNode[None, anyio.Event, str]):
    """Never finishes; says so when its step is cancelled."""

    async def run(self, ctx: GraphRunContext[None, anyio.Event]) -> End[str]:
        try:
            await anyio.sleep_forever()
        finally:
            ctx.deps.set()
        return End("never")  # pragma: no cover


@dataclass
class Loop(BaseNode[None, None, str]):
    """Goes round for ever, a little at a time."""

    async def run(self, ctx: GraphRunContext) -> Loop | End[str]:
        await anyio.sleep(0.01)
        return Loop()


async def test_a_run_over_its_run_timeout_has_its_step_cancelled() -> None:
    from railyard import RunTimedOut

    cancelled = anyio.Event()
    graph = Graph(nodes=[Dawdle], name="dawdle", run_timeout=0.1)
    with pytest.raises(RunTimedOut, match=r"ran longer than its run_timeout of 0\.1 s: its running steps") as info:
        await graph.run(Dawdle(), deps=cancelled)
    assert cancelled.is_set() and isinstance(info.value, TimeoutError) and info.value.timeout == 0.1


async def test_a_durable_run_over_its_run_timeout_is_stored_cancelled_and_stays_so(tmp_path: Path) -> None:
    from railyard import RunCancelled, RunTimedOut

    store = SqliteStore(tmp_path / "runs.db")
    graph = Graph(nodes=[Loop], name="loops", run_timeout=0.2)
    with pytest.raises(RunTimedOut):
        await graph.run(Loop(), store=store, run_id="l")
    (info,) = await store.runs()
    assert info.status is RunStatus.CANCELLED and info.steps >= 1
    with pytest.raises(RunCancelled, match=r"was cancelled \(ran longer than its run_timeout of 0\.2 s\)"):
        await graph.resume(store, "l")
    await store.aclose()


async def test_a_builder_run_over_its_run_timeout_cancels_every_branch() -> None:
    from railyard import RunTimedOut

    cancelled: list[int] = []
    g = GraphBuilder(input_type=list[int], output_type=list[int], name="slow_batch", run_timeout=0.1)

    @g.step
    async def slow(ctx: StepContext[None, None, int]) -> int:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(ctx.inputs)
        return ctx.inputs  # pragma: no cover

    collect = g.join(reducer=lambda values, value: [*values, value], initial_factory=list, node_id="collect")
    g.add(g.edge_from(g.start_node).map().to(slow), g.edge_from(slow).to(collect), g.edge_from(collect).to(g.end_node))
    with pytest.raises(RunTimedOut):
        await g.build().run(inputs=[1, 2, 3])
    assert sorted(cancelled) == [1, 2, 3]


def test_a_run_timeout_is_a_positive_number_of_seconds() -> None:
    from railyard import GraphSetupError

    with pytest.raises(GraphSetupError, match=r"run_timeout=0: a run timeout is a number of seconds, more than 0"):
        Graph(nodes=[Loop], run_timeout=0)


async def test_an_agent_tool_sleeps_until_its_timer_and_a_worker_wakes_the_run(tmp_path: Path) -> None:
    due = time() + 0.2

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
        if not returns:
            return ModelResponse(parts=[ToolCallPart("remind", {}, "call-1")])
        return ModelResponse(parts=[TextPart(f"done: {returns[-1].content}")])

    agent = Agent(FunctionModel(model), name="reminding")

    @agent.tool
    async def remind(ctx: RunContext[None]) -> str:
        """Remind the customer once it is time."""
        await ctx.sleep_until(due)
        return "reminded"

    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunSuspended) as suspended:
        await agent.run("remind me", store=store, run_id="chat-2")
    assert suspended.value.waiting.key.startswith(TIMER_PREFIX)
    await _until(due)
    assert await run_worker([agent], store) == ["chat-2"]
    assert [i.status for i in await store.runs()] == [RunStatus.ENDED]
    await store.aclose()
