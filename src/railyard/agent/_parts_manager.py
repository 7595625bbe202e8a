"""`ModelResponsePartsManager`: pydantic-ai's way of building a streamed response from vendor pieces.

A streamed model feeds it each piece it receives (text, or a piece of a tool call), named
by the vendor's id for the part it belongs to, and gets back the event to emit. Text
starts a part at once; a tool call is kept as a `ToolCallPartDelta` until it has both a
name and arguments, and only then starts (as one `PartStartEvent`).

railyard's own models use `PartsBuilder` (in `railyard.agent.events`), which starts a
call as soon as it has a name; this class is for code written against pydantic-ai.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from railyard.agent.events import (
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPartDelta,
    ToolCallPartDelta,
)
from railyard.agent.exceptions import UnexpectedModelBehavior
from railyard.agent.messages import ModelResponsePart, TextPart, ToolCallPart

__all__ = ("ManagedPart", "ModelResponsePartsManager", "VendorId")

VendorId = Hashable
"""How a vendor names a part of its streamed answer (an index, an id...)."""
ManagedPart = TextPart | ToolCallPart | ToolCallPartDelta
"""A part being built: a whole part, or a tool call still waiting for its name or arguments."""


@dataclass
class ModelResponsePartsManager:
    """The parts of a streamed response, built from pieces named by vendor part ids."""

    _parts: list[ManagedPart] = field(default_factory=list[ManagedPart], init=False)
    _index_of: dict[VendorId, int] = field(default_factory=dict[VendorId, int], init=False)

    def get_parts(self) -> list[ModelResponsePart]:
        """The parts so far, leaving out tool calls that have no name or arguments yet."""
        return [part for part in self._parts if not isinstance(part, ToolCallPartDelta)]

    def handle_text_delta(self, *, vendor_part_id: VendorId | None, content: str) -> ModelResponseStreamEvent:
        """Add `content` to the text part `vendor_part_id` names (without an id: to the last part if it is text).

        Raises:
            UnexpectedModelBehavior: the id names a part that is not text.
        """
        if vendor_part_id is None:
            index: int | None = len(self._parts) - 1 if self._parts and isinstance(self._parts[-1], TextPart) else None
        else:
            index = self._index_of.get(vendor_part_id)
            if index is not None and not isinstance(self._parts[index], TextPart):
                raise UnexpectedModelBehavior(f"Cannot apply a text delta to existing_part={self._parts[index]!r}")
        if index is None:
            part = TextPart(content)
            return PartStartEvent(self._append(part, vendor_part_id), part)
        delta = TextPartDelta(content)
        existing = self._parts[index]
        assert isinstance(existing, TextPart), "checked above"
        self._parts[index] = delta.apply(existing)
        return PartDeltaEvent(index, delta)

    def handle_tool_call_delta(
        self,
        *,
        vendor_part_id: VendorId | None,
        tool_name: str | None,
        args: str | dict[str, Any] | None,
        tool_call_id: str | None,
    ) -> ModelResponseStreamEvent | None:
        """Add a piece of a tool call; the event once the call has a name and arguments, else None.

        Without an id, a piece with no name adds to the last part if it is a tool call; a
        piece with a name starts a new call.

        Raises:
            UnexpectedModelBehavior: the id names a text part, or the piece does not fit the call.
        """
        index: int | None = None
        if vendor_part_id is None:
            if tool_name is None and self._parts and not isinstance(self._parts[-1], TextPart):
                index = len(self._parts) - 1
        else:
            index = self._index_of.get(vendor_part_id)
            if index is not None and isinstance(self._parts[index], TextPart):
                raise UnexpectedModelBehavior(f"Cannot apply a tool call delta to existing_part={self._parts[index]!r}")
        delta = ToolCallPartDelta(tool_name, args, tool_call_id)
        if index is None:
            part = delta.as_part() or delta
            index = self._append(part, vendor_part_id)
            return PartStartEvent(index, part) if isinstance(part, ToolCallPart) else None
        existing = self._parts[index]
        assert not isinstance(existing, TextPart), "checked above"
        updated = delta.apply(existing)
        self._parts[index] = updated
        if not isinstance(updated, ToolCallPart):
            return None
        if isinstance(existing, ToolCallPartDelta):
            return PartStartEvent(index, updated)  # the call is whole now
        return PartDeltaEvent(index, delta)

    def handle_tool_call_part(
        self,
        *,
        vendor_part_id: VendorId | None,
        tool_name: str,
        args: str | dict[str, Any],
        tool_call_id: str | None = None,
    ) -> ModelResponseStreamEvent:
        """Add a whole tool call, replacing the part `vendor_part_id` names if there is one."""
        part = ToolCallPart(tool_name, args, tool_call_id)
        index = self._index_of.get(vendor_part_id) if vendor_part_id is not None else None
        if index is None:
            return PartStartEvent(self._append(part, vendor_part_id), part)
        self._parts[index] = part
        return PartStartEvent(index, part)

    def _append(self, part: ManagedPart, vendor_part_id: VendorId | None) -> int:
        self._parts.append(part)
        index = len(self._parts) - 1
        if vendor_part_id is not None:
            self._index_of[vendor_part_id] = index
        return index
