"""The agent's durable spelling: run/run_sync/iter(store=, run_id=), resume(store, run_id), iter_resume, fork."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from railyard.agent import Agent, ModelRequestNode
from railyard.agent.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.agent.models.test import TestModel
from railyard.durable import DurablePersistence
from railyard.exceptions import RunEnded, RunExists, RunNotFound
from railyard.store import RunStore
from railyard.store.memory import MemoryStore
from railyard.store.records import RunStatus
from railyard.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    made: RunStore = SqliteStore(tmp_path / "runs.db") if request.param == "sqlite" else MemoryStore()
    try:
        yield made
    finally:
        await made.aclose()


class Capital:
    """An agent that asks for one tool call, then answers; it counts the model's requests."""

    def __init__(self, *, fail_first_call: bool = False) -> None:
        self.requests = 0
        self.calls: list[str] = []
        self.fail_first_call = fail_first_call
        self.agent = Agent(FunctionModel(self.model), system_prompt="Be brief.")
        self.agent.tool_plain(self.get_capital)

    def model(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.requests += 1
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("get_capital", {"country": "France"}, "c1")])
        return ModelResponse(parts=[TextPart("The capital is Paris")])

    def get_capital(self, country: str) -> str:
        self.calls.append(country)
        if self.fail_first_call and len(self.calls) == 1:
            raise RuntimeError("the process dies here")
        return "Paris"


def contents(messages: list[ModelMessage]) -> list[object]:
    """The messages without their timestamps, to compare two runs."""
    out: list[object] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            out.append([(type(p).__name__, getattr(p, "content", None)) for p in message.parts])
        else:
            out.append([repr(p) for p in message.parts])
    return out


async def statuses(store: RunStore) -> dict[str, RunStatus]:
    return {info.run_id: info.status for info in await store.runs()}


async def test_a_run_given_a_store_is_recorded_under_its_run_id(store: RunStore) -> None:
    subject = Capital()
    async with subject.agent.iter("Capital of France?", store=store, run_id="a-1") as run:
        assert run.run_id == "a-1"
        async for _ in run:
            pass
    assert run.result is not None and run.result.data == "The capital is Paris"
    assert await statuses(store) == {"a-1": RunStatus.ENDED}

    result = await subject.agent.run("Capital of France?", store=store, run_id="a-2")
    assert result.data == "The capital is Paris"
    async with subject.agent.iter("Capital of France?", store=store) as unnamed:
        assert unnamed.run_id is not None and unnamed.run_id not in ("a-1", "a-2")
    assert (await statuses(store)).keys() == {"a-1", "a-2", unnamed.run_id}
    with pytest.raises(RunExists):
        await subject.agent.run("Capital of France?", store=store, run_id="a-1")
    with pytest.raises(RunEnded):
        await subject.agent.resume(store, "a-1")


async def test_run_id_is_none_without_a_store_and_the_persistence_id_with_one(store: RunStore) -> None:
    agent = Agent(TestModel())
    async with agent.iter("hello") as run:
        assert run.run_id is None
    async with agent.iter("hello", persistence=DurablePersistence(store, "p-1")) as run:
        assert run.run_id == "p-1"
        async for _ in run:
            pass
    assert await statuses(store) == {"p-1": RunStatus.ENDED}


async def test_a_run_that_fails_in_a_tool_resumes_from_the_store_to_the_same_result(store: RunStore) -> None:
    broken = Capital(fail_first_call=True)
    with pytest.raises(RuntimeError, match="the process dies here"):
        await broken.agent.run("Capital of France?", store=store, run_id="r-1")
    assert await statuses(store) == {"r-1": RunStatus.FAILED}
    assert broken.requests == 1

    result = await broken.agent.resume(store, "r-1")
    assert broken.requests == 2  # the first request finished before the tool failed: it is not sent again
    assert broken.calls == ["France", "France"]  # the failed step runs again
    whole = await Capital().agent.run("Capital of France?")
    assert result.data == whole.data == "The capital is Paris"
    assert result.usage() == whole.usage()
    assert contents(result.all_messages()) == contents(whole.all_messages())
    assert await statuses(store) == {"r-1": RunStatus.ENDED}


async def test_a_run_left_between_steps_is_taken_up_with_iter_resume(store: RunStore) -> None:
    subject = Capital()
    async with subject.agent.iter("Capital of France?", store=store, run_id="i-1") as run:
        async for node in run:
            if isinstance(node, ModelRequestNode) and run.usage().requests == 1:
                break  # the tool has run; the next request is stored, not sent
    assert subject.requests == 1 and subject.calls == ["France"]

    async with subject.agent.iter_resume(store, "i-1") as resumed:
        assert resumed.run_id == "i-1"
        assert isinstance(resumed.next_node, ModelRequestNode)
        async for _ in resumed:
            pass
    assert resumed.result is not None and resumed.result.data == "The capital is Paris"
    assert subject.requests == 2 and subject.calls == ["France"]
    with pytest.raises(RunNotFound):
        async with subject.agent.iter_resume(store, "no-such-run"):
            pass


async def test_a_fork_at_step_1_is_a_new_run_that_resumes_to_the_same_result(store: RunStore) -> None:
    subject = Capital()
    original = await subject.agent.run("Capital of France?", store=store, run_id="f-1")
    new_id = await subject.agent.fork(store, "f-1", 1)
    assert new_id != "f-1"
    assert await statuses(store) == {"f-1": RunStatus.ENDED, new_id: RunStatus.CREATED}

    forked = await subject.agent.resume(store, new_id)
    assert forked.data == original.data == "The capital is Paris"
    assert forked.usage() == original.usage()
    assert contents(forked.all_messages()) == contents(original.all_messages())
    assert subject.requests == 4 and subject.calls == ["France", "France"]

    assert await subject.agent.fork(store, "f-1", 1, new_run_id="f-2") == "f-2"
    assert (await subject.agent.resume(store, "f-2")).data == "The capital is Paris"
    with pytest.raises(RunExists):
        await subject.agent.fork(store, "f-1", 1, new_run_id="f-2")
    with pytest.raises(ValueError, match="ended the run"):
        await subject.agent.fork(store, "f-1", 5)  # the last step: the final answer


async def test_wrong_combinations_are_type_errors_and_record_nothing(store: RunStore) -> None:
    agent = Agent(TestModel())
    with pytest.raises(TypeError, match=r"Agent.run\(\) takes persistence= or store=, not both"):
        await agent.run("hello", persistence=DurablePersistence(store, "x"), store=store)
    with pytest.raises(TypeError, match=r"Agent.run\(\) was given run_id='x' but no store"):
        await agent.run("hello", run_id="x")
    with pytest.raises(TypeError, match=r"Agent.run\(\) was given run_id='x' but no store"):
        await agent.run("hello", persistence=DurablePersistence(store, "x"), run_id="x")
    with pytest.raises(TypeError, match=r"Agent.iter\(\) takes persistence= or store=, not both"):
        async with agent.iter("hello", persistence=DurablePersistence(store, "x"), store=store):
            pass
    with pytest.raises(TypeError, match=r"Agent.iter\(\) was given run_id='x' but no store"):
        async with agent.iter("hello", run_id="x"):
            pass
    with pytest.raises(TypeError, match=r"needs a store and a run id: resume\(store, run_id\)"):
        await agent.resume(store)
    with pytest.raises(TypeError, match=r"needs a store and a run id"):
        await agent.resume("x", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes a store and a run id, or a persistence alone"):
        await agent.resume(DurablePersistence(store, "x"), "x")
    assert await store.runs() == []


def test_run_sync_takes_a_store_and_a_run_id(tmp_path: Path) -> None:
    agent = Agent(TestModel())
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(TypeError, match=r"Agent.run_sync\(\) takes persistence= or store=, not both"):
        agent.run_sync("hello", persistence=DurablePersistence(store, "x"), store=store)
    with pytest.raises(TypeError, match=r"Agent.run_sync\(\) was given run_id='x' but no store"):
        agent.run_sync("hello", run_id="x")
    result = agent.run_sync("hello", store=store, run_id="s-1")
    assert result.data == "success (no tool calls)"

    async def stored() -> dict[str, RunStatus]:
        await store.aclose()
        fresh = SqliteStore(tmp_path / "runs.db")  # as another process would see it
        try:
            return await statuses(fresh)
        finally:
            await fresh.aclose()

    assert asyncio.run(stored()) == {"s-1": RunStatus.ENDED}
