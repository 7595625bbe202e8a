"""Agent models: FunctionModel answers through a function and estimates usage from words."""

from __future__ import annotations

import pytest

from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel, estimate_usage
from railyard.agent.usage import Usage

pytestmark = pytest.mark.anyio

INFO = AgentInfo(function_tools=[], allow_text_result=True, result_tools=[], model_settings=None)


async def test_the_function_sees_the_conversation_and_names_the_response() -> None:
    seen: list[tuple[int, AgentInfo]] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append((len(messages), info))
        return ModelResponse(parts=[TextPart("Paris")])

    model = FunctionModel(answer)
    assert (model.model_name, model.system) == ("function:answer:", "function")
    assert repr(model).startswith("FunctionModel(function=<function test_the_function_sees_the_conversation")
    response, usage = await model.request([ModelRequest([UserPromptPart("What is the capital of France?")])], INFO)
    assert seen == [(1, INFO)]
    assert response.parts == [TextPart("Paris")] and response.model_name == "function:answer:"
    assert usage == Usage(requests=1, request_tokens=56, response_tokens=1, total_tokens=57)


async def test_an_async_function_and_a_lambda() -> None:
    async def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("async")])

    response, _ = await FunctionModel(answer, model_name="mine").request([], INFO)
    assert (response.parts, response.model_name) == ([TextPart("async")], "mine")
    assert FunctionModel(lambda m, i: ModelResponse([])).model_name == "function:<lambda>:"


async def test_a_function_must_return_a_response() -> None:
    with pytest.raises(TypeError, match="must return a ModelResponse, got str"):
        await FunctionModel(lambda m, i: "Paris").request([], INFO)  # type: ignore[arg-type,return-value]


def test_usage_grows_with_the_whole_conversation() -> None:
    question = ModelRequest([UserPromptPart("What is the capital of France?")])
    call = ModelResponse([ToolCallPart("get_capital", {"country": "France"})])
    tool_return = ModelRequest([ToolReturnPart("get_capital", "Paris")])
    conversation: list[ModelMessage] = [question, call]
    total = estimate_usage(conversation)
    assert total == Usage(requests=1, request_tokens=56, response_tokens=5, total_tokens=61)
    conversation += [tool_return, call]
    total = total + estimate_usage(conversation)
    assert total == Usage(requests=2, request_tokens=113, response_tokens=15, total_tokens=128)
    conversation += [tool_return, ModelResponse([TextPart("The capital is Paris")])]
    total = total + estimate_usage(conversation)
    assert total == Usage(requests=3, request_tokens=171, response_tokens=29, total_tokens=200)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", 0),
        ("q.", 2),
        (".", 2),
        ('"q', 2),
        ("  ", 1),
        (" x ", 1),
        ("a..b", 2),
        ("a-b_c;d!e?f", 1),
        ("it's (x) [y] {z}", 4),
        ("You are a helpful bot.", 6),
    ],
)
def test_word_counts(text: str, words: int) -> None:
    usage = estimate_usage([ModelRequest([SystemPromptPart(text)]), ModelResponse([TextPart(text)])])
    assert (usage.request_tokens, usage.response_tokens) == (50 + words, words)


@pytest.mark.anyio
async def test_fallback_model_asks_the_next_model_when_one_fails() -> None:
    from railyard.agent import Agent, FallbackExceptionGroup
    from railyard.agent.exceptions import ModelHTTPError
    from railyard.agent.models.fallback import FallbackModel

    def down(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(500, "primary", {"message": "down"})

    def limited(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ModelHTTPError(429, "secondary")

    def up(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("ok")])

    def broken(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ValueError("a bug, not an outage")

    model = FallbackModel(FunctionModel(down), FunctionModel(up))
    assert (model.model_name, model.system) == ("fallback:function:down:,function:up:", "fallback:function,function")
    result = await Agent(model).run("q")
    assert result.data == "ok"
    answered = result.all_messages()[-1]
    assert isinstance(answered, ModelResponse) and answered.model_name == "function:up:"

    with pytest.raises(FallbackExceptionGroup, match=r"^All models from FallbackModel failed") as caught:
        await Agent(FallbackModel(FunctionModel(down), FunctionModel(limited))).run("q")
    assert [error.status_code for error in caught.value.exceptions] == [500, 429]  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="a bug"):
        await Agent(FallbackModel(FunctionModel(broken), FunctionModel(up))).run("q")
    custom = FallbackModel(FunctionModel(broken), "test", fallback_on=lambda error: isinstance(error, ValueError))
    assert (await Agent(custom).run("q")).data == "success (no tool calls)"
