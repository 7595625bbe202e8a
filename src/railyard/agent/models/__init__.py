"""What an agent talks to: the `Model` interface, and what a model is told about a run.

A model answers one request at a time: given the whole conversation so far and an
`AgentInfo` (the tools it may call and whether plain text may end the run), it returns
a `ModelResponse` and the `Usage` of that request.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from railyard.agent.events import ModelResponseStreamEvent, PartsBuilder
from railyard.agent.exceptions import UserError
from railyard.agent.messages import ModelMessage, ModelResponse
from railyard.agent.settings import ModelSettings
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

__all__ = ("AgentInfo", "KnownModelName", "Model", "StreamedResponse", "infer_model")


@dataclass
class AgentInfo:
    """What a model is told about the run for one request."""

    function_tools: list[ToolDefinition]
    """The tools it may call."""
    allow_text_result: bool
    """Whether a plain text answer may end the run."""
    result_tools: list[ToolDefinition]
    """The tools that carry a structured result."""
    model_settings: ModelSettings | None
    """Settings for this request (temperature, max tokens, ...), if any."""
    instructions: str | None = None
    """Instructions to send ahead of the conversation (not part of the history), if any."""


class StreamedResponse(abc.ABC):
    """A model's answer as it arrives: async-iterate over its events, then `get()` it whole.

    A model's subclass implements `_events`, feeding what it receives to `self.parts`
    (a `PartsBuilder`) and yielding the events that gives, and sets `self._usage`.
    """

    def __init__(self, model_name: str, timestamp: datetime | None = None) -> None:
        self.model_name = model_name
        """The model that answers."""
        self.timestamp = timestamp or datetime.now(UTC)
        """When the answer began."""
        self.parts = PartsBuilder()
        """The answer's parts so far."""
        self._usage = Usage()
        self._iterator: AsyncIterator[ModelResponseStreamEvent] | None = None

    @abc.abstractmethod
    def _events(self) -> AsyncIterator[ModelResponseStreamEvent]:
        """The events, as the answer arrives."""

    def __aiter__(self) -> AsyncIterator[ModelResponseStreamEvent]:
        if self._iterator is None:
            self._iterator = self._events()
        return self._iterator

    def get(self) -> ModelResponse:
        """The answer so far (all of it, once the events have run out)."""
        return ModelResponse(self.parts.parts, model_name=self.model_name, timestamp=self.timestamp)

    def usage(self) -> Usage:
        """The usage of the request, as far as the model has reported it."""
        return self._usage


class _WholeResponse(StreamedResponse):
    """A response that arrived all at once, replayed as one start event per part."""

    def __init__(self, response: ModelResponse, usage: Usage) -> None:
        super().__init__(response.model_name or "", response.timestamp)
        self._response = response
        self._usage = usage

    async def _events(self) -> AsyncIterator[ModelResponseStreamEvent]:
        for part in self._response.parts:
            yield self.parts.add_part(part)


class Model(abc.ABC):
    """A language model an agent can send requests to."""

    @abc.abstractmethod
    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """Answer the conversation `messages` (ending with the new request)."""

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[StreamedResponse]:
        """Answer as a stream, part by part.

        This default sends one `request` and replays its parts; models that can stream
        their answers override it.
        """
        response, usage = await self.request(messages, info)
        yield _WholeResponse(response, usage)

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """The model's name, as recorded on its responses."""

    @property
    @abc.abstractmethod
    def system(self) -> str:
        """Who provides the model (`'openai'`, `'function'`, ...)."""


KnownModelName = str
"""A model named by a string: `'test'`, or `'openai:<model>'` for the OpenAI Chat Completions API."""


def infer_model(model: Model | KnownModelName) -> Model:
    """The model `model` names, or `model` itself when it is already a `Model`.

    Raises:
        UserError: the name is not one railyard knows.
    """
    if isinstance(model, Model):
        return model
    if not isinstance(model, str):
        raise UserError(f"A model must be a Model instance or a model name, got {model!r}")
    if model == "test":
        from railyard.agent.models.test import TestModel

        return TestModel()
    provider, sep, name = model.partition(":")
    if sep and name and provider in ("openai", "openai-chat"):
        from railyard.agent.models.openai import OpenAIModel

        return OpenAIModel(name)
    raise UserError(f"Unknown model: {model!r}; use 'test', 'openai:<model name>' or a Model instance")
