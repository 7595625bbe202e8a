"""Agent messages: reprs, JSON round trips, retry prompts; usage and its limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pydantic
import pytest

from railyard.agent.exceptions import UsageLimitExceeded
from railyard.agent.messages import (
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.usage import Usage, UsageLimits

WHEN = datetime(2026, 11, 22, 4, 37, 27, 333376, tzinfo=UTC)


def conversation() -> list[ModelRequest | ModelResponse]:
    return [
        ModelRequest(
            parts=[SystemPromptPart("Be concise."), UserPromptPart("What is the capital of France?", timestamp=WHEN)]
        ),
        ModelResponse(
            parts=[TextPart("let me check"), ToolCallPart("get_capital", {"country": "France"})],
            model_name="function:fn:",
            timestamp=WHEN,
        ),
        ModelRequest(parts=[ToolReturnPart("get_capital", "Paris", timestamp=WHEN)]),
        ModelResponse(
            parts=[ToolCallPart("get_capital", '{"country": 123}')], model_name="function:fn:", timestamp=WHEN
        ),
        ModelRequest(
            parts=[
                RetryPromptPart(
                    [
                        {
                            "type": "string_type",
                            "loc": ("country",),
                            "msg": "Input should be a valid string",
                            "input": 123,
                        }
                    ],
                    tool_name="get_capital",
                    timestamp=WHEN,
                )
            ]
        ),
        ModelResponse(parts=[TextPart("Paris")], model_name="function:fn:", timestamp=WHEN),
    ]


def test_reprs_show_every_field() -> None:
    assert repr(UserPromptPart("hi", timestamp=WHEN)) == (
        "UserPromptPart(content='hi', timestamp=datetime.datetime(2026, 11, 22, 4, 37, 27, 333376, "
        "tzinfo=datetime.timezone.utc), part_kind='user-prompt')"
    )
    assert repr(ModelResponse([TextPart("Paris")], model_name="gpt-4o", timestamp=WHEN)).startswith(
        "ModelResponse(parts=[TextPart(content='Paris', part_kind='text')], model_name='gpt-4o', timestamp="
    )
    assert repr(ModelRequest([SystemPromptPart("x")])) == (
        "ModelRequest(parts=[SystemPromptPart(content='x', dynamic_ref=None, part_kind='system-prompt')], kind='request')"
    )


def test_a_conversation_round_trips_through_json_exactly() -> None:
    messages = conversation()
    dumped = ModelMessagesTypeAdapter.dump_json(messages)
    data = json.loads(dumped)
    assert data[0] == {
        "parts": [
            {"content": "Be concise.", "dynamic_ref": None, "part_kind": "system-prompt"},
            {
                "content": "What is the capital of France?",
                "timestamp": "2026-11-22T04:37:27.333376Z",
                "part_kind": "user-prompt",
            },
        ],
        "kind": "request",
    }
    assert data[1]["parts"][1] == {
        "tool_name": "get_capital",
        "args": {"country": "France"},
        "tool_call_id": None,
        "part_kind": "tool-call",
    }
    assert data[3]["parts"][0]["args"] == '{"country": 123}'
    loaded = ModelMessagesTypeAdapter.validate_json(dumped)
    assert loaded == messages
    assert ModelMessagesTypeAdapter.dump_json(loaded) == dumped


def test_bad_message_json_is_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"union_tag_invalid|does not match any of the expected tags"):
        ModelMessagesTypeAdapter.validate_json('[{"parts": [], "kind": "nonsense"}]')


def test_retry_prompt_text() -> None:
    plain = RetryPromptPart("No such country: Narnia", tool_name="get_capital")
    assert plain.model_response() == "No such country: Narnia\n\nFix the errors and try again."
    errors = RetryPromptPart(
        [{"type": "missing", "loc": ("country",), "msg": "Field required", "input": {}, "url": "x"}]
    )  # type: ignore[typeddict-unknown-key]
    assert errors.model_response() == (
        '1 validation errors: [\n  {\n    "type": "missing",\n    "loc": [\n      "country"\n    ],\n'
        '    "msg": "Field required",\n    "input": {}\n  }\n]\n\nFix the errors and try again.'
    )


def test_tool_parts_helpers() -> None:
    assert ToolCallPart("t", '{"a": 1}').args_as_dict() == {"a": 1}
    assert ToolCallPart("t", '{"a": 1}').args_as_json_str() == '{"a": 1}'
    assert ToolCallPart("t", {"a": 1}).args_as_json_str() == '{"a":1}'
    assert ToolReturnPart("t", {"x": 1}).model_response_str() == '{"x":1}'
    assert ToolReturnPart("t", "plain").model_response_object() == {"return_value": "plain"}


def test_usage_adds_up_and_limits_raise_with_clear_messages() -> None:
    total = Usage(requests=1, request_tokens=10) + Usage(response_tokens=3)
    assert total == Usage(requests=1, request_tokens=10, response_tokens=3, total_tokens=None, details=None)
    assert (
        repr(Usage()) == "Usage(requests=0, request_tokens=None, response_tokens=None, total_tokens=None, details=None)"
    )
    limits = UsageLimits(request_limit=1, total_tokens_limit=60)
    limits.check_before_request(Usage(requests=0))
    with pytest.raises(UsageLimitExceeded, match=r"^The next request would exceed the request_limit of 1$"):
        limits.check_before_request(Usage(requests=1))
    with pytest.raises(UsageLimitExceeded, match=r"^Exceeded the total_tokens_limit of 60 \(total_tokens=118\)$"):
        limits.check_tokens(Usage(requests=2, total_tokens=118))
    assert limits.has_token_limits() and not UsageLimits().has_token_limits()
