"""`OpenAIProvider`: the base URL, API key and HTTP client of an OpenAI-compatible API."""

from railyard.agent.models.openai import OpenAIProvider

__all__ = ("OpenAIProvider",)
