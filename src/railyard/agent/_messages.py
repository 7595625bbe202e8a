"""What a run's result and a streamed run's result share: the conversation's new part and its JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from railyard.agent.messages import ModelMessage, ModelMessagesTypeAdapter

if TYPE_CHECKING:
    from railyard.agent._graph import AgentState

__all__ = ("MessagesOfRun",)


class MessagesOfRun:
    """`new_messages()` and the JSON forms, over a subclass's `all_messages()` and its run's `_state`."""

    _state: AgentState  # the run's state: its conversation, and where this run's messages begin

    def all_messages(self, *, result_tool_return_content: str | None = None) -> list[ModelMessage]:
        """The whole conversation (a subclass gives it)."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    @property
    def _new_message_index(self) -> int:
        """Where this run's messages begin in `all_messages()`; pydantic-ai's tests read it."""
        return self._state.new_message_index

    def new_messages(self, *, result_tool_return_content: str | None = None) -> list[ModelMessage]:
        """The messages this run added (see `all_messages`)."""
        messages = self.all_messages(result_tool_return_content=result_tool_return_content)
        return messages[self._new_message_index :]

    def all_messages_json(self, *, result_tool_return_content: str | None = None) -> bytes:
        """`all_messages()` as JSON."""
        return ModelMessagesTypeAdapter.dump_json(
            self.all_messages(result_tool_return_content=result_tool_return_content)
        )

    def new_messages_json(self, *, result_tool_return_content: str | None = None) -> bytes:
        """`new_messages()` as JSON."""
        return ModelMessagesTypeAdapter.dump_json(
            self.new_messages(result_tool_return_content=result_tool_return_content)
        )
