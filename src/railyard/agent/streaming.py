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

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Generic

from typing_extensions import TypeVar

from railyard.agent._graph import AgentDeps, AgentState
from railyard.agent._messages import MessagesOfRun
from railyard.agent._result import run_validators
from railyard.agent._stream import AgentStream, grouped, has_content, validate_response
from railyard.agent.events import FinalResultEvent
from railyard.agent.exceptions import UserError
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart
from railyard.agent.usage import Usage

__all__ = ("StreamedRunResult",)

AgentDepsT = TypeVar("AgentDepsT", default=None)
ResultDataT = TypeVar("ResultDataT", default=str)


class StreamedRunResult(MessagesOfRun, Generic[AgentDepsT, ResultDataT]):
    """The answer that carries a run's result, as it arrives, and the run around it.

    Until the answer is complete, `all_messages()` is the conversation before it; once
    it is complete (a `stream*` method has run to its end, or `get_data()` has
    returned), the answer and the returns of any tools it called are in it too.
    """

    def __init__(
        self,
        state: AgentState,
        deps: AgentDeps,
        events: AgentStream[Any, Any],
        final: FinalResultEvent,
        on_complete: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._state = state
        self._deps = deps
        self._events = events
        self._final = final
        self._on_complete = on_complete
        self._recorded = False  # set once the answer is in the run's history and usage
        self._validated: tuple[Any] | None = None  # the result, once validated whole
        self.is_complete = False
        """Whether the whole answer has arrived."""

    async def _mark_complete(self) -> None:
        """The whole answer has arrived: record it, and what its tool calls return, in the run."""
        self.is_complete = True
        await self._record()

    async def _record(self) -> None:
        """Record the answer (read to its end by now) and its tools' returns in the run, once."""
        on_complete, self._on_complete = self._on_complete, None
        if on_complete is not None:
            await on_complete()

    # -- the answer as it arrives -----------------------------------------------------

    async def stream_structured(self, *, debounce_by: float | None = 0.1) -> AsyncIterator[tuple[ModelResponse, bool]]:
        """The answer so far, as `(response, is_last)`.

        With `debounce_by`, what arrives within that many seconds is given as one
        snapshot, sent when the window closes.
        """
        arrived = has_content(self._events.get())  # what came before the stream was handed over
        if arrived and debounce_by is None:
            yield self._events.get(), False
        async for _ in grouped(self._events, debounce_by, window_open=arrived):
            yield self._events.get(), False
        self.is_complete = True
        yield self._events.get(), True
        await self._mark_complete()

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
        if self._validated is None:
            async for _ in self._events:
                pass
            self.is_complete = True
            await self._validate_whole(self._events.get())
        await self._mark_complete()
        assert self._validated is not None, "validated above"
        data: ResultDataT = self._validated[0]
        return data

    # -- the run ------------------------------------------------------------------------

    def usage(self) -> Usage:
        """The run's usage, including the answer so far."""
        return self._state.usage if self._recorded else self._events.usage()

    def timestamp(self) -> datetime:
        """When the answer began."""
        return self._events.get().timestamp

    def all_messages(self, *, result_tool_return_content: str | None = None) -> list[ModelMessage]:
        """The conversation: before the answer until it is complete, then with it and its tools' returns.

        Raises:
            NotImplementedError: `result_tool_return_content` was given (a streamed result cannot change it).
        """
        if result_tool_return_content is not None:
            raise NotImplementedError("Setting result tool return content is not supported for this result type.")
        return list(self._state.message_history)

    # -- validation ---------------------------------------------------------------------

    async def validate_structured_result(self, message: ModelResponse, *, allow_partial: bool = False) -> ResultDataT:
        """The result `message` carries (a snapshot of the answer), through the result validators.

        With `allow_partial`, incomplete arguments are read leniently.

        Raises:
            pydantic.ValidationError: the result tool's arguments do not fit the result type.
            ModelRetry: a result validator rejected the result.
            UnexpectedModelBehavior: `message` has no call of the result tool.
        """
        if allow_partial:
            found, data = await validate_response(self._state, self._deps, message, self._final, partial=True)
            if found:
                return data  # type: ignore[no-any-return]  # validated as the result type
        _, data = await validate_response(self._state, self._deps, message, self._final, partial=False)
        return data  # type: ignore[no-any-return]  # validated as the result type

    async def _validate_partial(self, response: ModelResponse) -> tuple[bool, Any]:
        return await validate_response(self._state, self._deps, response, self._final, partial=True)

    async def _validate_whole(self, response: ModelResponse) -> Any:
        if self._validated is not None:
            return self._validated[0]
        _, data = await validate_response(self._state, self._deps, response, self._final, partial=False)
        self._validated = (data,)
        return data

    async def _validate_text(self, text: str) -> Any:
        ctx = self._deps.run_context(self._state, retry=self._state.result_retries)
        return await run_validators(self._deps.result_validators, text, ctx)

    def __repr__(self) -> str:
        return f"<StreamedRunResult complete={self.is_complete} usage={self.usage()!r}>"


def _text(response: ModelResponse) -> str:
    return "\n\n".join(part.content for part in response.parts if isinstance(part, TextPart) and part.content)
