"""What an agent talks to: the `Model` interface, and what a model is told about a run.

A model answers one request at a time: given the whole conversation so far and an
`AgentInfo` (the tools it may call and whether plain text may end the run), it returns
a `ModelResponse` and the `Usage` of that request.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from railyard.agent.exceptions import UserError
from railyard.agent.messages import ModelMessage, ModelResponse
from railyard.agent.settings import ModelSettings
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

__all__ = ("AgentInfo", "KnownModelName", "Model", "infer_model")


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


class Model(abc.ABC):
    """A language model an agent can send requests to."""

    @abc.abstractmethod
    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """Answer the conversation `messages` (ending with the new request)."""

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
