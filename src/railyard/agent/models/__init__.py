"""What an agent talks to: the `Model` interface, and what a model is told about a run.

A model answers one request at a time: given the whole conversation so far and an
`AgentInfo` (the tools it may call and whether plain text may end the run), it returns
a `ModelResponse` and the `Usage` of that request.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from railyard.agent._parts_manager import ModelResponsePartsManager
from railyard.agent.events import ModelResponseStreamEvent, PartsBuilder
from railyard.agent.exceptions import UserError
from railyard.agent.messages import ModelMessage, ModelResponse
from railyard.agent.settings import ModelSettings
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

if TYPE_CHECKING:
    import httpx

__all__ = (
    "ALLOW_MODEL_REQUESTS",
    "AgentInfo",
    "KnownModelName",
    "Model",
    "ModelRequestParameters",
    "ModelResponsePartsManager",
    "StreamedResponse",
    "cached_async_http_client",
    "check_allow_model_requests",
    "get_user_agent",
    "infer_model",
    "open_stream",
    "override_allow_model_requests",
    "send_request",
)


@dataclass
class ModelRequestParameters:
    """The tools a model may call in one request, and how the run's result may arrive."""

    function_tools: list[ToolDefinition]
    """The tools it may call."""
    allow_text_result: bool
    """Whether a plain text answer may end the run."""
    result_tools: list[ToolDefinition]
    """The tools that carry a structured result."""


@dataclass
class AgentInfo(ModelRequestParameters):
    """What a model is told about the run for one request: the request parameters, settings and instructions."""

    model_settings: ModelSettings | None
    """Settings for this request (temperature, max tokens, ...), if any."""
    instructions: str | None = None
    """Instructions to send ahead of the conversation (not part of the history), if any."""


class StreamedResponse:
    """A model's answer as it arrives: async-iterate over its events, then `get()` it whole.

    A model's subclass implements `_events`, feeding what it receives to `self.parts`
    (a `PartsBuilder`) and yielding the events that gives, and sets `self._usage`.

    A subclass written for pydantic-ai works too: a dataclass that implements
    `_get_event_iterator` with `self._parts_manager` (a `ModelResponsePartsManager`) and
    has `model_name` and `timestamp` properties; it need not call this `__init__`.
    """

    _iterator: AsyncIterator[ModelResponseStreamEvent] | None = None

    def __init__(self, model_name: str = "", timestamp: datetime | None = None) -> None:
        self._model_name = model_name
        self._timestamp = timestamp or datetime.now(UTC)

    @property
    def model_name(self) -> str:
        """The model that answers."""
        return str(self.__dict__.get("_model_name", ""))

    @model_name.setter
    def model_name(self, value: str) -> None:
        self._model_name = value

    @property
    def timestamp(self) -> datetime:
        """When the answer began."""
        stamp: datetime = self.__dict__.setdefault("_timestamp", datetime.now(UTC))
        return stamp

    @timestamp.setter
    def timestamp(self, value: datetime) -> None:
        self._timestamp = value

    @property
    def parts(self) -> PartsBuilder:
        """The answer's parts so far, as railyard's models build them."""
        builder: PartsBuilder = self.__dict__.setdefault("_parts", PartsBuilder())
        return builder

    @property
    def _parts_manager(self) -> ModelResponsePartsManager:
        """The answer's parts so far, as pydantic-ai's models build them."""
        manager: ModelResponsePartsManager = self.__dict__.setdefault("_parts_manager", ModelResponsePartsManager())
        return manager

    @property
    def _usage(self) -> Usage:
        usage: Usage = self.__dict__.setdefault("_usage_so_far", Usage())
        return usage

    @_usage.setter
    def _usage(self, value: Usage) -> None:
        self.__dict__["_usage_so_far"] = value

    def _events(self) -> AsyncIterator[ModelResponseStreamEvent]:
        """The events, as the answer arrives (a subclass implements this or `_get_event_iterator`)."""
        return self._get_event_iterator()

    def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        """pydantic-ai's name for `_events`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _events() or _get_event_iterator()")

    def __aiter__(self) -> AsyncIterator[ModelResponseStreamEvent]:
        if self._iterator is None:
            self._iterator = self._events()
        return self._iterator

    def get(self) -> ModelResponse:
        """The answer so far (all of it, once the events have run out)."""
        manager: ModelResponsePartsManager | None = self.__dict__.get("_parts_manager")
        parts = manager.get_parts() if manager is not None else self.parts.parts
        return ModelResponse(parts, model_name=self.model_name, timestamp=self.timestamp)

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
        response, usage = await send_request(self, messages, info)
        yield _WholeResponse(response, usage)

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """The model's name, as recorded on its responses."""

    @property
    @abc.abstractmethod
    def system(self) -> str:
        """Who provides the model (`'openai'`, `'function'`, ...)."""

    @property
    def base_url(self) -> str | None:
        """The base URL of the model's API, if it has one."""
        return None


async def send_request(model: Model, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
    """`model.request(...)` with the arguments its `request` takes.

    That is railyard's `(messages, info)`, or pydantic-ai's `(messages, model_settings,
    model_request_parameters)` for a model written for pydantic-ai (`info` is its
    `ModelRequestParameters`).
    """
    if _pydantic_ai_style(type(model), "request"):
        request: Any = model.request  # written for pydantic-ai: three arguments
        answer: tuple[ModelResponse, Usage] = await request(messages, info.model_settings, info)
        return answer
    return await model.request(messages, info)


def open_stream(
    model: Model, messages: list[ModelMessage], info: AgentInfo
) -> AbstractAsyncContextManager[StreamedResponse]:
    """`model.request_stream(...)`, with the arguments it takes (see `send_request`)."""
    if _pydantic_ai_style(type(model), "request_stream"):
        request_stream: Any = model.request_stream  # written for pydantic-ai: three arguments
        stream: AbstractAsyncContextManager[StreamedResponse] = request_stream(messages, info.model_settings, info)
        return stream
    return model.request_stream(messages, info)


@functools.cache
def _pydantic_ai_style(model_class: type[Model], method: str) -> bool:
    """Whether `model_class.<method>` takes pydantic-ai's three arguments (after `self`) rather than two."""
    try:
        params = list(inspect.signature(getattr(model_class, method)).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - a callable without a signature
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 4  # self, messages, model_settings, model_request_parameters


KnownModelName = str
"""A model named by a string: `'test'`, or `'openai:<model>'` for the OpenAI Chat Completions API."""


def infer_model(model: Model | KnownModelName) -> Model:
    """The model `model` names, or `model` itself when it is already a `Model`.

    A name is `'test'`, `'openai:<model>'` (or `'openai-chat:'`, `'deepseek:'` for an
    OpenAI-compatible API), or a bare OpenAI model name (`'gpt-4o'`, `'o1'`, `'o3-mini'`).

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
    if not sep and model.startswith(("gpt", "o1", "o3")):
        provider, name = "openai", model
    if name and provider in ("openai", "openai-chat"):
        from railyard.agent.models.openai import OpenAIModel

        return OpenAIModel(name)
    raise UserError(f"Unknown model: {model}")


ALLOW_MODEL_REQUESTS = True
"""Whether models that cost money or time may send requests (`TestModel` and `FunctionModel` ignore it).

Set it to False in a test suite so no test reaches a real API by accident.
"""


def check_allow_model_requests() -> None:
    """Raise unless `ALLOW_MODEL_REQUESTS` is true; a model with a real API calls it before each request.

    Raises:
        RuntimeError: model requests are not allowed.
    """
    if not ALLOW_MODEL_REQUESTS:
        raise RuntimeError("Model requests are not allowed, since ALLOW_MODEL_REQUESTS is False")


@contextmanager
def override_allow_model_requests(allow_model_requests: bool) -> Iterator[None]:
    """Set `ALLOW_MODEL_REQUESTS` to `allow_model_requests` inside the block, and back after."""
    global ALLOW_MODEL_REQUESTS  # noqa: PLW0603  # the public switch pydantic-ai code sets and reads
    saved = ALLOW_MODEL_REQUESTS
    ALLOW_MODEL_REQUESTS = allow_model_requests
    try:
        yield
    finally:
        ALLOW_MODEL_REQUESTS = saved


def cached_async_http_client(timeout: int = 600, connect: int = 5) -> httpx.AsyncClient:
    """One shared `httpx.AsyncClient` per timeout pair, made anew once it has been closed.

    Needs httpx (the `openai` extra).
    """
    client = _cached_async_http_client(timeout, connect)
    if client.is_closed:
        _cached_async_http_client.cache_clear()
        client = _cached_async_http_client(timeout, connect)
    return client


@functools.cache
def _cached_async_http_client(timeout: int, connect: int) -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout=timeout, connect=connect), headers={"User-Agent": get_user_agent()}
    )


@functools.cache
def get_user_agent() -> str:
    """The `User-Agent` railyard's HTTP models send."""
    from railyard import __version__

    return f"railyard/{__version__}"
