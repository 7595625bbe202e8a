"""Plumbing for streamed agent nodes: the model-answer event stream, and events from running tools."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic

import anyio
from typing_extensions import TypeVar

from railyard.agent._result import run_validators
from railyard.agent._utils import group_by_temporal
from railyard.agent.events import (
    AgentStreamEvent,
    FinalResultEvent,
    HandleResponseEvent,
    PartStartEvent,
)
from railyard.agent.exceptions import ModelRetry, UnexpectedModelBehavior
from railyard.agent.messages import ModelResponse, TextPart, ToolCallPart
from railyard.agent.models import StreamedResponse
from railyard.agent.usage import Usage

if TYPE_CHECKING:
    from railyard.agent._graph import AgentDeps, AgentState

__all__ = ("AgentStream", "Emit", "grouped", "has_content", "stream_events", "validate_response")

AgentDepsT = TypeVar("AgentDepsT", default=None)
ResultDataT = TypeVar("ResultDataT", default=str)

Emit = Callable[[HandleResponseEvent], None]
"""Hands an event of running tools to whoever is streaming them."""


class AgentStream(Generic[AgentDepsT, ResultDataT]):
    """A model's answer as it arrives, with a `FinalResultEvent` once it carries the result.

    The event follows the start of the first text part (when text may be the result) or
    of the first call of a result tool. The run's token limits are checked as the
    answer's usage grows. Besides its events, the answer can be read as the responses
    so far (`stream_responses`) or as the result so far (`stream_output`).
    """

    def __init__(self, response: StreamedResponse, state: AgentState, deps: AgentDeps) -> None:
        self._response = response
        self._state = state
        self._deps = deps
        self._iterator: AsyncIterator[AgentStreamEvent] | None = None
        self._final: FinalResultEvent | None = None
        self._initial_usage = dataclasses.replace(state.usage)

    async def stream_responses(self, *, debounce_by: float | None = 0.1) -> AsyncIterator[ModelResponse]:
        """The answer so far, once per event (or, with `debounce_by`, once per window of that many seconds).

        What arrived before this is called is given first, if it has any content. The
        responses are not validated.
        """
        if has_content(self.get()):
            yield self.get()
        async for _ in grouped(self, debounce_by):
            yield self.get()

    async def stream_output(self, *, debounce_by: float | None = 0.1) -> AsyncIterator[ResultDataT]:
        """The result so far, through the result validators, once the answer is known to carry it; whole at the end.

        Snapshots that do not validate yet are skipped. Nothing is given for an answer
        that carries no result (one that only calls function tools).
        """
        async for response in self.stream_responses(debounce_by=debounce_by):
            if self._final is not None:
                found, data = await validate_response(self._state, self._deps, response, self._final, partial=True)
                if found:
                    yield data
        if self._final is not None:
            _, data = await validate_response(self._state, self._deps, self.get(), self._final, partial=False)
            yield data

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
                self._final = FinalResultEvent(None, None)
                yield self._final
            elif isinstance(part, ToolCallPart) and part.tool_name in result_tools:
                final_sent = True
                self._final = FinalResultEvent(part.tool_name, part.tool_call_id)
                yield self._final

    def get(self) -> ModelResponse:
        """The answer so far."""
        return self._response.get()

    def usage(self) -> Usage:
        """The run's usage as the request was sent, with the answer's as far as the model has reported it."""
        return self._initial_usage + dataclasses.replace(self._response.usage(), requests=0)


async def validate_response(
    state: AgentState, deps: AgentDeps, response: ModelResponse, final: FinalResultEvent, *, partial: bool
) -> tuple[bool, Any]:
    """`(True, result)` for the result `response` carries, through the result validators.

    With `partial`, the arguments so far are read leniently, and `(False, None)` means
    they (or a validator) do not accept them yet.

    Raises:
        pydantic.ValidationError: not `partial`, and the arguments do not fit the result type.
        ModelRetry: not `partial`, and a result validator rejected the result.
        UnexpectedModelBehavior: the response has no call of the result tool `final` names.
    """
    ctx = deps.run_context(state, retry=state.result_retries)
    if final.tool_name is None:
        text = "\n\n".join(part.content for part in response.parts if isinstance(part, TextPart))
        return True, await run_validators(deps.result_validators, text, ctx)
    call = next((p for p in response.parts if isinstance(p, ToolCallPart) and p.tool_name == final.tool_name), None)
    if call is None:
        names = ", ".join(deps.result_schema.tools)
        raise UnexpectedModelBehavior(f"Invalid response, unable to find tool: {names}")
    tool = deps.result_schema.tools[final.tool_name]
    ctx.tool_name, ctx.tool_call_id = call.tool_name, call.tool_call_id
    if not partial:
        return True, await run_validators(deps.result_validators, tool.validate_or_raise(call), ctx)
    found, data = tool.validate_partial(call)
    if not found:
        return False, None
    try:
        return True, await run_validators(deps.result_validators, data, ctx)
    except ModelRetry:
        return False, None  # a validator may reject a result that is not whole yet


async def grouped(
    events: AsyncIterable[Any], debounce_by: float | None, *, window_open: bool = False
) -> AsyncIterator[None]:
    """Tick once per event, or (with `debounce_by`) once per window of that many seconds with events in it.

    `window_open` starts with a window open, for what arrived before (see `group_by_temporal`).
    """
    async with group_by_temporal(events, debounce_by, open_window=window_open) as groups:
        async for _ in groups:
            yield None


def has_content(response: ModelResponse) -> bool:
    """Whether any part of `response` has content yet (text, or tool call arguments)."""
    return any(part.has_content() for part in response.parts)


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
