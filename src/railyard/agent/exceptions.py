"""The agent loop's exceptions."""

from __future__ import annotations

__all__ = ("AgentRunError", "ModelRetry", "UnexpectedModelBehavior", "UsageLimitExceeded", "UserError")


class AgentRunError(RuntimeError):
    """An agent run could not go on."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class UsageLimitExceeded(AgentRunError):
    """A run went past one of its `UsageLimits`."""


class UnexpectedModelBehavior(AgentRunError):
    """The model answered in a way the agent cannot use (for instance, too many retries)."""


class UserError(RuntimeError):
    """The agent was used wrongly; the message says how to fix it."""


class ModelRetry(Exception):
    """Raised by a tool to ask the model to call it again, with the message as the reason."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
