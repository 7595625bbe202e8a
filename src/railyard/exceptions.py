"""Exceptions raised by railyard.

The tree, split by who must act::

    RailyardError
    ├── GraphSetupError          the graph definition is wrong; raised at construction
    │   ├── GraphBuildingError   a builder graph cannot be built (also a ValueError)
    │   └── GraphValidationError a builder graph's structure is wrong (also a ValueError)
    ├── GraphRuntimeError        a run went wrong (a node returned something invalid, ...)
    │   ├── GraphStepLimitError  a run went past its `max_steps`
    │   └── ChildRunError        a child run failed or was cancelled (railyard.children)
    ├── GraphNodeStatusError     a snapshot is not in a state that allows the operation
    ├── PersistenceError         stored data is missing, locked or corrupt
    │   ├── RunNotFound          no run with that id in the store
    │   ├── RunExists            a new run was given the id of a stored one
    │   ├── RunLocked            another driver holds the run
    │   ├── RunEnded             the run has ended and cannot go on
    │   ├── RunCancelled         the run was cancelled and is never resumed
    │   │   └── RunTimedOut      it ran longer than its graph's run_timeout (also a TimeoutError)
    │   ├── GraphMismatchError   the run was made by another graph
    │   ├── CorruptRunError      a stored record cannot be read back
    │   │   └── GraphVersionError  the graph changed in ways the run needs (no migration)
    │   └── SignalError          a signal names a key the run does not wait for, or a bad payload
    ├── RunSuspended             the run waits for a signal (railyard.suspension)
    ├── WaitTimedOut             `wait_for(..., timeout=)` passed its deadline (railyard.suspension; a TimeoutError)
    └── MermaidServiceError      the mermaid rendering service could not render a diagram

`GraphSetupError` and `GraphRuntimeError` keep the names pydantic-graph uses, so
`except GraphRuntimeError` in code written for it keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    "RunTimedOut",
    "CorruptRunError",
    "GraphMismatchError",
    "GraphVersionError",
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

    def __init__(self, run_id: str, where: str, *, doing: str = "resume") -> None:
        super().__init__(
            f"Run {run_id!r} in {where} is being driven by another process or task; only one "
            f"driver may advance a run at a time. Wait for it to stop, then {doing}.",
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


class RunTimedOut(RunCancelled, TimeoutError):
    """The run ran longer than its graph's `run_timeout`: its steps were cancelled and it is stored cancelled."""

    def __init__(self, run_id: str | None, where: str, timeout: float) -> None:
        reason = f"ran longer than its run_timeout of {timeout:g} s"
        super().__init__(run_id or "(not stored)", where, reason)
        self.args = (
            f"Run {run_id!r} in {where} {reason}: its running steps were cancelled, and it is stored cancelled "
            f"(it cannot be resumed). Give the graph a longer run_timeout if runs are meant to take this long.",
        )
        self.timeout = timeout
        """The graph's `run_timeout`, in seconds."""


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


class GraphVersionError(CorruptRunError):
    """A stored run cannot be resumed by this version of its graph: the graph changed in ways the run needs.

    Raised on resume, before anything is stored (the run is left as it was). The message
    names the first record the graph cannot read (`record`, `problem`; record 1, the run's
    creation, when the difference is the graph's version), lists each difference on its
    own line (`differences`) and says what to do: give a new field a default, or raise the
    graph's `version=` and add a `railyard.versioning.Migration` that upgrades what the run
    stored.
    """

    def __init__(
        self,
        run_id: str,
        where: str,
        graph: str | None,
        differences: Sequence[str],
        *,
        stored_version: int,
        version: int,
        advice: str,
        record: int = 1,
        problem: str | None = None,
    ) -> None:
        named = f"graph {graph!r}" if graph is not None else "the graph"
        lines = "\n".join(f"  - {difference}" for difference in differences)
        if problem is None:
            head = f"Run {run_id!r} in {where} cannot be resumed by {named} (version {version}); it was"
        else:
            head = f"Run {run_id!r} in {where}: record {record} cannot be read: {problem}. {named.capitalize()} "
            head += f"(version {version}) cannot resume it: the run was"
        PersistenceError.__init__(
            self,
            f"{head} stored by version {stored_version}, and the graph differs in what the run needs:\n{lines}\n"
            f"{advice} Nothing was changed.",
            run_id=run_id,
            record=record,
        )
        self.run_id = run_id
        self.record = record
        self.graph = graph
        """The name of the graph that tried to resume the run."""
        self.problem = problem
        """Why `record` cannot be read (`None`: it can; the run is refused for its version)."""
        self.differences = tuple(differences)
        """Each difference that stops the run, as the message lists them."""
        self.stored_version = stored_version
        """The graph version the run's latest records were written by."""
        self.version = version
        """The version of the graph that tried to resume it."""


class MermaidServiceError(RailyardError):
    """The mermaid rendering service could not be reached or refused the diagram."""
