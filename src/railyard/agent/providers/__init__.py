"""Where a model's API is and how to reach it: `Provider`, and `railyard.agent.providers.openai`."""

from __future__ import annotations

import abc
from typing import Any, Generic

from typing_extensions import TypeVar

__all__ = ("InterfaceClient", "Provider", "infer_provider")

InterfaceClient = TypeVar("InterfaceClient")
"""The client a provider hands its models (for OpenAI-compatible APIs, an `httpx.AsyncClient` or None)."""


class Provider(abc.ABC, Generic[InterfaceClient]):
    """A model API's address and the client that talks to it."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The provider's name (`'openai'`, ...)."""

    @property
    @abc.abstractmethod
    def base_url(self) -> str:
        """The API's base URL."""

    @property
    @abc.abstractmethod
    def client(self) -> InterfaceClient:
        """The client requests go through."""


def infer_provider(provider: str) -> Provider[Any]:
    """The provider `provider` names, made with its defaults (keys from the environment).

    Raises:
        ValueError: railyard has no provider of that name.
    """
    if provider == "openai":
        from railyard.agent.models.openai import OpenAIProvider

        return OpenAIProvider()
    raise ValueError(f"Unknown provider: {provider}")
