"""OpenAIModel against a real local Chat Completions server: bodies, headers, tool rounds, usage, retries, errors, streams."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from railyard.agent import Agent, ModelRetry, ToolDefinition, UnexpectedModelBehavior, UserError
from railyard.agent.events import FinalResultEvent, PartDeltaEvent, PartStartEvent, TextPartDelta, ToolCallPartDelta
from railyard.agent.exceptions import ModelConnectionError, ModelHTTPError
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
from railyard.agent.models.openai import OpenAIModel, OpenAIProvider, OpenAIStreamedResponse
from railyard.agent.settings import ModelSettings
from railyard.agent.usage import Usage
from tests.support.fake_openai import (
    FakeOpenAI,
    Reply,
    chat_text,
    chat_tool_calls,
    chunk,
    error_body,
    stream_text,
    stream_tool_calls,
)

pytestmark = pytest.mark.anyio

QUESTION = "What is the capital of France?"
TEXT_INFO = AgentInfo(function_tools=[], allow_text_result=True, result_tools=[], model_settings=None)
ZERO_DETAILS = {
    "reasoning_tokens": 0,
    "audio_tokens": 0,
    "accepted_prediction_tokens": 0,
    "rejected_prediction_tokens": 0,
    "cached_tokens": 0,
}
ERR_429 = error_body("Rate limit reached for gpt-4o on tokens per min (TPM).", "tokens", "rate_limit_exceeded")
ERR_500 = error_body("The server had an error while processing your request. Sorry about that!", "server_error")
CAPITAL_SCHEMA = {
    "additionalProperties": False,
    "properties": {"country": {"description": "the country name", "title": "Country", "type": "string"}},
    "required": ["country"],
    "type": "object",
}
CAPITAL_TOOL = {
    "type": "function",
    "function": {"name": "get_capital", "description": "Get the capital of a country.", "parameters": CAPITAL_SCHEMA},
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A fresh scripted Chat Completions server for the test."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own OpenAI settings must not leak into the tests."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def make_model(fake: FakeOpenAI) -> Callable[..., OpenAIModel]:
    """Makes a model on the fake server whose backoff is tiny, so retries are fast."""

    def make(name: str = "gpt-4o", **kwargs: Any) -> OpenAIModel:
        model = OpenAIModel(name, base_url=fake.base_url, api_key="sk-test-123", **kwargs)
        model.retry_base_delay = 0.01
        return model

    return make


def get_capital(country: str) -> str:
    """Get the capital of a country.

    Args:
        country: the country name
    """
    return {"France": "Paris"}[country]


def shape(messages: list[ModelMessage]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The messages without timestamps and model names, to compare runs on different models."""
    shown: list[tuple[str, list[tuple[Any, ...]]]] = []
    for message in messages:
        rows: list[tuple[Any, ...]] = []
        for part in message.parts:
            fields = {k: v for k, v in vars(part).items() if k != "timestamp"}
            rows.append(tuple(fields.items()))
        shown.append((message.kind, rows))
    return shown


# -- the happy paths ---------------------------------------------------------------------------


async def test_a_text_answer_sends_the_exact_body_and_headers(fake: FakeOpenAI) -> None:
    fake.reply(chat_text("Paris"))
    model = OpenAIModel("gpt-4o", base_url=fake.base_url, api_key="sk-test-123")
    result = await Agent(model).run(QUESTION)
    assert result.data == "Paris"

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.body == {
        "messages": [{"role": "user", "content": QUESTION}],
        "model": "gpt-4o",
        "n": 1,
        "stream": False,
    }
    assert list(request.body) == ["messages", "model", "n", "stream"]
    assert request.headers["authorization"] == "Bearer sk-test-123"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("railyard/")
    assert not any(name.startswith("x-stainless") for name in request.headers)

    response = result.all_messages()[1]
    assert isinstance(response, ModelResponse)
    assert response.parts == [TextPart("Paris")]
    assert response.model_name == "gpt-4o-2024-08-06"
    assert response.timestamp == datetime(2025, 3, 15, 0, 0, 1, tzinfo=UTC)
    assert result.usage() == Usage(
        requests=1, request_tokens=120, response_tokens=3, total_tokens=123, details=ZERO_DETAILS
    )


async def test_a_tool_call_round_trip(fake: FakeOpenAI) -> None:
    fake.reply(
        chat_tool_calls(("call_abc123", "get_capital", '{"country": "France"}')),
        chat_text("The capital of France is Paris."),
    )
    model = OpenAIModel("gpt-4o", provider=OpenAIProvider(base_url=fake.base_url, api_key="sk-test-123"))
    agent = Agent(model, system_prompt="Be concise.", tools=[get_capital])
    result = await agent.run(QUESTION)
    assert result.data == "The capital of France is Paris."

    first, second = fake.bodies()
    assert first == {
        "messages": [{"role": "system", "content": "Be concise."}, {"role": "user", "content": QUESTION}],
        "model": "gpt-4o",
        "n": 1,
        "stream": False,
        "tool_choice": "auto",
        "tools": [CAPITAL_TOOL],
    }
    assert list(first) == ["messages", "model", "n", "stream", "tool_choice", "tools"]
    assistant = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_abc123",
                "type": "function",
                "function": {"name": "get_capital", "arguments": '{"country": "France"}'},
            }
        ],
    }
    assert second["messages"] == [
        *first["messages"],
        assistant,
        {"role": "tool", "tool_call_id": "call_abc123", "content": "Paris"},
    ]
    assert "content" not in second["messages"][2]
    assert {k: v for k, v in second.items() if k != "messages"} == {k: v for k, v in first.items() if k != "messages"}

    messages = result.all_messages()
    call = messages[1]
    assert isinstance(call, ModelResponse)
    assert call.parts == [ToolCallPart("get_capital", '{"country": "France"}', tool_call_id="call_abc123")]
    assert call.timestamp == datetime(2025, 3, 15, tzinfo=UTC)
    tool_return = messages[2]
    assert isinstance(tool_return, ModelRequest)
    assert isinstance(tool_return.parts[0], ToolReturnPart)
    assert tool_return.parts[0].tool_call_id == "call_abc123"

    # The same answers from a FunctionModel give the same conversation, part for part.
    answers = iter([ModelResponse(list(call.parts)), ModelResponse([TextPart("The capital of France is Paris.")])])
    same = await Agent(FunctionModel(lambda m, i: next(answers)), system_prompt="Be concise.", tools=[get_capital]).run(
        QUESTION
    )
    assert shape(same.all_messages()) == shape(messages)


async def test_usage_is_summed_over_the_responses_with_details(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(
        chat_tool_calls(
            ("call_1", "get_capital", '{"country": "France"}'),
            details={
                "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 5, "accepted_prediction_tokens": None},
            },
        ),
        chat_text("Paris", details={"prompt_tokens_details": {"cached_tokens": 16}}),
    )
    result = await Agent(make_model(), tools=[get_capital]).run(QUESTION)
    assert result.usage() == Usage(
        requests=2,
        request_tokens=200,
        response_tokens=20,
        total_tokens=220,
        details={"reasoning_tokens": 5, "cached_tokens": 80, "audio_tokens": 0},
    )


async def test_a_response_without_usage_still_counts_the_request(
    make_model: Callable[..., OpenAIModel], fake: FakeOpenAI
) -> None:
    body = chat_text("Paris")
    del body["usage"]
    fake.reply(body)
    _, usage = await make_model().request([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO)
    assert usage == Usage(requests=1)


async def test_retry_prompts_go_back_as_tool_messages(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(
        chat_tool_calls(("call_1", "check", '{"x": "notanint"}')),
        chat_tool_calls(("call_2", "check", '{"x": 1}')),
        chat_text("ok"),
    )
    agent = Agent(make_model(), retries=3)

    @agent.tool_plain
    def check(x: int) -> str:
        if x == 1:
            raise ModelRetry("x must not be 1")
        return "fine"

    result = await agent.run("go")
    assert result.data == "ok"
    messages = fake.bodies()[-1]["messages"]
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '1 validation errors: [\n  {\n    "type": "int_parsing",\n    "loc": [\n      "x"\n    ],\n'
        '    "msg": "Input should be a valid integer, unable to parse string as an integer",\n'
        '    "input": "notanint"\n  }\n]\n\nFix the errors and try again.',
    }
    assert messages[4] == {
        "role": "tool",
        "tool_call_id": "call_2",
        "content": "x must not be 1\n\nFix the errors and try again.",
    }


async def test_how_a_history_goes_on_the_wire(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(chat_text("done"))
    history: list[ModelMessage] = [
        ModelRequest([SystemPromptPart("sys"), UserPromptPart(["look", "here"])]),
        ModelResponse([TextPart("a"), TextPart("b"), ToolCallPart("t", {"x": 1, "y": "é"}, tool_call_id="c1")]),
        ModelRequest(
            [
                ToolReturnPart("t", {"r": [1, 2]}, tool_call_id="c1"),
                RetryPromptPart("Plain text responses are not permitted, please call one of the functions instead."),
            ]
        ),
        ModelResponse([TextPart("just text")]),
    ]
    await make_model().request(history, TEXT_INFO)
    assert fake.bodies()[0]["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"text": "look", "type": "text"}, {"text": "here", "type": "text"}]},
        {
            "role": "assistant",
            "content": "a\n\nb",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "t", "arguments": '{"x":1,"y":"é"}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"r":[1,2]}'},
        {
            "role": "user",
            "content": "Plain text responses are not permitted, please call one of the functions instead."
            "\n\nFix the errors and try again.",
        },
        {"role": "assistant", "content": "just text"},
    ]


async def test_instructions_come_first_as_a_system_message(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(chat_text("Paris"))
    info = AgentInfo([], True, [], None, instructions="Answer in one word.")
    await make_model().request([ModelRequest([SystemPromptPart("sys"), UserPromptPart(QUESTION)])], info)
    assert fake.bodies()[0]["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "system", "content": "sys"},
        {"role": "user", "content": QUESTION},
    ]


@pytest.mark.parametrize(
    "history",
    [
        [ModelRequest([UserPromptPart(["text", b"bytes"])])],
        [ModelResponse([ToolCallPart("t", "{}")])],
        [ModelRequest([ToolReturnPart("t", "r")])],
        [ModelRequest([RetryPromptPart("again", tool_name="t")])],
    ],
    ids=["non-text-prompt", "call-without-id", "return-without-id", "retry-without-id"],
)
async def test_what_cannot_be_sent_is_a_user_error(
    history: list[ModelMessage], make_model: Callable[..., OpenAIModel], fake: FakeOpenAI
) -> None:
    with pytest.raises(UserError, match="OpenAI"):
        await make_model().request(history, TEXT_INFO)
    assert fake.requests == []


async def test_result_tools_make_a_tool_call_required(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(chat_tool_calls(("call_fr", "final_result", '{"city": "Paris", "country": "France"}')))
    result_schema = {
        "properties": {"city": {"title": "City", "type": "string"}, "country": {"title": "Country", "type": "string"}},
        "required": ["city", "country"],
        "title": "CityInfo",
        "type": "object",
    }
    info = AgentInfo(
        function_tools=[ToolDefinition("get_capital", "Get the capital of a country.", CAPITAL_SCHEMA)],
        allow_text_result=False,
        result_tools=[ToolDefinition("final_result", "The final response which ends this conversation", result_schema)],
        model_settings=None,
    )
    response, _ = await make_model().request([ModelRequest([UserPromptPart("Tell me about Paris")])], info)
    body = fake.bodies()[0]
    assert body["tool_choice"] == "required"
    assert body["tools"] == [
        CAPITAL_TOOL,
        {
            "type": "function",
            "function": {
                "name": "final_result",
                "description": "The final response which ends this conversation",
                "parameters": result_schema,
            },
        },
    ]
    assert response.parts == [
        ToolCallPart("final_result", '{"city": "Paris", "country": "France"}', tool_call_id="call_fr")
    ]


async def test_model_settings_go_in_the_body(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(chat_text("Paris"), chat_text("Paris"))
    settings = {
        "temperature": 0.5,
        "max_tokens": 10,
        "seed": 3,
        "top_p": None,
        "timeout": 5,
        "parallel_tool_calls": False,
    }
    model = make_model()
    messages: list[ModelMessage] = [ModelRequest([UserPromptPart(QUESTION)])]
    await model.request(messages, AgentInfo([], True, [], settings))
    body = fake.bodies()[0]
    # The openai SDK's order: messages, model, then the rest alphabetically. No timeout,
    # and parallel_tool_calls only goes with tools (the API rejects it otherwise).
    assert list(body) == ["messages", "model", "max_tokens", "n", "seed", "stream", "temperature"]
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.5, 10, 3)

    capital = ToolDefinition("get_capital", "Get the capital of a country.", CAPITAL_SCHEMA)
    await model.request(messages, AgentInfo([capital], True, [], settings))
    assert fake.bodies()[1]["parallel_tool_calls"] is False


# -- configuration -----------------------------------------------------------------------------


async def test_the_environment_gives_the_key_and_base_url(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url + "/")
    fake.reply(chat_text("Paris"))
    model = OpenAIModel("gpt-4o")
    assert repr(model) == f"OpenAIModel(model_name='gpt-4o', base_url='{fake.base_url}')"
    assert "sk-from-env" not in repr(model) and "sk-from-env" not in repr(model.provider)
    assert (model.model_name, model.system, model.base_url) == ("gpt-4o", "openai", fake.base_url)
    assert (await Agent(model).run(QUESTION)).data == "Paris"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert fake.requests[0].path == "/v1/chat/completions"
    assert isinstance(Agent("openai:gpt-4o").model, OpenAIModel)


def test_the_default_base_url() -> None:
    assert OpenAIModel("gpt-4o", api_key="sk").base_url == "https://api.openai.com/v1"


def test_without_a_key_construction_fails() -> None:
    with pytest.raises(UserError, match=r"OPENAI_API_KEY.*api_key="):
        OpenAIModel("gpt-4o")
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAIProvider(base_url="http://127.0.0.1:1/v1")


def test_wrong_configurations_fail_at_construction() -> None:
    provider = OpenAIProvider(api_key="sk")
    with pytest.raises(UserError, match="not both"):
        OpenAIModel("gpt-4o", provider=provider, api_key="sk2")
    with pytest.raises(UserError, match="http:// or https://"):
        OpenAIModel("gpt-4o", base_url="127.0.0.1:8000/v1", api_key="sk")
    with pytest.raises(UserError, match="Unknown provider"):
        OpenAIModel("gpt-4o", provider="azure")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="max_retries"):
        OpenAIModel("gpt-4o", api_key="sk", max_retries=-1)


async def test_a_given_http_client_is_used_and_left_open(fake: FakeOpenAI) -> None:
    fake.reply(chat_text("Paris"), chat_text("Paris"))
    async with httpx.AsyncClient(headers={"x-team": "rails"}) as client:
        model = OpenAIModel("gpt-4o", base_url=fake.base_url, api_key="sk", http_client=client)
        agent = Agent(model)
        assert (await agent.run(QUESTION)).data == "Paris"
        assert (await agent.run(QUESTION)).data == "Paris"
        assert not client.is_closed
    assert [r.headers["x-team"] for r in fake.requests] == ["rails", "rails"]
    assert fake.requests[0].headers["user-agent"].startswith("railyard/")


def test_runs_in_separate_event_loops(fake: FakeOpenAI) -> None:
    fake.reply(chat_text("one"), chat_text("two"))
    agent = Agent(OpenAIModel("gpt-4o", base_url=fake.base_url, api_key="sk"))
    assert agent.run_sync(QUESTION).data == "one"
    assert agent.run_sync(QUESTION).data == "two"


# -- retries -----------------------------------------------------------------------------------


async def test_a_429_waits_as_retry_after_says(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(Reply(429, ERR_429, {"retry-after": "0.2"}), chat_text("Paris"))
    started = time.monotonic()
    result = await Agent(make_model()).run(QUESTION)
    assert result.data == "Paris"
    assert len(fake.requests) == 2
    assert time.monotonic() - started >= 0.2
    assert fake.requests[1].at - fake.requests[0].at >= 0.2
    assert fake.requests[0].body == fake.requests[1].body


async def test_a_429_forever_fails_after_three_attempts(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply_forever(Reply(429, ERR_429, {"retry-after": "0"}))
    with pytest.raises(ModelHTTPError) as info:
        await Agent(make_model()).run(QUESTION)
    error = info.value
    assert (error.status_code, error.model_name, error.body) == (429, "gpt-4o", ERR_429["error"])
    assert str(error) == f"status_code: 429, model_name: gpt-4o, body: {ERR_429['error']}"
    assert isinstance(error.__cause__, httpx.HTTPStatusError)
    assert len(fake.requests) == 3


async def test_a_500_forever_with_one_retry(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply_forever(Reply(500, ERR_500))
    with pytest.raises(ModelHTTPError) as info:
        await Agent(make_model(max_retries=1)).run(QUESTION)
    assert (info.value.status_code, info.value.body) == (500, ERR_500["error"])
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status", [408, 409, 502, 503])
async def test_these_statuses_are_retried(
    status: int, fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(Reply(status, {"error": {"message": "try again"}}), chat_text("Paris"))
    assert (await Agent(make_model()).run(QUESTION)).data == "Paris"
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            error_body("Invalid 'messages'", "invalid_request_error"),
            error_body("Invalid 'messages'", "invalid_request_error")["error"],
        ),
        (401, {"detail": "no"}, {"detail": "no"}),
        (404, "Not Found", "Not Found"),
    ],
)
async def test_other_errors_are_not_retried(
    status: int, body: Any, expected: Any, fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply_forever(Reply(status, body, {"content-type": "text/plain"} if isinstance(body, str) else {}))
    with pytest.raises(ModelHTTPError) as info:
        await Agent(make_model()).run(QUESTION)
    assert (info.value.status_code, info.value.body) == (status, expected)
    assert len(fake.requests) == 1


async def test_a_dropped_connection_is_retried(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(Reply(drop=True), chat_text("Paris"))
    assert (await Agent(make_model()).run(QUESTION)).data == "Paris"
    assert len(fake.requests) == 2


async def test_connection_refused_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    model = OpenAIModel("gpt-4o", base_url=url, api_key="sk")
    model.retry_base_delay = 0.01
    with pytest.raises(ModelConnectionError, match=f"Could not reach {url}/chat/completions: ") as info:
        await Agent(model).run(QUESTION)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_a_timeout_is_a_connection_error(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply_forever(Reply(200, chat_text("late"), delay=0.5))
    with pytest.raises(ModelConnectionError, match=r"Could not reach .*/chat/completions: timed out \(ReadTimeout\)"):
        await Agent(make_model(max_retries=0, timeout=0.1)).run(QUESTION)
    assert len(fake.requests) == 1


async def test_a_per_request_timeout_setting(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply_forever(Reply(200, chat_text("late"), delay=0.5))
    info = AgentInfo([], True, [], {"timeout": 0.1})
    with pytest.raises(ModelConnectionError, match="timed out"):
        await make_model(max_retries=0).request([ModelRequest([UserPromptPart(QUESTION)])], info)
    assert "timeout" not in fake.bodies()[0]


def test_how_long_to_wait_before_a_retry() -> None:
    model = OpenAIModel("gpt-4o", api_key="sk")
    wait = model._retry_after
    assert wait(httpx.Headers({"retry-after": "1.5"})) == 1.5
    assert wait(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert wait(httpx.Headers({"retry-after": "3600"})) == 60.0
    assert wait(httpx.Headers({"retry-after": "-3"})) == 0.0
    assert wait(httpx.Headers({"retry-after": "soon"})) is None
    assert wait(httpx.Headers({})) is None
    in_ten = format_datetime(datetime.fromtimestamp(time.time() + 10, UTC), usegmt=True)
    assert 8 <= (wait(httpx.Headers({"retry-after": in_ten})) or 0) <= 10
    delays = [model._backoff(attempt) for attempt in range(6)]
    assert 0.375 <= delays[0] <= 0.5 and 0.75 <= delays[1] <= 1.0
    assert all(6.0 <= delay <= 8.0 for delay in delays[4:])


# -- unusable answers --------------------------------------------------------------------------


async def test_a_non_json_200_is_unexpected(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(Reply(200, "<html>Bad gateway page</html>", {"content-type": "text/html"}))
    with pytest.raises(
        UnexpectedModelBehavior, match=r"Expected a JSON Chat Completions body from .*'<html>Bad gateway"
    ):
        await Agent(make_model()).run(QUESTION)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"object": "list", "data": []}, r'with `choices` .*"object": "list"'),
        ({"choices": []}, "with `choices`"),
        ({"choices": [{"index": 0}]}, r"`choices\[0\]\.message`"),
        ({"choices": [{"message": {"content": 3}}]}, "`content` to be text"),
        ({"choices": [{"message": {"tool_calls": [{"id": "c"}]}}]}, "function name"),
        (
            {"choices": [{"message": {"tool_calls": [{"function": {"name": "t", "arguments": 3}}]}}]},
            "arguments of tool call 't'",
        ),
    ],
)
async def test_json_that_is_not_a_completion_is_unexpected(
    body: dict[str, Any], match: str, fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(body)
    with pytest.raises(UnexpectedModelBehavior, match=match):
        await make_model().request([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO)


async def test_a_minimal_completion(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply({"choices": [{"message": {"content": "", "tool_calls": [{"function": {"name": "t"}}]}}]})
    before = datetime.now(UTC)
    response, usage = await make_model().request([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO)
    assert response.parts == [TextPart(""), ToolCallPart("t", "", tool_call_id=None)]
    assert response.model_name == "gpt-4o" and response.timestamp >= before
    assert usage == Usage(requests=1)
    assert json.loads(json.dumps(fake.bodies()[0]))["model"] == "gpt-4o"


async def test_images_and_audio_go_as_content_parts(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    from railyard.agent import AudioUrl, BinaryContent, DocumentUrl, ImageUrl

    fake.reply(chat_text("A cat"))
    prompt = [
        "What is this?",
        ImageUrl("https://x/cat.png"),
        BinaryContent(b"\x89PNG", "image/png"),
        BinaryContent(b"ID3", "audio/mpeg"),
    ]
    assert (await Agent(make_model()).run(prompt)).data == "A cat"
    assert fake.requests[0].body["messages"] == [
        {
            "role": "user",
            "content": [
                {"text": "What is this?", "type": "text"},
                {"image_url": {"url": "https://x/cat.png"}, "type": "image_url"},
                {"image_url": {"url": "data:image/png;base64,iVBORw=="}, "type": "image_url"},
                {"input_audio": {"data": "SUQz", "format": "mp3"}, "type": "input_audio"},
            ],
        }
    ]
    for item, what in [
        (DocumentUrl("https://x/a.pdf"), "DocumentUrl"),
        (AudioUrl("https://x/a.mp3"), "AudioUrl"),
        (BinaryContent(b"%PDF", "application/pdf"), r"BinaryContent \(application/pdf\)"),
    ]:
        with pytest.raises(UserError, match=f"in a user prompt, not {what}: "):
            await Agent(make_model()).run(["Read this", item])
    assert len(fake.requests) == 1  # nothing was sent for the prompts it cannot carry


# -- streaming ---------------------------------------------------------------------------------


async def collect(model: OpenAIModel, info: AgentInfo = TEXT_INFO) -> tuple[list[object], OpenAIStreamedResponse]:
    """Stream an answer to QUESTION from `model`: its events, and the streamed response."""
    async with model.request_stream([ModelRequest([UserPromptPart(QUESTION)])], info) as stream:
        events: list[object] = [event async for event in stream]
    return events, stream


async def test_a_streamed_text_answer(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(stream_text("The capital", " of France", " is Paris."))
    events, stream = await collect(make_model())
    # OpenAI's first chunk carries the role and empty content, which starts no part.
    assert events == [
        PartStartEvent(0, TextPart("The capital")),
        PartDeltaEvent(0, TextPartDelta(" of France")),
        PartDeltaEvent(0, TextPartDelta(" is Paris.")),
    ]
    assert stream.get() == ModelResponse(
        [TextPart("The capital of France is Paris.")],
        model_name="gpt-4o-2024-08-06",
        timestamp=datetime(2025, 3, 15, 0, 0, 1, tzinfo=UTC),
    )
    assert stream.usage() == Usage(
        requests=1, request_tokens=120, response_tokens=3, total_tokens=123, details=ZERO_DETAILS
    )
    [request] = fake.requests
    assert request.finished.wait(5) and request.outcome == "complete"


async def test_the_stream_request_body_is_the_sdks(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    # What pydantic-ai 0.0.40 (openai 1.66.3) sends for the same streamed requests.
    fake.reply(stream_text("Paris"), stream_tool_calls(("call_fr", "final_result", '{"city": "Paris"}')))
    model = make_model()
    await collect(model)
    result_tool = ToolDefinition("final_result", "The final response which ends this conversation", CAPITAL_SCHEMA)
    capital = ToolDefinition("get_capital", "Get the capital of a country.", CAPITAL_SCHEMA)
    settings: ModelSettings = {"temperature": 0.5, "parallel_tool_calls": False}
    await collect(model, AgentInfo([capital], False, [result_tool], settings))

    plain, with_tools = fake.requests
    assert plain.body == {
        "messages": [{"role": "user", "content": QUESTION}],
        "model": "gpt-4o",
        "n": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert list(plain.body) == ["messages", "model", "n", "stream", "stream_options"]
    assert list(with_tools.body) == [
        "messages",
        "model",
        "n",
        "parallel_tool_calls",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
    ]
    assert with_tools.body["tool_choice"] == "required"
    assert [tool["function"]["name"] for tool in with_tools.body["tools"]] == ["get_capital", "final_result"]
    assert plain.headers["accept"] == "application/json"
    assert plain.headers["authorization"] == "Bearer sk-test-123"
    assert plain.headers["user-agent"].startswith("railyard/")


async def test_a_tool_call_split_across_chunks_is_one_part(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(stream_tool_calls(("call_abc123", "get_capital", ['{"coun', 'try": "Fr', 'ance"}'])))
    events, stream = await collect(make_model())
    assert events == [
        PartStartEvent(0, ToolCallPart("get_capital", "", tool_call_id="call_abc123")),
        PartDeltaEvent(0, ToolCallPartDelta(args_delta='{"coun')),
        PartDeltaEvent(0, ToolCallPartDelta(args_delta='try": "Fr')),
        PartDeltaEvent(0, ToolCallPartDelta(args_delta='ance"}')),
    ]
    assert stream.get().parts == [ToolCallPart("get_capital", '{"country": "France"}', tool_call_id="call_abc123")]
    assert stream.get().timestamp == datetime(2025, 3, 15, tzinfo=UTC)
    assert stream.usage() == Usage(
        requests=1, request_tokens=80, response_tokens=17, total_tokens=97, details=ZERO_DETAILS
    )


async def test_parallel_tool_calls_interleaved_by_index(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(
        stream_tool_calls(
            ("call_fr", "get_capital", '{"country": "France"}'),
            ("call_es", "get_capital", '{"country": "Spain"}'),
            piece_size=12,
            interleave=True,
        )
    )
    events, stream = await collect(make_model())
    assert events == [
        PartStartEvent(0, ToolCallPart("get_capital", "", tool_call_id="call_fr")),
        PartStartEvent(1, ToolCallPart("get_capital", "", tool_call_id="call_es")),
        PartDeltaEvent(0, ToolCallPartDelta(args_delta='{"country": ')),
        PartDeltaEvent(1, ToolCallPartDelta(args_delta='{"country": ')),
        PartDeltaEvent(0, ToolCallPartDelta(args_delta='"France"}')),
        PartDeltaEvent(1, ToolCallPartDelta(args_delta='"Spain"}')),
    ]
    assert stream.get().parts == [
        ToolCallPart("get_capital", '{"country": "France"}', tool_call_id="call_fr"),
        ToolCallPart("get_capital", '{"country": "Spain"}', tool_call_id="call_es"),
    ]


async def test_what_a_lenient_reader_accepts(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    # Comments, `data:` without a space, a chunk split over two `data:` lines, a choice
    # without a delta, text before a call, a call whose name comes after its id, no usage.
    first = json.dumps(chunk({"role": "assistant", "content": "Let me look."}))
    cut = first.index('"object"')
    fake.reply(
        [
            ": keep-alive\n\n",
            f"data:{first[:cut]}\ndata:{first[cut:]}\n\n",
            {"choices": [{"index": 0, "finish_reason": None}]},
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"name": "get_capital", "arguments": '{"country"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "France"}'}}]}),
            chunk({}, "tool_calls", model="gpt-4o-mini"),
        ]
    )
    events, stream = await collect(make_model())
    assert events == [
        PartStartEvent(0, TextPart("Let me look.")),
        PartStartEvent(1, ToolCallPart("get_capital", '{"country"', tool_call_id="call_1")),
        PartDeltaEvent(1, ToolCallPartDelta(args_delta=': "France"}')),
    ]
    response = stream.get()
    assert response.parts == [
        TextPart("Let me look."),
        ToolCallPart("get_capital", '{"country": "France"}', tool_call_id="call_1"),
    ]
    assert response.model_name == "gpt-4o-mini"
    assert stream.usage() == Usage(requests=1)


async def test_a_429_then_a_stream(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(Reply(429, ERR_429, {"retry-after": "0.1"}), Reply(drop=True), stream_text("Paris"))
    events, stream = await collect(make_model())
    assert events == [PartStartEvent(0, TextPart("Paris"))]
    assert len(fake.requests) == 3
    assert fake.requests[1].at - fake.requests[0].at >= 0.1
    assert fake.requests[0].body == fake.requests[2].body
    assert stream.get().parts == [TextPart("Paris")]


@pytest.mark.parametrize(("status", "attempts"), [(500, 3), (400, 1)])
async def test_an_error_status_before_the_stream(
    status: int, attempts: int, fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    error = ERR_500 if status == 500 else error_body("Invalid 'messages'", "invalid_request_error")
    fake.reply_forever(Reply(status, error))
    with pytest.raises(ModelHTTPError) as info:
        await collect(make_model())
    assert (info.value.status_code, info.value.model_name, info.value.body) == (status, "gpt-4o", error["error"])
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert len(fake.requests) == attempts


async def test_an_unreachable_server_for_a_stream() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIModel("gpt-4o", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk", max_retries=0)
    with pytest.raises(ModelConnectionError, match=r"Could not reach http://127\.0\.0\.1:.*/chat/completions: "):
        await collect(model)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (
            Reply(events=stream_text("The", " capital"), cut_after=2),
            r"The stream from http://.*/v1/chat/completions ended before `data: \[DONE\]`, after 2 chunk\(s\); "
            "the answer is incomplete",
        ),
        (
            Reply(events=stream_text("The", " capital"), drop_after=2),
            r"broke off before `data: \[DONE\]`, after 2 chunk\(s\): .*incomplete chunked read",
        ),
    ],
    ids=["ended", "broken"],
)
async def test_a_stream_cut_off_before_done_is_unexpected(
    reply: Reply, match: str, fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(reply)
    seen: list[object] = []
    with pytest.raises(UnexpectedModelBehavior, match=match):
        async with make_model().request_stream([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO) as stream:
            async for event in stream:
                seen.append(event)
    assert seen == [PartStartEvent(0, TextPart("The"))]  # what came before the cut
    assert len(fake.requests) == 1  # nothing is retried once the stream has begun


async def test_a_pause_longer_than_the_timeout_breaks_the_stream(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(Reply(events=stream_text("The", " capital"), event_delay=0.3))
    with pytest.raises(UnexpectedModelBehavior, match=r"after 1 chunk\(s\): timed out \(ReadTimeout\)"):
        await collect(make_model(timeout=0.1))


@pytest.mark.parametrize(
    ("events", "match"),
    [
        (
            [chunk({"content": "Par"}), "data: {not json\n\n"],
            r"Expected a JSON chat.completion.chunk in the stream from .*, got '\{not json'",
        ),
        ([chunk({"content": "Par"}), "data: [1, 2]\n\n"], r"Expected a JSON object .*, got '\[1, 2\]'"),
        ([chunk({"content": 3})], r"Expected `content` to be text in chunk 1 of the stream"),
        ([{"choices": [{"delta": "x"}]}], r"`choices\[0\]\.delta` to be an object"),
        ([{"choices": {"delta": {}}}], "`choices` to be a list of objects"),
        ([chunk({"tool_calls": {"index": 0}})], "`tool_calls` to be a list"),
        ([chunk({"tool_calls": ["call"]})], "each tool call to be an object"),
        ([chunk({"tool_calls": [{"index": 0, "function": {"name": 7}}]})], "`function.name`"),
    ],
)
async def test_a_chunk_that_is_not_a_completion_chunk_is_unexpected(
    events: list[Any], match: str, fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(events)
    with pytest.raises(UnexpectedModelBehavior, match=match):
        await collect(make_model())


async def test_an_error_in_the_stream(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply([chunk({"content": "Par"}), ERR_500], ['event: error\ndata: {"message": "overloaded"}\n\n'])
    with pytest.raises(UnexpectedModelBehavior, match="reported an error after 1 chunk") as info:
        await collect(make_model())
    assert info.value.message.endswith(": The server had an error while processing your request. Sorry about that!")
    assert info.value.body is not None and json.loads(info.value.body) == ERR_500["error"]
    with pytest.raises(UnexpectedModelBehavior, match=r"reported an error after 0 chunk.*: overloaded"):
        await collect(make_model())


async def test_a_whole_body_instead_of_a_stream_is_unexpected(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]
) -> None:
    fake.reply(chat_text("Paris"))  # a server that ignores "stream": true
    with pytest.raises(
        UnexpectedModelBehavior, match=r"Expected a stream of server-sent events from .*, got '\{\"id\": \"chatcmpl-"
    ):
        await collect(make_model())


async def test_stopping_early_closes_the_response(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(
        Reply(events=stream_text(*["word "] * 200), event_delay=0.01),
        Reply(events=stream_text(*["word "] * 200), event_delay=0.01),
        stream_text("Paris"),
    )
    async with httpx.AsyncClient() as client:
        model = OpenAIModel("gpt-4o", base_url=fake.base_url, api_key="sk", http_client=client)
        started = time.monotonic()
        async with model.request_stream([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO) as stream:
            async for event in stream:
                assert event == PartStartEvent(0, TextPart("word "))
                break
        assert stream.get().parts == [TextPart("word ")]
        with pytest.raises(KeyError):  # the block raising closes the response too
            async with model.request_stream([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO) as stream:
                async for event in stream:
                    raise KeyError(event)
        assert time.monotonic() - started < 1.5  # 200 events take 2 seconds to send
        for request in fake.requests:
            assert request.finished.wait(5)
            assert (request.outcome, request.events_sent < 100) == ("client disconnected", True)
        # the client is left open, and works for the next stream
        assert not client.is_closed
        async with model.request_stream([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO) as stream:
            assert [event async for event in stream] == [PartStartEvent(0, TextPart("Paris"))]


async def test_a_stream_read_to_the_end_leaves_its_connection_for_the_next(fake: FakeOpenAI) -> None:
    fake.reply(stream_text("one"), stream_text("two"))
    async with httpx.AsyncClient() as client:
        model = OpenAIModel("gpt-4o", base_url=fake.base_url, api_key="sk", http_client=client)
        assert (await collect(model))[1].get().parts == [TextPart("one")]
        assert (await collect(model))[1].get().parts == [TextPart("two")]
    first, second = fake.requests
    assert first.peer == second.peer  # what follows `[DONE]` was read, so the connection was reused


async def test_a_client_made_for_a_stream_is_closed(
    fake: FakeOpenAI, make_model: Callable[..., OpenAIModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[httpx.AsyncClient] = []

    class Recorded(httpx.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", Recorded)
    fake.reply(Reply(events=stream_text(*["word "] * 50), event_delay=0.01))
    async with make_model().request_stream([ModelRequest([UserPromptPart(QUESTION)])], TEXT_INFO) as stream:
        async for _ in stream:
            break
        assert [client.is_closed for client in made] == [False]
    assert [client.is_closed for client in made] == [True]


async def test_a_streamed_run_through_the_agent_graph(fake: FakeOpenAI, make_model: Callable[..., OpenAIModel]) -> None:
    fake.reply(
        stream_tool_calls(("call_abc123", "get_capital", '{"country": "France"}')),
        stream_text("The capital", " is Paris."),
    )
    agent = Agent(make_model(), system_prompt="Be concise.", tools=[get_capital])
    seen: list[list[object]] = []
    async with agent.iter(QUESTION) as run:
        async for node in run:
            if Agent.is_model_request_node(node):
                async with node.stream(run.ctx) as events:
                    seen.append([event async for event in events])
    assert run.result is not None and run.result.data == "The capital is Paris."
    assert seen[0][0] == PartStartEvent(0, ToolCallPart("get_capital", "", tool_call_id="call_abc123"))
    assert seen[1] == [
        PartStartEvent(0, TextPart("The capital")),
        FinalResultEvent(None, None),
        PartDeltaEvent(0, TextPartDelta(" is Paris.")),
    ]
    assert run.result.usage() == Usage(
        requests=2, request_tokens=200, response_tokens=19, total_tokens=219, details=ZERO_DETAILS
    )
    first, second = fake.bodies()
    assert first["stream"] is second["stream"] is True
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_capital", "arguments": '{"country": "France"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": "Paris"},
    ]

    # The same answers, not streamed, give the same conversation.
    fake.reply(
        chat_tool_calls(("call_abc123", "get_capital", '{"country": "France"}')),
        chat_text("The capital is Paris."),
    )
    whole = await agent.run(QUESTION)
    assert shape(whole.all_messages()) == shape(run.result.all_messages())
