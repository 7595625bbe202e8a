"""A model that is a Python function: for tests, demos and custom back ends."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable

from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo, Model
from railyard.agent.usage import Usage

__all__ = ("AgentInfo", "FunctionDef", "FunctionModel", "estimate_usage")

FunctionDef = Callable[[list[ModelMessage], AgentInfo], ModelResponse | Awaitable[ModelResponse]]
"""A function that answers a conversation, sync or async."""

_WORD_BREAK = re.compile(r'[\s",.:]+')


class FunctionModel(Model):
    """A model whose answers come from `function(messages, info)`.

    Its usage is an estimate from word counts, so runs on it can exercise usage limits.
    """

    def __init__(self, function: FunctionDef, *, model_name: str | None = None) -> None:
        self.function = function
        """The function that answers."""
        self.stream_function = None
        """Streaming is not supported yet; always None."""
        self._name = model_name or f"function:{getattr(function, '__name__', 'function')}:"

    def __repr__(self) -> str:
        return f"FunctionModel(function={self.function!r}, stream_function=None)"

    @property
    def model_name(self) -> str:
        """`'function:<name of the function>:'` unless given."""
        return self._name

    @property
    def system(self) -> str:
        """Always `'function'`."""
        return "function"

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """Call the function (awaiting it if it is async) and estimate the usage."""
        answer = self.function(messages, info)
        response = await answer if inspect.isawaitable(answer) else answer
        if not isinstance(response, ModelResponse):
            raise TypeError(f"FunctionModel's function must return a ModelResponse, got {type(response).__name__}")
        response.model_name = self._name
        return response, estimate_usage([*messages, response])


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
