"""OpenAI Chat Completions on the wire: messages and tools out, an answer's parts and usage in."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from railyard.agent.content import BinaryContent, ImageUrl
from railyard.agent.exceptions import UnexpectedModelBehavior, UserError
from railyard.agent.messages import (
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

__all__ = (
    "EXCERPT",
    "describe",
    "encode",
    "error_body",
    "excerpt",
    "map_request",
    "map_response",
    "map_tool",
    "read_error_body",
    "read_parts",
    "read_usage",
)

EXCERPT = 200
"""How many characters of an unusable body an error message quotes."""


# -- mapping messages to the wire -----------------------------------------------------------


def map_request(message: ModelRequest) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, SystemPromptPart):
            wire.append({"role": "system", "content": part.content})
        elif isinstance(part, UserPromptPart):
            wire.append({"role": "user", "content": _user_content(part)})
        elif isinstance(part, ToolReturnPart):
            call_id = _need_call_id(part.tool_call_id, part)
            wire.append({"role": "tool", "tool_call_id": call_id, "content": part.model_response_str()})
        elif isinstance(part, RetryPromptPart):
            if part.tool_name is None:
                wire.append({"role": "user", "content": part.model_response()})
            else:
                call_id = _need_call_id(part.tool_call_id, part)
                wire.append({"role": "tool", "tool_call_id": call_id, "content": part.model_response()})
        else:  # pragma: no cover - the part types are closed
            raise UserError(f"Cannot send {type(part).__name__} to an OpenAI model")
    return wire


def _user_content(part: UserPromptPart) -> str | list[dict[str, Any]]:
    if isinstance(part.content, str):
        return part.content
    return [_content_item(item) for item in part.content]


def _content_item(item: object) -> dict[str, Any]:
    if isinstance(item, str):
        return {"text": item, "type": "text"}
    if isinstance(item, ImageUrl):
        return {"image_url": {"url": item.url}, "type": "image_url"}
    if isinstance(item, BinaryContent) and item.is_image:
        encoded = base64.b64encode(item.data).decode()
        return {"image_url": {"url": f"data:{item.media_type};base64,{encoded}"}, "type": "image_url"}
    if isinstance(item, BinaryContent) and item.is_audio and item.media_type in ("audio/mpeg", "audio/wav"):
        encoded = base64.b64encode(item.data).decode()
        return {"input_audio": {"data": encoded, "format": item.format}, "type": "input_audio"}
    what = f"{type(item).__name__} ({item.media_type})" if isinstance(item, BinaryContent) else type(item).__name__
    raise UserError(
        f"OpenAIModel can send text, images and mp3/wav audio bytes in a user prompt, not {what}: {item!r:.100}"
    )


def map_response(message: ModelResponse) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            texts.append(part.content)
        else:
            calls.append(
                {
                    "id": _need_call_id(part.tool_call_id, part),
                    "type": "function",
                    "function": {"name": part.tool_name, "arguments": part.args_as_json_str()},
                }
            )
    wire: dict[str, Any] = {"role": "assistant"}
    if texts:
        wire["content"] = "\n\n".join(texts)
    if calls:
        wire["tool_calls"] = calls
    return wire


def _need_call_id(call_id: str | None, part: object) -> str:
    if call_id is None:
        raise UserError(
            f"OpenAI needs the id of every tool call, and this part has none: {part!r:.200}. "
            "It probably comes from a conversation with another model."
        )
    return call_id


def map_tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters_json_schema},
    }


# -- reading the answer ------------------------------------------------------------------------


def read_parts(message: dict[str, Any], url: str) -> list[ModelResponsePart]:
    parts: list[ModelResponsePart] = []
    content = message.get("content")
    if content is not None:
        if not isinstance(content, str):
            raise UnexpectedModelBehavior(
                f"Expected `content` to be text in the answer from {url}, got {excerpt(json.dumps(content))}"
            )
        parts.append(TextPart(content))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str):
            raise UnexpectedModelBehavior(
                f"Expected each tool call to have a function name in the answer from {url}, "
                f"got {excerpt(json.dumps(call))}"
            )
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        if not isinstance(arguments, str | dict):
            raise UnexpectedModelBehavior(
                f"Expected the arguments of tool call {name!r} to be a JSON string from {url}, "
                f"got {excerpt(json.dumps(arguments))}"
            )
        call_id = call.get("id")
        parts.append(ToolCallPart(name, arguments, tool_call_id=call_id if isinstance(call_id, str) else None))
    return parts


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_usage(usage: object) -> Usage:
    """The request's usage; `details` merges the completion and then the prompt counters."""
    if not isinstance(usage, dict):
        return Usage(requests=1)
    details: dict[str, int] = {}
    for key in ("completion_tokens_details", "prompt_tokens_details"):
        counters = usage.get(key)
        if isinstance(counters, dict):
            details.update({name: value for name, value in counters.items() if _int_or_none(value) is not None})
    return Usage(
        requests=1,
        request_tokens=_int_or_none(usage.get("prompt_tokens")),
        response_tokens=_int_or_none(usage.get("completion_tokens")),
        total_tokens=_int_or_none(usage.get("total_tokens")),
        details=details or None,
    )


def error_body(response: httpx.Response) -> object | None:
    """The API's `error` object when the body is JSON with one, else the JSON, else the text."""
    try:
        data: object = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text or None
    if isinstance(data, dict) and data.get("error") is not None:
        error: object = data["error"]
        return error
    return data


async def read_error_body(response: httpx.Response) -> object | None:
    """`error_body` of a streamed answer, read first; None when it cannot be read."""
    try:
        await response.aread()
    except httpx.TransportError:
        return None  # the status says enough
    return error_body(response)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def excerpt(text: str) -> str:
    if not text:
        return "an empty body"
    shown = text if len(text) <= EXCERPT else text[:EXCERPT] + "..."
    return repr(shown)


def describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return str(exc) or type(exc).__name__
