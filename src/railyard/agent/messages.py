"""The messages of an agent's conversation with its model, and their JSON.

A conversation is a list of `ModelRequest` (what the agent sends: system and user
prompts, tool results, retry prompts) and `ModelResponse` (what the model answers:
text, tool calls). `ModelMessagesTypeAdapter` turns a conversation into JSON and back,
exactly. The events of a streamed run (`PartStartEvent`, `FinalResultEvent`, ...) are
here too, as in pydantic-ai (`railyard.agent.events` re-exports them).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pydantic
import pydantic_core
from pydantic_core import ErrorDetails

from railyard.agent.content import (
    AudioFormat,
    AudioMediaType,
    AudioUrl,
    BinaryContent,
    DocumentFormat,
    DocumentMediaType,
    DocumentUrl,
    ImageFormat,
    ImageMediaType,
    ImageUrl,
    UserContent,
)
from railyard.agent.exceptions import UnexpectedModelBehavior

__all__ = (
    "AgentStreamEvent",
    "AudioFormat",
    "AudioMediaType",
    "AudioUrl",
    "BinaryContent",
    "DocumentFormat",
    "DocumentMediaType",
    "DocumentUrl",
    "FinalResultEvent",
    "FunctionToolCallEvent",
    "FunctionToolResultEvent",
    "HandleResponseEvent",
    "ImageFormat",
    "ImageMediaType",
    "ImageUrl",
    "ModelMessage",
    "ModelMessagesTypeAdapter",
    "ModelRequest",
    "ModelRequestPart",
    "ModelResponse",
    "ModelResponsePart",
    "ModelResponsePartDelta",
    "ModelResponseStreamEvent",
    "PartDeltaEvent",
    "PartStartEvent",
    "RetryPromptPart",
    "SystemPromptPart",
    "TextPart",
    "TextPartDelta",
    "ToolCallPart",
    "ToolCallPartDelta",
    "ToolReturnPart",
    "UnexpectedModelBehavior",
    "UserContent",
    "UserPromptPart",
    "error_details_ta",
    "tool_return_ta",
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

tool_return_ta: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any, config=pydantic.ConfigDict(defer_build=True))
"""Turns any tool return into JSON."""
error_details_ta: pydantic.TypeAdapter[list[ErrorDetails]] = pydantic.TypeAdapter(
    list[ErrorDetails], config=pydantic.ConfigDict(defer_build=True)
)
"""Reads and writes validation errors (a retry prompt's content)."""


# -- events of a streamed run ------------------------------------------------------


@dataclass
class TextPartDelta:
    """More text for a `TextPart`."""

    content_delta: str
    """The text to append."""
    part_delta_kind: Literal["text"] = "text"
    """Tag of this kind of delta."""

    def apply(self, part: ModelResponsePart) -> TextPart:
        """`part` with the text appended.

        Raises:
            ValueError: `part` is not a `TextPart`.
        """
        if not isinstance(part, TextPart):
            raise ValueError("Cannot apply TextPartDeltas to non-TextParts")
        return dataclasses.replace(part, content=part.content + self.content_delta)


@dataclass
class ToolCallPartDelta:
    """More of a `ToolCallPart`: a piece of its name, of its JSON arguments, or its id."""

    tool_name_delta: str | None = None
    """Text to append to the tool's name."""
    args_delta: str | dict[str, Any] | None = None
    """Text to append to the JSON arguments (or arguments to merge in, as a dict)."""
    tool_call_id: str | None = None
    """The call's id, once known."""
    part_delta_kind: Literal["tool_call"] = "tool_call"
    """Tag of this kind of delta."""

    def as_part(self) -> ToolCallPart | None:
        """The whole call this delta describes, once it has both a name and arguments; else None."""
        if self.tool_name_delta is None or self.args_delta is None:
            return None
        return ToolCallPart(self.tool_name_delta, self.args_delta, self.tool_call_id)

    def apply(self, part: ToolCallPart | ToolCallPartDelta) -> ToolCallPart | ToolCallPartDelta:
        """`part` (a call, or a delta still waiting for its name or arguments) with this delta added.

        A delta that then has both a name and arguments becomes a `ToolCallPart`.

        Raises:
            ValueError: `part` is neither a tool call nor a tool call delta.
            UnexpectedModelBehavior: JSON text added to dict arguments or the other way round,
                or a second, different call id.
        """
        name: str | None
        args: str | dict[str, Any] | None
        if isinstance(part, ToolCallPart):
            name, args, call_id = part.tool_name, part.args, part.tool_call_id
        elif isinstance(part, ToolCallPartDelta):
            name, args, call_id = part.tool_name_delta, part.args_delta, part.tool_call_id
        else:
            raise ValueError(f"Can only apply ToolCallPartDeltas to ToolCallParts or ToolCallPartDeltas, not {part}")
        if self.tool_name_delta:
            name = (name or "") + self.tool_name_delta
        if isinstance(self.args_delta, str):
            if isinstance(args, dict):
                raise UnexpectedModelBehavior(
                    f"Cannot apply JSON deltas to non-JSON tool arguments (part={part!r}, delta={self!r})"
                )
            args = (args or "") + self.args_delta
        elif isinstance(self.args_delta, dict):
            if isinstance(args, str):
                raise UnexpectedModelBehavior(
                    f"Cannot apply dict deltas to non-dict tool arguments (part={part!r}, delta={self!r})"
                )
            args = {**(args or {}), **self.args_delta}
        if self.tool_call_id:
            if call_id is not None and call_id != self.tool_call_id:
                raise UnexpectedModelBehavior(
                    "Cannot apply a new tool_call_id to a ToolCallPartDelta that already has one "
                    f"(part={part!r}, delta={self!r})"
                )
            call_id = self.tool_call_id
        if isinstance(part, ToolCallPart):
            return ToolCallPart(name or "", args if args is not None else "", call_id)
        delta = ToolCallPartDelta(name, args, call_id)
        return delta.as_part() or delta


ModelResponsePartDelta = Annotated[TextPartDelta | ToolCallPartDelta, pydantic.Discriminator("part_delta_kind")]
"""A change to a part of a response being streamed."""


@dataclass
class PartStartEvent:
    """A new part of the response began at `index`."""

    index: int
    """Where the part is in the response."""
    part: ModelResponsePart
    """The part so far."""
    event_kind: Literal["part_start"] = "part_start"
    """Tag of this kind of event."""


@dataclass
class PartDeltaEvent:
    """The part at `index` grew."""

    index: int
    """Where the part is in the response."""
    delta: ModelResponsePartDelta
    """What was added."""
    event_kind: Literal["part_delta"] = "part_delta"
    """Tag of this kind of event."""


@dataclass
class FinalResultEvent:
    """The response being streamed carries the run's result: text, or the named result tool."""

    tool_name: str | None
    """The result tool the model is calling, or None for a text result."""
    tool_call_id: str | None
    """The id of that call, if the model gave one."""
    event_kind: Literal["final_result"] = "final_result"
    """Tag of this kind of event."""


ModelResponseStreamEvent = Annotated[PartStartEvent | PartDeltaEvent, pydantic.Discriminator("event_kind")]
"""What a streamed model response yields."""
AgentStreamEvent = Annotated[PartStartEvent | PartDeltaEvent | FinalResultEvent, pydantic.Discriminator("event_kind")]
"""What streaming a `ModelRequestNode` yields."""


@dataclass
class FunctionToolCallEvent:
    """The model's call of a function tool is about to run."""

    part: ToolCallPart
    """The call."""
    call_id: str = field(init=False)
    """The call's id: the model's, or a new one when the model gave none."""
    event_kind: Literal["function_tool_call"] = "function_tool_call"
    """Tag of this kind of event."""

    def __post_init__(self) -> None:
        self.call_id = self.part.tool_call_id or str(uuid.uuid4())


@dataclass
class FunctionToolResultEvent:
    """A function tool call finished: its return, or what the model must fix."""

    result: ToolReturnPart | RetryPromptPart
    """What goes back to the model."""
    tool_call_id: str
    """The `call_id` of the `FunctionToolCallEvent` it answers."""
    event_kind: Literal["function_tool_result"] = "function_tool_result"
    """Tag of this kind of event."""


HandleResponseEvent = Annotated[FunctionToolCallEvent | FunctionToolResultEvent, pydantic.Discriminator("event_kind")]
"""What streaming a `CallToolsNode` yields."""
