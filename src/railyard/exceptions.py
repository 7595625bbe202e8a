"""Exceptions raised by railyard.

The tree, split by who must act::

    RailyardError
    ├── GraphSetupError          the graph definition is wrong; raised at construction
    │   ├── GraphBuildingError   a builder graph cannot be built (also a ValueError)
    │   └── GraphValidationError a builder graph's structure is wrong (also a ValueError)
    ├── GraphRuntimeError        a run went wrong (a node returned something invalid, ...)
    │   └── GraphStepLimitError  a run went past its `max_steps`
    ├── GraphNodeStatusError     a snapshot is not in a state that allows the operation
    ├── PersistenceError         stored data is missing, locked or corrupt
    │   ├── RunNotFound          no run with that id in the store
    │   ├── RunExists            a new run was given the id of a stored one
    │   ├── RunLocked            another driver holds the run
    │   ├── RunEnded             the run has ended and cannot go on
    │   ├── RunCancelled         the run was cancelled and is never resumed
    │   ├── GraphMismatchError   the run was made by another graph
    │   ├── CorruptRunError      a stored record cannot be read back
    │   └── SignalError          a signal names a key the run does not wait for, or a bad payload
    ├── RunSuspended             the run waits for a signal (railyard.suspension)
    └── MermaidServiceError      the mermaid rendering service could not render a diagram

`GraphSetupError` and `GraphRuntimeError` keep the names pydantic-graph uses, so
`except GraphRuntimeError` in code written for it keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "RailyardError",
    "GraphSetupError",
    "GraphBuildingError",
    "GraphValidationError",
    "GraphRuntimeError",
    "GraphStepLimitError",
    "GraphNodeStatusError",
    "PersistenceError",
    "RunNotFound",
    "RunExists",
    "RunLocked",
    "RunEnded",
    "RunCancelled",
    "CorruptRunError",
    "GraphMismatchError",
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


class GraphBuildingError(GraphSetupError, ValueError):
    """A builder graph cannot be built: two nodes share an id, an edge is malformed."""


class GraphValidationError(GraphSetupError, ValueError):
    """A builder graph's structure is wrong: unreachable nodes, dead ends, no way to the end."""


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


class RunNotFound(PersistenceError, LookupError):
    """The store has no run with this id."""

    def __init__(self, run_id: str, where: str) -> None:
        super().__init__(f"No run {run_id!r} in {where}.", run_id=run_id)
        self.run_id = run_id


class RunExists(PersistenceError):
    """A new run was given the id of a run the store already holds."""

    def __init__(self, run_id: str, where: str) -> None:
        super().__init__(
            f"Run {run_id!r} already exists in {where}. Resume it (`graph.resume(...)`, "
            f"`graph.iter_from_persistence(...)`), or start the new run under another id.",
            run_id=run_id,
        )
        self.run_id = run_id


class RunLocked(PersistenceError):
    """Another driver (a process, or a task in this one) is running this run."""

    def __init__(self, run_id: str, where: str) -> None:
        super().__init__(
            f"Run {run_id!r} in {where} is being driven by another process or task; only one "
            f"driver may advance a run at a time. Wait for it to stop, then resume.",
            run_id=run_id,
        )
        self.run_id = run_id


class RunEnded(PersistenceError, GraphRuntimeError):
    """The run has ended; there is nothing left to resume (also a `GraphRuntimeError`)."""

    def __init__(self, run_id: str, where: str) -> None:
        super().__init__(
            f"Run {run_id!r} in {where} has ended and cannot be resumed. Use "
            f"`graph.fork(...)` to start a new run from one of its steps.",
            run_id=run_id,
        )
        self.run_id = run_id


class RunCancelled(PersistenceError, GraphRuntimeError):
    """The run was cancelled (`cancel(store, run_id, reason)`); it is never resumed (also a `GraphRuntimeError`)."""

    def __init__(self, run_id: str, where: str, reason: str) -> None:
        super().__init__(
            f"Run {run_id!r} in {where} was cancelled ({reason}) and cannot be resumed. Use "
            f"`graph.fork(...)` to start a new run from one of its steps.",
            run_id=run_id,
        )
        self.run_id = run_id
        self.reason = reason
        """Why it was cancelled."""


class CorruptRunError(PersistenceError):
    """A stored record of a run cannot be read back: damaged, or written for other types."""

    def __init__(self, run_id: str, where: str, record: int, problem: str) -> None:
        super().__init__(
            f"Run {run_id!r} in {where}: record {record} cannot be read: {problem}. "
            f"Nothing was changed; fix the data or the types, then resume.",
            run_id=run_id,
            record=record,
        )
        self.run_id = run_id
        self.record = record


class GraphMismatchError(PersistenceError):
    """A stored run is taken up with another graph than the one it was created for."""

    def __init__(self, run_id: str, where: str, recorded: str, given: str) -> None:
        super().__init__(
            f"Run {run_id!r} in {where} was created by graph {recorded!r}, not by graph {given!r}: resume it "
            f"with graph {recorded!r} (a worker chooses it by that name). Nothing was changed.",
            run_id=run_id,
        )
        self.run_id = run_id
        self.recorded = recorded
        self.given = given

    @classmethod
    def check(cls, run_id: str, where: str, recorded: str | None, given: str | None) -> None:
        """Raise unless the graphs agree (a run or a graph without a name agrees with any)."""
        if recorded is not None and given is not None and recorded != given:
            raise cls(run_id, where, recorded, given)


class MermaidServiceError(RailyardError):
    """The mermaid rendering service could not be reached or refused the diagram."""
