"""Durable agent runs: stored step by step, resumed in another process, never repeating a finished step."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from railyard.agent import Agent, ModelRequestNode
from railyard.agent.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.durable import DurablePersistence
from railyard.exceptions import RunEnded
from railyard.store.urls import open_store

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def subject(url: str, run_id: str, command: str, log: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.support.agent_subject", url, run_id, command, str(log), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        make: Callable[[], str] = request.getfixturevalue("new_postgres_database")
        return make()
    return f"sqlite:///{tmp_path}/runs.db"


@pytest.mark.parametrize("die_in", [1, 2, 3])
def test_a_run_killed_inside_a_model_request_resumes_in_a_new_process(
    store_url: str, tmp_path: Path, die_in: int
) -> None:
    log = tmp_path / "effects.log"
    died = subject(store_url, "agent-1", "start", log, "--die-in-request", str(die_in))
    assert died.returncode == 3, died.stderr
    resumed = subject(store_url, "agent-1", "resume", log)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "total 20 3\n"  # the same result and request count as an unbroken run
    effects = Counter(log.read_text().splitlines())
    # the request in flight when the process died runs again; every finished step ran once
    assert effects == Counter(
        {"request 0": 1, "request 1": 1, "request 2": 1, "tool add 1": 1, "tool add 2": 1}
        | {f"request {die_in - 1}": 2}
    )
    again = subject(store_url, "agent-1", "resume", log)
    assert again.returncode == 1 and "has ended and cannot be resumed" in again.stderr


def capital(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart("get_capital", {"country": "France"}, "c1")])
    return ModelResponse(parts=[TextPart("The capital is Paris")])


def contents(messages: list[ModelMessage]) -> list[object]:
    """The messages without their timestamps, to compare two runs."""
    out: list[object] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            out.append([(type(p).__name__, getattr(p, "content", None)) for p in message.parts])
        else:
            out.append([repr(p) for p in message.parts])
    return out


async def test_a_run_stopped_after_a_model_request_resumes_from_the_store(store_url: str) -> None:
    calls: list[str] = []
    agent = Agent(FunctionModel(capital), system_prompt="Be brief.")

    @agent.tool_plain
    def get_capital(country: str) -> str:
        calls.append(country)
        return "Paris"

    store = open_store(store_url)
    async with agent.iter("Capital of France?", persistence=DurablePersistence(store, "a-1")) as run:
        async for node in run:
            if isinstance(node, ModelRequestNode) and run.usage().requests == 1:
                break  # the tool has run; the next request is stored, not sent
    await store.aclose()
    assert calls == ["France"]

    fresh = open_store(store_url)  # as a new process would
    result = await agent.resume(DurablePersistence(fresh, "a-1"))
    whole = await agent.run("Capital of France?")
    assert calls == ["France", "France"]  # once for the stored run, once for `whole`
    assert result.data == whole.data == "The capital is Paris"
    assert result.usage() == whole.usage()
    assert contents(result.all_messages()) == contents(whole.all_messages())
    returns = [p for m in result.all_messages() for p in m.parts if isinstance(p, ToolReturnPart)]
    assert [(p.tool_name, p.content, p.tool_call_id) for p in returns] == [("get_capital", "Paris", "c1")]
    with pytest.raises(RunEnded):
        await agent.resume(DurablePersistence(fresh, "a-1"))
    await fresh.aclose()
