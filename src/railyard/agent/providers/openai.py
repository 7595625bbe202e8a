"""`OpenAIProvider`: the base URL, API key and HTTP client of an OpenAI-compatible API."""

from railyard.agent.models import cached_async_http_client  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.models.openai import OpenAIProvider
from railyard.agent.providers import Provider  # noqa: F401  # as in pydantic-ai's module

__all__ = ("OpenAIProvider",)
