"""The messages of an agent's conversation with its model, and their JSON.

A conversation is a list of `ModelRequest` (what the agent sends: system and user
prompts, tool results, retry prompts) and `ModelResponse` (what the model answers:
text, tool calls). `ModelMessagesTypeAdapter` turns a conversation into JSON and back,
exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pydantic
import pydantic_core
from pydantic_core import ErrorDetails

from railyard.agent.content import AudioUrl, BinaryContent, DocumentUrl, ImageUrl, UserContent

__all__ = (
    "AudioUrl",
    "BinaryContent",
    "DocumentUrl",
    "ImageUrl",
    "ModelMessage",
    "ModelMessagesTypeAdapter",
    "ModelRequest",
    "ModelRequestPart",
    "ModelResponse",
    "ModelResponsePart",
    "RetryPromptPart",
    "SystemPromptPart",
    "TextPart",
    "ToolCallPart",
    "ToolReturnPart",
    "UserContent",
    "UserPromptPart",
)


def _now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class SystemPromptPart:
    """Instructions for the model, sent at the start of a conversation."""

    content: str
    """The instructions."""
    dynamic_ref: str | None = None
    """The name of the function that made a dynamic system prompt (re-evaluated each run)."""
    part_kind: Literal["system-prompt"] = "system-prompt"
    """Tag of this kind of part."""


@dataclass
class UserPromptPart:
    """What the user asked."""

    content: str | Sequence[UserContent]
    """The prompt: text, or text with images, sounds and documents."""
    timestamp: datetime = field(default_factory=_now_utc)
    """When it was made."""
    part_kind: Literal["user-prompt"] = "user-prompt"
    """Tag of this kind of part."""


@dataclass
class ToolReturnPart:
    """What a tool returned, sent back to the model."""

    tool_name: str
    """The tool's name."""
    content: Any
    """What it returned."""
    tool_call_id: str | None = None
    """The id of the call it answers, if the model gave one."""
    timestamp: datetime = field(default_factory=_now_utc)
    """When it returned."""
    part_kind: Literal["tool-return"] = "tool-return"
    """Tag of this kind of part."""

    def model_response_str(self) -> str:
        """The return value as the model reads it: a string as is, anything else as JSON."""
        if isinstance(self.content, str):
            return self.content
        return pydantic_core.to_json(self.content).decode()

    def model_response_object(self) -> dict[str, Any]:
        """The return value as a JSON-ready object (anything but a dict wrapped as `return_value`)."""
        content = pydantic_core.to_jsonable_python(self.content)
        if isinstance(self.content, dict):
            return dict(content)
        return {"return_value": content}


_FIX = "\n\nFix the errors and try again."


@dataclass
class RetryPromptPart:
    """Asks the model to try again: its tool arguments did not validate, or a tool said to retry."""

    content: list[ErrorDetails] | str
    """The validation errors, or the tool's message."""
    tool_name: str | None = None
    """The tool concerned, if any."""
    tool_call_id: str | None = None
    """The id of the call it answers, if the model gave one."""
    timestamp: datetime = field(default_factory=_now_utc)
    """When it was made."""
    part_kind: Literal["retry-prompt"] = "retry-prompt"
    """Tag of this kind of part."""

    def model_response(self) -> str:
        """The text the model reads."""
        if isinstance(self.content, str):
            return self.content + _FIX
        errors = [
            {key: error[key] for key in ("type", "loc", "msg", "input") if key in error} for error in self.content
        ]
        return f"{len(errors)} validation errors: {json.dumps(errors, indent=2)}{_FIX}"


@dataclass
class TextPart:
    """Text the model answered."""

    content: str
    """The text."""
    part_kind: Literal["text"] = "text"
    """Tag of this kind of part."""

    def has_content(self) -> bool:
        """Whether there is any text."""
        return bool(self.content)


@dataclass
class ToolCallPart:
    """The model calling a tool."""

    tool_name: str
    """The tool's name."""
    args: str | dict[str, Any]
    """The arguments: a JSON string, or a dict, as the model gave them."""
    tool_call_id: str | None = None
    """The call's id, if the model gave one."""
    part_kind: Literal["tool-call"] = "tool-call"
    """Tag of this kind of part."""

    def args_as_dict(self) -> dict[str, Any]:
        """The arguments as a dict."""
        if isinstance(self.args, dict):
            return self.args
        parsed: dict[str, Any] = pydantic_core.from_json(self.args)
        return parsed

    def args_as_json_str(self) -> str:
        """The arguments as a JSON string (a string as given)."""
        if isinstance(self.args, str):
            return self.args
        return pydantic_core.to_json(self.args).decode()

    def has_content(self) -> bool:
        """Whether the call has arguments."""
        return bool(self.args)


ModelRequestPart = Annotated[
    SystemPromptPart | UserPromptPart | ToolReturnPart | RetryPromptPart, pydantic.Discriminator("part_kind")
]
"""A part of a request to the model."""
ModelResponsePart = Annotated[TextPart | ToolCallPart, pydantic.Discriminator("part_kind")]
"""A part of the model's response."""


@dataclass
class ModelRequest:
    """What the agent sends the model in one request."""

    parts: list[ModelRequestPart]
    """The request's parts."""
    kind: Literal["request"] = "request"
    """Tag of this kind of message."""


@dataclass
class ModelResponse:
    """What the model answered."""

    parts: list[ModelResponsePart]
    """The response's parts."""
    model_name: str | None = None
    """The model that answered."""
    timestamp: datetime = field(default_factory=_now_utc)
    """When it answered."""
    kind: Literal["response"] = "response"
    """Tag of this kind of message."""


ModelMessage = Annotated[ModelRequest | ModelResponse, pydantic.Discriminator("kind")]
"""A message of a conversation."""

ModelMessagesTypeAdapter: pydantic.TypeAdapter[list[ModelMessage]] = pydantic.TypeAdapter(list[ModelMessage])
"""Reads and writes a conversation as JSON: `dump_json(messages)`, `validate_json(data)`."""
