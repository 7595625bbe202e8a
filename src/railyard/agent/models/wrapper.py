"""`WrapperModel`: a model that hands every request to another, for subclasses that add behaviour around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from railyard.agent.messages import ModelMessage, ModelResponse
from railyard.agent.models import (
    AgentInfo,
    KnownModelName,
    Model,
    ModelRequestParameters,  # noqa: F401  # as in pydantic-ai's module
    StreamedResponse,
    infer_model,
    open_stream,
    send_request,
)
from railyard.agent.settings import ModelSettings  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.usage import Usage

__all__ = ("WrapperModel",)


class WrapperModel(Model):
    """A model that sends each request to `wrapped`; any other attribute is the wrapped model's."""

    def __init__(self, wrapped: Model | KnownModelName) -> None:
        self.wrapped: Model = infer_model(wrapped)
        """The model that answers."""

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """The wrapped model's answer."""
        return await send_request(self.wrapped, messages, info)

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[StreamedResponse]:
        """The wrapped model's streamed answer."""
        async with open_stream(self.wrapped, messages, info) as response:
            yield response

    @property
    def model_name(self) -> str:
        """The wrapped model's name."""
        return self.wrapped.model_name

    @property
    def system(self) -> str:
        """The wrapped model's provider."""
        return self.wrapped.system

    @property
    def base_url(self) -> str | None:
        """The wrapped model's base URL."""
        return self.wrapped.base_url

    def __getattr__(self, name: str) -> Any:
        if name == "wrapped":  # not set yet (during unpickling or copying)
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(wrapped={self.wrapped!r})"
