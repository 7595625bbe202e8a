"""Exceptions raised by railyard.

The tree, split by who must act::

    RailyardError
    ├── GraphSetupError          the graph definition is wrong; raised at construction
    ├── GraphRuntimeError        a run went wrong (a node returned something invalid, ...)
    │   └── GraphStepLimitError  a run went past its `max_steps`
    ├── GraphNodeStatusError     a snapshot is not in a state that allows the operation
    ├── PersistenceError         stored data is missing, locked or corrupt
    └── MermaidServiceError      the mermaid rendering service could not render a diagram

`GraphSetupError` and `GraphRuntimeError` keep the names pydantic-graph uses, so
`except GraphRuntimeError` in code written for it keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "RailyardError",
    "GraphSetupError",
    "GraphRuntimeError",
    "GraphStepLimitError",
    "GraphNodeStatusError",
    "PersistenceError",
    "MermaidServiceError",
)


class RailyardError(Exception):
    """Base class of every error railyard raises on purpose."""

    message: str
    """The human-readable description of the problem."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class GraphSetupError(TypeError, RailyardError):
    """A graph is defined wrongly; raised when the graph is constructed, never mid-run.

    It subclasses `TypeError` because most setup mistakes are type-hint mistakes.
    """

    def __init__(self, message: str) -> None:
        RailyardError.__init__(self, message)


class GraphRuntimeError(RuntimeError, RailyardError):
    """A run went wrong in a way that is not the node's own exception."""

    def __init__(self, message: str) -> None:
        RailyardError.__init__(self, message)


class GraphStepLimitError(GraphRuntimeError):
    """A run took more steps than its `max_steps` allowed."""

    max_steps: int
    """The limit that was passed."""

    def __init__(self, message: str, max_steps: int) -> None:
        super().__init__(message)
        self.max_steps = max_steps


class GraphNodeStatusError(GraphRuntimeError):
    """A snapshot was asked to run, but its status does not allow it (it already ran)."""

    actual_status: str
    """The status the snapshot had."""

    def __init__(self, actual_status: str) -> None:
        super().__init__(f"Incorrect snapshot status {actual_status!r}, must be 'created' or 'pending'.")
        self.actual_status = actual_status

    @classmethod
    def check(cls, status: str) -> None:
        """Raise unless `status` is one from which a node may start running."""
        if status not in {"created", "pending"}:
            raise cls(status)


class PersistenceError(RailyardError):
    """Stored run data is missing, locked by another driver, or does not validate."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class MermaidServiceError(RailyardError):
    """The mermaid rendering service could not be reached or refused the diagram."""
