"""`StreamedRunResult`: the result of `agent.run_stream(...)`, readable while the model writes it.

```python
async with agent.run_stream("Tell me a story") as result:
    async for text in result.stream_text(delta=True):
        print(text, end="")
```

The run goes as usual until a model answer starts that carries the result (text, or a
call of a result tool); that answer is then handed over as it arrives. Text comes as
the text so far (or each new piece, with `delta=True`); a structured result comes as
objects validated leniently from the arguments so far, and whole at the end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Generic, TypeVar

from railyard.agent._graph import AgentDeps, AgentState
from railyard.agent._result import run_validators
from railyard.agent._stream import AgentStream
from railyard.agent.events import FinalResultEvent
from railyard.agent.exceptions import UnexpectedModelBehavior, UserError
from railyard.agent.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
)
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
        self.is_complete = False
        """Whether the whole answer has arrived and been validated."""

    # -- the answer as it arrives -----------------------------------------------------

    async def stream_structured(self, *, debounce_by: float | None = 0.1) -> AsyncIterator[tuple[ModelResponse, bool]]:
        """The answer so far, as `(response, is_last)`, at most every `debounce_by` seconds."""
        last_sent = time.monotonic()
        yield self._events.get(), False  # what arrived before the stream was handed over
        async for _ in self._events:
            now = time.monotonic()
            if debounce_by is None or now - last_sent >= debounce_by:
                last_sent = now
                yield self._events.get(), False
        yield self._events.get(), True

    async def stream_text(self, *, delta: bool = False, debounce_by: float | None = 0.1) -> AsyncIterator[str]:
        """The text so far (or, with `delta`, each new piece), at most every `debounce_by` seconds.

        Raises:
            UserError: the result is structured, not text.
        """
        if self._final.tool_name is not None:
            raise UserError("stream_text() can only be used with text responses")
        sent = ""
        async for response, is_last in self.stream_structured(debounce_by=debounce_by):
            text = _text(response)
            if is_last:
                text = await self._validated_text(text)
                self.is_complete = True
            if text == sent and not is_last:
                continue
            if delta:
                if text.startswith(sent) and len(text) > len(sent):
                    yield text[len(sent) :]
            elif text != sent:
                yield text
            sent = text

    async def stream(self, *, debounce_by: float | None = 0.1) -> AsyncIterator[ResultDataT]:
        """The result so far: text, or the structured result validated leniently; whole at the end."""
        async for response, is_last in self.stream_structured(debounce_by=debounce_by):
            if is_last:
                yield await self._validate(response)
                continue
            found, data = self._partial(response)
            if found:
                yield data

    async def get_data(self) -> ResultDataT:
        """Read the rest of the answer and return the validated result."""
        async for _ in self._events:
            pass
        data: ResultDataT = await self._validate(self._events.get())
        return data

    # -- the run ------------------------------------------------------------------------

    def usage(self) -> Usage:
        """The run's usage, including the answer so far."""
        return self._state.usage if self._recorded else self._state.usage + self._events.usage()

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

    def _partial(self, response: ModelResponse) -> tuple[bool, Any]:
        if self._final.tool_name is None:
            return True, _text(response)
        call = _result_call(response, self._final.tool_name)
        tool = self._deps.result_schema.tools[self._final.tool_name]
        return tool.validate_partial(call) if call is not None else (False, None)

    async def _validate(self, response: ModelResponse) -> Any:
        if self._final.tool_name is None:
            data = await self._validated_text(_text(response))
        else:
            call = _result_call(response, self._final.tool_name)
            if call is None:  # pragma: no cover - the final event came from this call
                raise UnexpectedModelBehavior(f"The answer has no call of {self._final.tool_name!r}")
            outcome = self._deps.result_schema.tools[self._final.tool_name].validate(call)
            if isinstance(outcome, RetryPromptPart):
                raise UnexpectedModelBehavior(f"The streamed result did not validate: {outcome.model_response()}")
            ctx = self._deps.run_context(self._state, retry=self._state.result_retries)
            ctx.tool_name, ctx.tool_call_id = call.tool_name, call.tool_call_id
            data = await run_validators(self._deps.result_validators, outcome, ctx)
        self.is_complete = True
        return data

    async def _validated_text(self, text: str) -> str:
        ctx = self._deps.run_context(self._state, retry=self._state.result_retries)
        result: str = await run_validators(self._deps.result_validators, text, ctx)
        return result

    def __repr__(self) -> str:
        return f"<StreamedRunResult complete={self.is_complete} usage={self.usage()!r}>"


def _text(response: ModelResponse) -> str:
    return "\n\n".join(part.content for part in response.parts if isinstance(part, TextPart) and part.content)


def _result_call(response: ModelResponse, tool_name: str) -> ToolCallPart | None:
    return next((p for p in response.parts if isinstance(p, ToolCallPart) and p.tool_name == tool_name), None)
