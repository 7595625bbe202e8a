"""The run history of the seeds' API: `run.history` as a list of `NodeStep` and `EndStep`.

A `NodeStep` is one node that ran, with the state as it was after the node ran; an
`EndStep` is the end of the run. `Graph.dump_history` and `Graph.load_history` turn a
history into JSON and back. In railyard the history is a view over the run log.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal

import pydantic
from typing_extensions import TypeVar

from railyard._node_schema import CustomNodeSchema
from railyard.nodes import BaseNode, End
from railyard.store.memory import MemoryRunLog
from railyard.store.records import RunEndRecorded, StepFinished, StepStarted, TasksScheduled

__all__ = (
    "EndStep",
    "HistoryStep",
    "NodeStep",
    "RunEndT",
    "StateT",
    "deep_copy_state",
    "history_type_adapter",
)

StateT = TypeVar("StateT", default=Any)
"""Type of the state kept in history steps."""
RunEndT = TypeVar("RunEndT", default=Any)
"""Type of the result kept in the end step."""


def deep_copy_state(state: StateT) -> StateT:
    """The default way history copies the state: a deep copy."""
    return copy.deepcopy(state)


def _now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class NodeStep(Generic[StateT, RunEndT]):
    """A node that ran, and the state after it ran."""

    state: StateT
    """The state after the node ran."""
    node: Annotated[BaseNode[StateT, Any, RunEndT], CustomNodeSchema()]
    """The node that ran."""
    start_ts: datetime = field(default_factory=_now_utc)
    """When the node started."""
    duration: float | None = None
    """How long it ran, in seconds."""
    kind: Literal["node"] = "node"
    """Tag telling node steps from end steps."""
    snapshot_state: Annotated[Callable[[StateT], StateT], pydantic.Field(exclude=True)] = field(
        default=deep_copy_state, repr=False, compare=False
    )
    """How `state` is copied when the step is created."""

    def __post_init__(self) -> None:
        self.state = self.snapshot_state(self.state)

    def data_snapshot(self) -> BaseNode[StateT, Any, RunEndT]:
        """The node that ran."""
        return self.node


@dataclass
class EndStep(Generic[RunEndT]):
    """The end of the run."""

    result: End[RunEndT]
    """The `End` the run finished with."""
    ts: datetime = field(default_factory=_now_utc)
    """When the run ended."""
    kind: Literal["end"] = "end"
    """Tag telling end steps from node steps."""

    def data_snapshot(self) -> End[RunEndT]:
        """The run's `End`."""
        return self.result


HistoryStep = NodeStep[StateT, RunEndT] | EndStep[RunEndT]
"""One step of a run's history."""


def _same(value: Any) -> Any:
    return value


def history_type_adapter(state_t: Any, run_end_t: Any) -> pydantic.TypeAdapter[list[HistoryStep[Any, Any]]]:
    """The TypeAdapter that reads and writes a history as JSON."""
    step = Annotated[NodeStep[state_t, run_end_t] | EndStep[run_end_t], pydantic.Discriminator("kind")]
    return pydantic.TypeAdapter(list[step])


class HistoryView:
    """The seeds' history of one run log, appended to a list as the run goes on."""

    __slots__ = ("_nodes", "_seen", "_started", "log", "steps")

    def __init__(self, log: MemoryRunLog, steps: list[HistoryStep[Any, Any]] | None = None) -> None:
        self.log = log
        self.steps: list[HistoryStep[Any, Any]] = steps if steps is not None else []
        self._seen = 0
        self._nodes: dict[str, BaseNode[Any, Any, Any]] = {}
        self._started: dict[str, float] = {}

    def sync(self) -> list[HistoryStep[Any, Any]]:
        """Append the steps recorded since the last call, and return the history."""
        if not self.log.keep_all:
            return self.steps  # a log that keeps only its current step has no history
        records = self.log.records
        for record in records[self._seen :]:
            match record:
                case TasksScheduled(tasks=tasks):
                    for task in tasks:
                        self._nodes[task.task_id] = task.inputs
                case StepStarted(task_id=task_id, ts=ts):
                    self._started[task_id] = ts
                case StepFinished(
                    task_id=task_id, duration=duration, state=state, next_tasks=next_tasks, end=end, ts=ts
                ):
                    node = self._nodes.pop(task_id, None)
                    if node is not None:
                        started = self._started.pop(task_id, ts - duration)
                        self.steps.append(
                            NodeStep(
                                state=state,
                                node=node,
                                start_ts=datetime.fromtimestamp(started, UTC),
                                duration=duration,
                                snapshot_state=_same,
                            )
                        )
                    for task in next_tasks:
                        self._nodes[task.task_id] = task.inputs
                    if end is not None:
                        self.steps.append(EndStep(result=end, ts=datetime.fromtimestamp(ts, UTC)))
                case RunEndRecorded(end=end, ts=ts):
                    self.steps.append(EndStep(result=end, ts=datetime.fromtimestamp(ts, UTC)))
                case _:
                    pass
        self._seen = len(records)
        return self.steps
