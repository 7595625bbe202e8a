"""OpenAIModel against a real local Chat Completions server: bodies, headers, tool rounds, usage, retries, errors."""

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
from railyard.agent.models.openai import OpenAIModel, OpenAIProvider
from railyard.agent.usage import Usage
from tests.support.fake_openai import FakeOpenAI, Reply, chat_text, chat_tool_calls, error_body

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
