"""The agent loop's exceptions."""

from __future__ import annotations

import builtins
import json

__all__ = (
    "AgentRunError",
    "FallbackExceptionGroup",
    "ModelConnectionError",
    "ModelHTTPError",
    "ModelRetry",
    "UnexpectedModelBehavior",
    "UsageLimitExceeded",
    "UserError",
)


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

    def __init__(self, message: str, body: str | None = None) -> None:
        self.body = body
        """The model's answer, when it helps to see it."""
        super().__init__(message)
        self.args = (message,)

    def __str__(self) -> str:
        if not self.body:
            return self.message
        try:
            body = json.dumps(json.loads(self.body), indent=2)
        except ValueError:
            body = self.body
        return f"{self.message}, body:\n{body}"


class ModelHTTPError(AgentRunError):
    """A model's HTTP API answered with an error status (after any retries)."""

    def __init__(self, status_code: int, model_name: str, body: object | None = None) -> None:
        self.status_code = status_code
        """The HTTP status of the last answer."""
        self.model_name = model_name
        """The model the request was for."""
        self.body = body
        """The error the API sent back: its `error` object when it sent one, else the body."""
        super().__init__(f"status_code: {status_code}, model_name: {model_name}, body: {body}")


class ModelConnectionError(AgentRunError):
    """A model's API could not be reached (after any retries)."""


class UserError(RuntimeError):
    """The agent was used wrongly; the message says how to fix it."""

    def __init__(self, message: str) -> None:
        self.message = message
        """What is wrong, and how to fix it."""
        super().__init__(message)


class ModelRetry(Exception):
    """Raised by a tool to ask the model to call it again, with the message as the reason."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


ExceptionGroup = builtins.ExceptionGroup
"""The built-in exception group (pydantic-ai's module offers it under this name)."""


class FallbackExceptionGroup(ExceptionGroup[Exception]):
    """Every model of a `FallbackModel` failed; `exceptions` holds what each raised."""
