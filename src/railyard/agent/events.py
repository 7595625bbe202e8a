"""Events of a streamed agent run: a model's answer as it arrives, and tools as they run.

`async with node.stream(run.ctx) as events` on a `ModelRequestNode` gives the answer's
parts as they start (`PartStartEvent`) and grow (`PartDeltaEvent`), with a
`FinalResultEvent` as soon as the answer is known to carry the run's result; on a
`CallToolsNode` it gives each tool call (`FunctionToolCallEvent`) and its result
(`FunctionToolResultEvent`). `PartsBuilder` is how a streamed model turns the pieces it
receives into these events and, at the end, into the parts of one `ModelResponse`.

The event classes live in `railyard.agent.messages` (where pydantic-ai code imports them
from) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from railyard.agent.messages import (
    AgentStreamEvent,
    FinalResultEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    HandleResponseEvent,
    ModelResponsePart,
    ModelResponsePartDelta,
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolCallPartDelta,
)

__all__ = (
    "AgentStreamEvent",
    "FinalResultEvent",
    "FunctionToolCallEvent",
    "FunctionToolResultEvent",
    "HandleResponseEvent",
    "ModelResponsePartDelta",
    "ModelResponseStreamEvent",
    "PartDeltaEvent",
    "PartStartEvent",
    "PartsBuilder",
    "TextPartDelta",
    "ToolCallPartDelta",
)


@dataclass
class _PendingCall:
    tool_name: str = ""
    args: str | dict[str, Any] | None = None
    tool_call_id: str | None = None


class PartsBuilder:
    """Builds a response's parts from streamed pieces, giving the event for each piece.

    A piece names the part it belongs to by a `key` (the vendor's index or id); pieces
    without a key add to the last part of their kind. A tool call whose name has not
    arrived yet is held back, and starts (as one `PartStartEvent`) once it has one.
    """

    def __init__(self) -> None:
        self._parts: list[ModelResponsePart] = []
        self._index_of: dict[Hashable, int] = {}
        self._pending: dict[Hashable, _PendingCall] = {}

    @property
    def parts(self) -> list[ModelResponsePart]:
        """The parts so far."""
        return list(self._parts)

    def add_part(self, part: ModelResponsePart, key: Hashable | None = None) -> PartStartEvent:
        """Add a whole part."""
        self._parts.append(part)
        if key is not None:
            self._index_of[key] = len(self._parts) - 1
        return PartStartEvent(len(self._parts) - 1, part)

    def text_delta(self, content: str, key: Hashable | None = None) -> PartStartEvent | PartDeltaEvent:
        """Add text: to the part `key` names (or the last part, if it is text), else as a new part."""
        index = self._index_of.get(key) if key is not None else self._last_text_index()
        if index is None:
            return self.add_part(TextPart(content), key)
        part = self._parts[index]
        if not isinstance(part, TextPart):
            raise ValueError(f"Cannot add text to part {index}, which is a {type(part).__name__}")
        self._parts[index] = TextPart(part.content + content)
        return PartDeltaEvent(index, TextPartDelta(content))

    def tool_call_delta(
        self,
        key: Hashable,
        *,
        tool_name: str | None = None,
        args: str | dict[str, Any] | None = None,
        tool_call_id: str | None = None,
    ) -> PartStartEvent | PartDeltaEvent | None:
        """Add to the tool call `key` names; None while a new call still has no name."""
        index = self._index_of.get(key)
        if index is None:
            pending = self._pending.setdefault(key, _PendingCall())
            pending.tool_name += tool_name or ""
            pending.args = _join_args(pending.args, args)
            pending.tool_call_id = tool_call_id or pending.tool_call_id
            if not pending.tool_name:
                return None
            del self._pending[key]
            call = ToolCallPart(
                pending.tool_name, pending.args if pending.args is not None else "", pending.tool_call_id
            )
            return self.add_part(call, key)
        part = self._parts[index]
        if not isinstance(part, ToolCallPart):
            raise ValueError(f"Cannot add to a tool call at part {index}, which is a {type(part).__name__}")
        self._parts[index] = ToolCallPart(
            part.tool_name + (tool_name or ""),
            _join_args(part.args, args) or part.args,
            tool_call_id or part.tool_call_id,
        )
        return PartDeltaEvent(index, ToolCallPartDelta(tool_name, args, tool_call_id))

    def _last_text_index(self) -> int | None:
        if self._parts and isinstance(self._parts[-1], TextPart):
            return len(self._parts) - 1
        return None


def _join_args(current: str | dict[str, Any] | None, more: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if more is None:
        return current
    if current is None or current == "":
        return more
    if isinstance(current, str) and isinstance(more, str):
        return current + more
    if isinstance(current, dict) and isinstance(more, dict):
        return {**current, **more}
    raise ValueError(f"Cannot add {type(more).__name__} arguments to {type(current).__name__} arguments")
