"""Plumbing for streamed agent nodes: the model-answer event stream, and events from running tools."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from railyard.agent.events import (
    AgentStreamEvent,
    FinalResultEvent,
    HandleResponseEvent,
    PartStartEvent,
)
from railyard.agent.messages import ModelResponse, TextPart, ToolCallPart
from railyard.agent.models import StreamedResponse
from railyard.agent.usage import Usage

if TYPE_CHECKING:
    from railyard.agent._graph import AgentDeps, AgentState

__all__ = ("AgentStream", "Emit", "stream_events")

Emit = Callable[[HandleResponseEvent], None]
"""Hands an event of running tools to whoever is streaming them."""


class AgentStream:
    """A model's answer as it arrives, with a `FinalResultEvent` once it carries the result.

    The event follows the start of the first text part (when text may be the result) or
    of the first call of a result tool. The run's token limits are checked as the
    answer's usage grows.
    """

    def __init__(self, response: StreamedResponse, state: AgentState, deps: AgentDeps) -> None:
        self._response = response
        self._state = state
        self._deps = deps
        self._iterator: AsyncIterator[AgentStreamEvent] | None = None

    def __aiter__(self) -> AsyncIterator[AgentStreamEvent]:
        if self._iterator is None:
            self._iterator = self._events()
        return self._iterator

    async def _events(self) -> AsyncIterator[AgentStreamEvent]:
        limits = self._deps.usage_limits
        check_tokens = limits.has_token_limits()
        allow_text, result_tools = self._deps.result_schema.allow_text_result, self._deps.result_schema.tools
        final_sent = False
        async for event in self._response:
            if check_tokens:
                limits.check_tokens(self.usage())
            yield event
            if final_sent or not isinstance(event, PartStartEvent):
                continue
            part = event.part
            if isinstance(part, TextPart) and allow_text:
                final_sent = True
                yield FinalResultEvent(None, None)
            elif isinstance(part, ToolCallPart) and part.tool_name in result_tools:
                final_sent = True
                yield FinalResultEvent(part.tool_name, part.tool_call_id)

    def get(self) -> ModelResponse:
        """The answer so far."""
        return self._response.get()

    def usage(self) -> Usage:
        """The run's usage, with the answer's as far as the model has reported it."""
        return self._state.usage + dataclasses.replace(self._response.usage(), requests=0)


@asynccontextmanager
async def stream_events(
    act: Callable[[Emit], Awaitable[Any]],
) -> AsyncIterator[tuple[AsyncIterator[HandleResponseEvent], Callable[[], Any]]]:
    """Run `act` alongside the block, giving the events it emits and, after, what it returned.

    An exception from `act` comes out of the block as itself (not in an exception group).
    """
    send, receive = anyio.create_memory_object_stream[HandleResponseEvent](max_buffer_size=math.inf)
    outcome: list[Any] = []

    async def run() -> None:
        with send:
            outcome.append(await act(send.send_nowait))

    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            with receive:
                yield receive, lambda: outcome[0]
                async for _ in receive:
                    pass  # let the tools finish, whatever the block did not read
    except BaseExceptionGroup as group_error:
        error = group_error
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
    if error is not None:
        raise error
