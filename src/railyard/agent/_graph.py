"""The agent loop as a railyard node graph: ask the model, call its tools, repeat.

`ModelRequestNode` sends a request and leads to `CallToolsNode` with the response;
that node either ends the run with a `FinalResult` or runs the tools the model called
and leads to the next `ModelRequestNode` with their returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from railyard.agent.context import RunContext
from railyard.agent.exceptions import UnexpectedModelBehavior
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
)
from railyard.agent.models import AgentInfo, Model
from railyard.agent.tools import Tool
from railyard.agent.usage import Usage, UsageLimits
from railyard.graph import Graph
from railyard.nodes import BaseNode, End, GraphRunContext

__all__ = ("AgentDeps", "AgentState", "CallToolsNode", "FinalResult", "ModelRequestNode", "agent_graph")

ResultDataT = TypeVar("ResultDataT")


@dataclass
class FinalResult(Generic[ResultDataT]):
    """How an agent run ended: its result, and the result tool that carried it, if any."""

    data: ResultDataT
    """The result."""
    tool_name: str | None
    """The result tool the model called, or None for a text answer."""
    tool_call_id: str | None
    """The id of that call, if the model gave one."""


@dataclass
class AgentState:
    """What an agent run accumulates: the conversation, usage, and retries per tool."""

    message_history: list[ModelMessage]
    """The whole conversation, including any history the run started from."""
    usage: Usage
    """Requests and tokens used so far."""
    retries: dict[str, int] = field(default_factory=dict)
    """How many times each tool has failed in this run."""
    run_step: int = 0
    """How many model requests have been made."""


@dataclass
class AgentDeps:
    """What an agent run is given: the model, tools, limits and the user's dependencies."""

    user_deps: Any
    prompt: str
    model: Model
    tools: dict[str, Tool]
    usage_limits: UsageLimits
    model_settings: dict[str, Any] | None
    new_message_index: int


AgentContext = GraphRunContext[AgentState, AgentDeps]


@dataclass
class ModelRequestNode(BaseNode[AgentState, AgentDeps, FinalResult[Any]]):
    """Send `request` to the model, with the conversation before it."""

    request: ModelRequest

    async def run(self, ctx: AgentContext) -> CallToolsNode:
        state, deps = ctx.state, ctx.deps
        deps.usage_limits.check_before_request(state.usage)
        state.message_history.append(self.request)
        info = AgentInfo(
            function_tools=[tool.definition for tool in deps.tools.values()],
            allow_text_result=True,
            result_tools=[],
            model_settings=deps.model_settings,
        )
        response, request_usage = await deps.model.request(list(state.message_history), info)
        state.run_step += 1
        state.usage.incr(request_usage)
        deps.usage_limits.check_tokens(state.usage)
        return CallToolsNode(response)


@dataclass
class CallToolsNode(BaseNode[AgentState, AgentDeps, FinalResult[Any]]):
    """Act on the model's response: end with its text, or call the tools it asked for."""

    model_response: ModelResponse

    async def run(self, ctx: AgentContext) -> ModelRequestNode | End[FinalResult[Any]]:
        state, deps = ctx.state, ctx.deps
        state.message_history.append(self.model_response)
        if not self.model_response.parts:
            raise UnexpectedModelBehavior("Received empty model response")
        calls = [part for part in self.model_response.parts if isinstance(part, ToolCallPart)]
        if not calls:
            text = "\n\n".join(part.content for part in self.model_response.parts if isinstance(part, TextPart))
            return End(FinalResult(text, None, None))
        parts: list[ModelRequestPart] = []
        for call in calls:
            tool = deps.tools.get(call.tool_name)
            if tool is None:
                names = ", ".join(deps.tools)
                parts.append(RetryPromptPart(f"Unknown tool name: {call.tool_name!r}. Available tools: {names}"))
                continue
            run_ctx = RunContext(
                deps.user_deps,
                deps.model,
                state.usage,
                deps.prompt,
                list(state.message_history),
                retry=state.retries.get(tool.name, 0),
                run_step=state.run_step,
            )
            part = await tool.call(call, run_ctx)
            if isinstance(part, RetryPromptPart):
                state.retries[tool.name] = state.retries.get(tool.name, 0) + 1
            parts.append(part)
        return ModelRequestNode(ModelRequest(parts))


agent_graph: Graph[AgentState, AgentDeps, FinalResult[Any]] = Graph(
    nodes=(ModelRequestNode, CallToolsNode), name="agent", state_type=AgentState
)
"""The graph every agent run runs on."""
