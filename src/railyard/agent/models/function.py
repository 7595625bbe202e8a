"""A model that is a Python function: for tests, demos and custom back ends."""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from railyard.agent._utils import PeekableAsyncStream  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.content import AudioUrl, BinaryContent, ImageUrl, UserContent  # noqa: F401  # as above
from railyard.agent.events import ModelResponseStreamEvent
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,  # noqa: F401  # as above
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo, Model, ModelRequestParameters, StreamedResponse  # noqa: F401
from railyard.agent.settings import ModelSettings  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.tools import ToolDefinition  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.usage import Usage

__all__ = (
    "AgentInfo",
    "DeltaToolCall",
    "DeltaToolCalls",
    "FunctionDef",
    "FunctionModel",
    "FunctionStreamedResponse",
    "StreamFunctionDef",
    "estimate_usage",
)

FunctionDef = Callable[[list[ModelMessage], AgentInfo], ModelResponse | Awaitable[ModelResponse]]
"""A function that answers a conversation, sync or async."""

_WORD_BREAK = re.compile(r'[\s",.:]+')


@dataclass
class DeltaToolCall:
    """A piece of a tool call a stream function yields: the name, some JSON arguments, the id."""

    name: str | None = None
    """The tool's name (or the next piece of it)."""
    json_args: str | None = None
    """The next piece of the JSON arguments."""
    tool_call_id: str | None = None
    """The call's id, if known."""


DeltaToolCalls = dict[int, DeltaToolCall]
"""Pieces of tool calls, by the index of the call they belong to."""

StreamFunctionDef = Callable[[list[ModelMessage], AgentInfo], AsyncIterator[str | DeltaToolCalls]]
"""An async generator that answers a conversation piece by piece: text, or tool call pieces."""


class FunctionModel(Model):
    """A model whose answers come from `function(messages, info)`.

    With `stream_function`, streamed requests (`node.stream(...)`) get their answer
    piece by piece from it; without, they replay `function`'s answer. Its usage is an
    estimate from word counts, so runs on it can exercise usage limits.
    """

    def __init__(
        self,
        function: FunctionDef | None = None,
        *,
        stream_function: StreamFunctionDef | None = None,
        model_name: str | None = None,
    ) -> None:
        if function is None and stream_function is None:  # TypeError, as a missing argument would be
            raise TypeError("Either `function` or `stream_function` must be provided")
        self.function = function
        """The function that answers."""
        self.stream_function = stream_function
        """The async generator that answers streamed requests, if any."""
        names = [getattr(f, "__name__", "function") if f is not None else "" for f in (function, stream_function)]
        self._name = model_name or f"function:{names[0]}:{names[1]}"

    def __repr__(self) -> str:
        return f"FunctionModel(function={self.function!r}, stream_function={self.stream_function!r})"

    @property
    def model_name(self) -> str:
        """`'function:<name of the function>:'` unless given."""
        return self._name

    @property
    def system(self) -> str:
        """Always `'function'`."""
        return "function"

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """Call the function (awaiting it if it is async) and estimate the usage.

        With only a `stream_function`, the answer is its stream, read to the end.
        """
        if self.function is None:
            async with self.request_stream(messages, info) as streamed:
                async for _ in streamed:
                    pass
            return streamed.get(), streamed.usage()
        answer = self.function(messages, info)
        response = await answer if inspect.isawaitable(answer) else answer
        if not isinstance(response, ModelResponse):
            raise TypeError(f"FunctionModel's function must return a ModelResponse, got {type(response).__name__}")
        response.model_name = self._name
        return response, estimate_usage([*messages, response])

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[StreamedResponse]:
        """Stream the answer from `stream_function`, or replay `function`'s.

        Raises:
            ValueError: `stream_function` gave nothing at all.
        """
        if self.stream_function is None:
            async with super().request_stream(messages, info) as whole:
                yield whole
            return
        pieces = aiter(self.stream_function(messages, info))
        try:
            first = await anext(pieces)
        except StopAsyncIteration:
            raise ValueError("Stream function must return at least one item") from None
        yield FunctionStreamedResponse(self._name, _prepend(first, pieces))


class FunctionStreamedResponse(StreamedResponse):
    """The answer of a `stream_function`, built from the text and tool call pieces it yields."""

    def __init__(self, model_name: str, pieces: AsyncIterator[str | DeltaToolCalls]) -> None:
        super().__init__(model_name)
        self._pieces = pieces

    async def _events(self) -> AsyncIterator[ModelResponseStreamEvent]:
        # A streamed answer's usage is rougher than a whole one's: 50 for the request,
        # and the words of each piece as it arrives (tool names do not count).
        self._usage = Usage(requests=1, request_tokens=50, response_tokens=0, total_tokens=50)
        async for piece in self._pieces:
            if isinstance(piece, str):
                self._count(piece)
                yield self.parts.text_delta(piece, key="content")
                continue
            for index, delta in piece.items():
                self._count(delta.json_args or "")
                event = self.parts.tool_call_delta(
                    index, tool_name=delta.name, args=delta.json_args, tool_call_id=delta.tool_call_id
                )
                if event is not None:
                    yield event

    def _count(self, text: str) -> None:
        words = _words(text)
        self._usage.response_tokens = (self._usage.response_tokens or 0) + words
        self._usage.total_tokens = (self._usage.total_tokens or 0) + words


async def _prepend(
    first: str | DeltaToolCalls, rest: AsyncIterator[str | DeltaToolCalls]
) -> AsyncIterator[str | DeltaToolCalls]:
    yield first
    async for piece in rest:
        yield piece


def _words(text: str) -> int:
    return len(_WORD_BREAK.split(text.strip())) if text else 0


def estimate_usage(messages: list[ModelMessage]) -> Usage:
    """A rough usage for a request: 50 plus the words sent, and the words answered."""
    sent = 50
    answered = 0
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, SystemPromptPart | UserPromptPart):
                    content = part.content
                    pieces = [content] if isinstance(content, str) else [c for c in content if isinstance(c, str)]
                    sent += sum(_words(piece) for piece in pieces)
                elif isinstance(part, ToolReturnPart):
                    sent += _words(part.model_response_str())
                elif isinstance(part, RetryPromptPart):
                    sent += _words(part.model_response())
        else:
            for reply in message.parts:
                if isinstance(reply, TextPart):
                    answered += _words(reply.content)
                else:
                    answered += 1 + _words(reply.args_as_json_str())
    return Usage(requests=1, request_tokens=sent, response_tokens=answered, total_tokens=sent + answered)
