"""`StreamedRunResult`: the result of `agent.run_stream(...)`, readable while the model writes it.

```python
async with agent.run_stream("Tell me a story") as result:
    async for text in result.stream_text(delta=True):
        print(text, end="")
```

The run goes as usual until a model answer starts that carries the result (text, or a
call of a result tool); that answer is then handed over as it arrives. Text comes as
the text so far (or each new piece, with `delta=True`); a structured result comes as
objects validated leniently from the arguments so far, and whole at the end. Result
validators see every snapshot they are given, and the result is validated whole once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Generic, TypeVar

from railyard.agent._graph import AgentDeps, AgentState
from railyard.agent._result import run_validators
from railyard.agent._stream import AgentStream
from railyard.agent.events import AgentStreamEvent, FinalResultEvent
from railyard.agent.exceptions import ModelRetry, UserError
from railyard.agent.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, TextPart, ToolCallPart
from railyard.agent.usage import Usage

__all__ = ("StreamedRunResult",)

ResultDataT = TypeVar("ResultDataT")


class StreamedRunResult(Generic[ResultDataT]):
    """The answer that carries a run's result, as it arrives, and the run around it."""

    def __init__(self, state: AgentState, deps: AgentDeps, events: AgentStream, final: FinalResultEvent) -> None:
        self._state = state
        self._deps = deps
        self._events = events
        self._final = final
        self._recorded = False  # set once the answer is in the run's history and usage
        self._validated: tuple[Any] | None = None  # the result, once validated whole
        self.is_complete = False
        """Whether the whole answer has arrived."""

    # -- the answer as it arrives -----------------------------------------------------

    async def stream_structured(self, *, debounce_by: float | None = 0.1) -> AsyncIterator[tuple[ModelResponse, bool]]:
        """The answer so far, as `(response, is_last)`.

        With `debounce_by`, what arrives within that many seconds is given as one
        snapshot, sent when the window closes.
        """
        arrived = _has_content(self._events.get())  # what came before the stream was handed over
        if arrived and debounce_by is None:
            yield self._events.get(), False
        async for _ in _grouped(self._events, debounce_by, window_open=arrived):
            yield self._events.get(), False
        self.is_complete = True
        yield self._events.get(), True

    async def stream_text(self, *, delta: bool = False, debounce_by: float | None = 0.1) -> AsyncIterator[str]:
        """The text so far, through the result validators; or, with `delta`, each new piece as it is.

        Raises:
            UserError: the result is structured, not text.
        """
        if self._final.tool_name is not None:
            raise UserError("stream_text() can only be used with text responses")
        sent = ""
        validated: tuple[Any] | None = None
        async for response, is_last in self.stream_structured(debounce_by=debounce_by):
            text = _text(response)
            if delta:
                if len(text) > len(sent):
                    yield text[len(sent) :]
                sent = text
                continue
            if text != sent or (is_last and validated is None):
                sent = text
                validated = (await self._validate_text(text),)
                yield validated[0]
            if is_last:
                self._validated = validated

    async def stream(self, *, debounce_by: float | None = 0.1) -> AsyncIterator[ResultDataT]:
        """The result so far, validated leniently (snapshots that don't fit yet are skipped); whole at the end."""
        async for response, is_last in self.stream_structured(debounce_by=debounce_by):
            if is_last:
                yield await self._validate_whole(response)
                continue
            found, data = await self._validate_partial(response)
            if found:
                yield data

    async def get_data(self) -> ResultDataT:
        """Read the rest of the answer and return the validated result.

        Raises:
            pydantic.ValidationError: the result tool's arguments do not fit the result type.
            ModelRetry: a result validator rejected the result.
        """
        if self._validated is not None:
            data: ResultDataT = self._validated[0]
            return data
        async for _ in self._events:
            pass
        self.is_complete = True
        data = await self._validate_whole(self._events.get())
        return data

    # -- the run ------------------------------------------------------------------------

    def usage(self) -> Usage:
        """The run's usage, including the answer so far."""
        return self._state.usage if self._recorded else self._events.usage()

    def timestamp(self) -> datetime:
        """When the answer began."""
        return self._events.get().timestamp

    def all_messages(self) -> list[ModelMessage]:
        """The conversation, with the answer as far as it has arrived."""
        messages = list(self._state.message_history)
        if not self._recorded:
            messages.append(self._events.get())
        return messages

    def new_messages(self) -> list[ModelMessage]:
        """The messages this run added, with the answer as far as it has arrived."""
        return self.all_messages()[self._state.new_message_index :]

    def all_messages_json(self) -> bytes:
        """`all_messages()` as JSON."""
        return ModelMessagesTypeAdapter.dump_json(self.all_messages())

    def new_messages_json(self) -> bytes:
        """`new_messages()` as JSON."""
        return ModelMessagesTypeAdapter.dump_json(self.new_messages())

    # -- validation ---------------------------------------------------------------------

    async def _validate_partial(self, response: ModelResponse) -> tuple[bool, Any]:
        if self._final.tool_name is None:
            return True, await self._validate_text(_text(response))
        call = _result_call(response, self._final.tool_name)
        if call is None:
            return False, None
        found, data = self._deps.result_schema.tools[self._final.tool_name].validate_partial(call)
        if not found:
            return False, None
        try:
            return True, await run_validators(self._deps.result_validators, data, self._context(call))
        except ModelRetry:
            return False, None  # a validator may reject a result that is not whole yet

    async def _validate_whole(self, response: ModelResponse) -> Any:
        if self._validated is not None:
            return self._validated[0]
        if self._final.tool_name is None:
            data = await self._validate_text(_text(response))
        else:
            call = _result_call(response, self._final.tool_name)
            if call is None:  # pragma: no cover - the final event came from this call
                raise UserError(f"The answer has no call of {self._final.tool_name!r}")
            tool = self._deps.result_schema.tools[self._final.tool_name]
            data = await run_validators(self._deps.result_validators, tool.validate_or_raise(call), self._context(call))
        self._validated = (data,)
        return data

    async def _validate_text(self, text: str) -> Any:
        return await run_validators(self._deps.result_validators, text, self._context(None))

    def _context(self, call: ToolCallPart | None) -> Any:
        ctx = self._deps.run_context(self._state, retry=self._state.result_retries)
        if call is not None:
            ctx.tool_name, ctx.tool_call_id = call.tool_name, call.tool_call_id
        return ctx

    def __repr__(self) -> str:
        return f"<StreamedRunResult complete={self.is_complete} usage={self.usage()!r}>"


async def _grouped(events: AgentStream, debounce_by: float | None, *, window_open: bool = False) -> AsyncIterator[None]:
    """Tick once per event, or (with `debounce_by`) once per window of that many seconds with events in it.

    `window_open` starts with a window open, for what arrived before.

    A window closes on time even when no new event comes, so what arrived is not held
    back by a slow next piece. The read in flight is never cancelled: it is finished, so
    the stream can still be read to its end.
    """
    iterator: AsyncIterator[AgentStreamEvent] = aiter(events)
    if debounce_by is None:
        async for _ in iterator:
            yield None
        return
    pending: asyncio.Future[AgentStreamEvent] | None = None
    window_ends: float | None = time.monotonic() + debounce_by if window_open else None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            timeout = None if window_ends is None else max(0.0, window_ends - time.monotonic())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:  # the window closed first
                window_ends = None
                yield None
                continue
            try:
                pending.result()
            except StopAsyncIteration:
                pending = None
                if window_ends is not None:
                    yield None
                return
            pending = None
            if window_ends is None:
                window_ends = time.monotonic() + debounce_by
    finally:
        if pending is not None and not pending.done():
            await asyncio.wait({pending})


def _has_content(response: ModelResponse) -> bool:
    return any(not isinstance(part, TextPart) or part.content for part in response.parts)


def _text(response: ModelResponse) -> str:
    return "\n\n".join(part.content for part in response.parts if isinstance(part, TextPart) and part.content)


def _result_call(response: ModelResponse, tool_name: str) -> ToolCallPart | None:
    return next((p for p in response.parts if isinstance(p, ToolCallPart) and p.tool_name == tool_name), None)
