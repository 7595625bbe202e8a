"""What the worker processes of `tests/test_workers_all_kinds.py` drive: an agent beside the sample graphs.

The worker processes import this module (`work`), so the agent that resumes a run there
is the agent the test created the run with: the same name, model and tool. The builder
runs' map items append their step ids to `fan_out.log` in the effects directory; the
agent's tool appends `look_up <key>` to `agent.log` there.
"""

from __future__ import annotations

from pathlib import Path

from railyard.agent import Agent, RunContext
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart, UserPromptPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.store.urls import open_store
from railyard.testing._sample import Effects, count_graph, fan_out_graph
from railyard.worker import Resumable, run_worker

__all__ = ("WORKER_GRAPHS", "answer", "effects_of", "support_agent", "work")


def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Look the user's prompt up with the `look_up` tool, then answer with what it returned."""
    returns = [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]
    if not returns:
        prompts = [part for message in messages for part in message.parts if isinstance(part, UserPromptPart)]
        return ModelResponse(parts=[ToolCallPart("look_up", {"key": str(prompts[-1].content)}, "look-up-1")])
    return ModelResponse(parts=[TextPart(f"found {returns[-1].content}")])


support_agent = Agent(FunctionModel(answer), name="support_agent", deps_type=Effects)


@support_agent.tool
def look_up(ctx: RunContext[Effects], key: str) -> str:
    """Look `key` up (a side effect: one line in the agent's effects file per call)."""
    ctx.deps.record(f"look_up {key}")
    return key.upper()


WORKER_GRAPHS: list[Resumable] = [count_graph, fan_out_graph, support_agent]
"""One graph of each kind: node, builder and agent."""


def effects_of(directory: Path) -> dict[str, Effects]:
    """Each graph's deps, by graph name: where the builder's map items and the agent's tool write."""
    return {
        "fan_out_graph": Effects(str(directory / "fan_out.log")),
        "support_agent": Effects(str(directory / "agent.log")),
    }


async def work(url: str, directory: Path) -> list[str]:
    """Run one worker over `WORKER_GRAPHS` on the store at `url`; return the ids of the runs it drove."""
    store = open_store(url)
    try:
        return await run_worker(WORKER_GRAPHS, store, deps=effects_of(directory), idle_timeout=1.0, poll_interval=0.05)
    finally:
        await store.aclose()
