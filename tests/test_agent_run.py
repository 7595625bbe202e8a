"""Agent runs on the railyard graph: the seed's node list, tools, retries, limits, history."""

from __future__ import annotations

import pytest

from railyard.agent import ModelRetry, RunContext, UnexpectedModelBehavior, UsageLimitExceeded, UserError
from railyard.agent._graph import CallToolsNode, FinalResult, ModelRequestNode
from railyard.agent.agent import Agent
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.agent.usage import Usage, UsageLimits
from railyard.nodes import End

pytestmark = pytest.mark.anyio


def paris(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("Paris")])


async def test_the_seed_run_yields_request_call_tools_and_end() -> None:
    agent = Agent(FunctionModel(paris))
    nodes = []
    async with agent.iter("What is the capital of France?") as agent_run:
        async for node in agent_run:
            nodes.append(node)
    assert [type(node) for node in nodes] == [ModelRequestNode, CallToolsNode, End]
    assert repr(nodes[0]).startswith(
        "ModelRequestNode(request=ModelRequest(parts=[UserPromptPart(content='What is the capital of France?', "
    )
    assert repr(nodes[1]).startswith("CallToolsNode(model_response=ModelResponse(parts=[TextPart(content='Paris'")
    assert repr(nodes[2]) == "End(data=FinalResult(data='Paris', tool_name=None, tool_call_id=None))"
    assert agent_run.next_node == nodes[2]
    result = agent_run.result
    assert result is not None
    assert (result.data, repr(result)) == ("Paris", "AgentRunResult(data='Paris')")
    assert agent_run.usage() == Usage(requests=1, request_tokens=56, response_tokens=1, total_tokens=57)


def capital_twice(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    if len(messages) < 5:
        return ModelResponse(parts=[ToolCallPart("get_capital", {"country": "France"})])
    return ModelResponse(parts=[TextPart("The capital is Paris")])


async def test_tools_are_called_until_the_model_answers_in_text() -> None:
    agent = Agent(FunctionModel(capital_twice), system_prompt="Be brief.")
    seen: list[RunContext[str]] = []

    @agent.tool
    def get_capital(ctx: RunContext[str], country: str) -> str:
        """Get a country's capital.

        Args:
            country: The country.
        """
        seen.append(ctx)
        return {"France": "Paris"}[country]

    result = await agent.run("What is the capital of France?", deps="DEPS")
    assert result.data == "The capital is Paris"
    messages = result.all_messages()
    assert len(messages) == 6
    assert isinstance(messages[0], ModelRequest)
    assert [type(part) for part in messages[0].parts] == [SystemPromptPart, UserPromptPart]
    assert isinstance(messages[2], ModelRequest)
    assert messages[2].parts[0] == ToolReturnPart("get_capital", "Paris", timestamp=messages[2].parts[0].timestamp)
    assert [(ctx.deps, ctx.tool_name, ctx.run_step, len(ctx.messages)) for ctx in seen] == [
        ("DEPS", "get_capital", 1, 2),
        ("DEPS", "get_capital", 2, 4),
    ]
    assert result.usage() == Usage(requests=3, request_tokens=180, response_tokens=29, total_tokens=209)


async def test_message_history_carries_over_and_new_messages_are_this_runs() -> None:
    agent = Agent(FunctionModel(paris), system_prompt="Be brief.")
    first = await agent.run("Capital of France?")
    second = await agent.run("And again?", message_history=first.all_messages())
    assert second.all_messages()[:2] == first.all_messages()
    new = second.new_messages()
    assert len(new) == 2
    assert isinstance(new[0], ModelRequest)
    assert [type(part) for part in new[0].parts] == [UserPromptPart]


def always_calls(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart("picky", {"x": 1}, "c1")])


async def test_a_tool_that_keeps_asking_for_retries_fails_the_run() -> None:
    agent = Agent(FunctionModel(always_calls))

    @agent.tool_plain(retries=2)
    def picky(x: int) -> str:
        raise ModelRetry("always wrong")

    with pytest.raises(UnexpectedModelBehavior, match=r"^Tool exceeded max retries count of 2$") as raised:
        await agent.run("go")
    assert isinstance(raised.value.__cause__, ModelRetry)


async def test_an_unknown_tool_gets_a_retry_prompt() -> None:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("nope_tool", {})])
        return ModelResponse(parts=[TextPart("ok")])

    agent = Agent(FunctionModel(model), tools=[paris_tool])
    result = await agent.run("go")
    request = result.all_messages()[2]
    assert isinstance(request, ModelRequest)
    retry = request.parts[0]
    assert isinstance(retry, RetryPromptPart)
    assert retry.content == "Unknown tool name: 'nope_tool'. Available tools: paris_tool"


def paris_tool() -> str:
    return "Paris"


async def test_request_limit_stops_before_the_next_request() -> None:
    agent = Agent(FunctionModel(capital_twice), tools=[paris_tool])

    @agent.tool_plain
    def get_capital(country: str) -> str:
        return "Paris"

    nodes = []
    with pytest.raises(UsageLimitExceeded, match=r"^The next request would exceed the request_limit of 1$"):
        async with agent.iter("q", usage_limits=UsageLimits(request_limit=1)) as run:
            async for node in run:
                nodes.append(node)
    assert [type(node) for node in nodes] == [ModelRequestNode, CallToolsNode, ModelRequestNode]


async def test_empty_response_and_bad_setup_are_named() -> None:
    agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[])))
    with pytest.raises(UnexpectedModelBehavior, match=r"^Received empty model response$"):
        await agent.run("q")
    with pytest.raises(UserError, match="Tool name conflicts with existing tool: 'paris_tool'"):
        Agent(FunctionModel(paris), tools=[paris_tool, paris_tool])
    with pytest.raises(UserError, match=r"^Unknown model: nope:x$"):
        Agent("nope:x")
    with pytest.raises(UserError, match=r"^`model` must be set either when creating the agent or when calling it\.$"):
        await Agent().run("q")
    with pytest.raises(UserError, match=r"^`result_type` and `output_type` cannot be set at the same time\.$"):
        Agent(FunctionModel(paris), result_type=int, output_type=int)


def test_run_sync() -> None:
    result = Agent(FunctionModel(paris)).run_sync("q")
    assert result.data == "Paris"
    assert result.output == "Paris"
    assert isinstance(FinalResult("x", None, None).data, str)


def test_the_import_paths_of_pydantic_ai_exist() -> None:
    import importlib

    import railyard.agent

    # pydantic_ai.__all__ in 0.0.40, without __version__
    top = [
        "Agent",
        "AgentRunError",
        "AudioUrl",
        "BinaryContent",
        "CallToolsNode",
        "DocumentUrl",
        "EndStrategy",
        "FallbackExceptionGroup",
        "ImageUrl",
        "ModelHTTPError",
        "ModelRequestNode",
        "ModelRetry",
        "RunContext",
        "Tool",
        "UnexpectedModelBehavior",
        "UsageLimitExceeded",
        "UserError",
        "UserPromptNode",
        "capture_run_messages",
    ]
    assert [name for name in top if not hasattr(railyard.agent, name)] == []
    modules = {
        "agent": "Agent AgentRun AgentRunResult capture_run_messages",
        "messages": "ModelMessagesTypeAdapter ModelRequest ModelResponse TextPart ToolCallPart ImageUrl UserContent",
        "models": "Model KnownModelName",
        "models.function": "FunctionModel AgentInfo",
        "models.test": "TestModel",
        "models.openai": "OpenAIModel",
        "models.fallback": "FallbackModel",
        "providers.openai": "OpenAIProvider",
        "result": "FinalResult",
        "settings": "ModelSettings",
        "tools": "Tool ToolDefinition RunContext",
        "usage": "Usage UsageLimits",
        "exceptions": "AgentRunError ModelHTTPError ModelRetry UnexpectedModelBehavior UsageLimitExceeded UserError",
    }
    missing = [
        f"{module}.{name}"
        for module, names in modules.items()
        for name in names.split()
        if not hasattr(importlib.import_module(f"railyard.agent.{module}"), name)
    ]
    assert missing == []
