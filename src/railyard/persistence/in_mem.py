"""In-memory persistence: `SimpleStatePersistence` (the default) and `FullStatePersistence`.

Both are views over a `MemoryRunLog`: a run writes compact records to the log, and the
snapshots these classes show are computed from the records when asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from time import perf_counter, time
from typing import TYPE_CHECKING, Any

import pydantic

from railyard._copy import deep_copy as deep_copy_value
from railyard._node_schema import node_types
from railyard.exceptions import GraphNodeStatusError, GraphRuntimeError
from railyard.nodes import BaseNode, End, node_task
from railyard.persistence import (
    BaseStatePersistence,
    EndSnapshot,
    NodeSnapshot,
    RunEndT,
    Snapshot,
    StateT,
    build_snapshot_list_type_adapter,
)
from railyard.persistence._views import SnapshotView
from railyard.runtime._tasks import Task
from railyard.store.memory import MemoryRecorder, MemoryRunLog
from railyard.store.records import (
    ErrorInfo,
    RunEndRecorded,
    RunRecord,
    StepFailed,
    StepFinished,
    StepStarted,
    TaskClaimed,
    TasksScheduled,
)

if TYPE_CHECKING:
    from railyard.graph import Graph
    from railyard.runtime._recorder import Recorder

__all__ = ("FullStatePersistence", "LogPersistence", "SimpleStatePersistence")

AnyNode = BaseNode[Any, Any, Any]


class LogPersistence(BaseStatePersistence[StateT, RunEndT]):
    """The methods of `BaseStatePersistence`, implemented over a run log in memory.

    The base of railyard's built-in persistence classes; runs record into the log
    directly, without going through these methods.
    """

    def __init__(self, *, keep_all: bool, copy_state: Callable[[Any], Any] | None) -> None:
        self._log = MemoryRunLog(keep_all=keep_all)
        self._view = SnapshotView(self._log)
        self._copy_state = copy_state
        self._nodes: Sequence[type[AnyNode]] = ()
        self._types: tuple[Any, Any] | None = None

    def _recorder(self, graph: Graph[Any, Any, Any]) -> Recorder:
        return MemoryRecorder(self._log, self._copy_state)

    def _copy(self, state: Any) -> Any:
        return state if self._copy_state is None else self._copy_state(state)

    def set_graph_types(self, graph: Graph[StateT, Any, RunEndT]) -> None:
        """Remember the graph's node classes and types, for (de)serializing snapshots."""
        self._nodes = graph.get_nodes()
        super().set_graph_types(graph)

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        """Remember the state and result types, for (de)serializing snapshots."""
        self._types = (state_type, run_end_type)

    async def _write(self, record: RunRecord, node_id: str | None) -> None:
        """Add one record to the run log; durable subclasses store it first."""
        self._log.append(record)

    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        """Record a node that will run next."""
        task = node_task(next_node)
        await self._write(TasksScheduled((task,), self._copy(state), time()), task.node_id)

    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        """Record `next_node` unless `snapshot_id` is recorded already."""
        if snapshot_id not in self._log.task_status:
            await self.snapshot_node(state, next_node)

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        """Record the end of the run."""
        await self._write(RunEndRecorded(self._copy(state), end, time()), None)

    @asynccontextmanager
    async def record_run(self, snapshot_id: str) -> AsyncIterator[None]:
        """Mark the snapshot running, then success or error."""
        status = self._log.task_status.get(snapshot_id)
        if status is None:
            raise LookupError(f"No snapshot found with id={snapshot_id!r}")
        GraphNodeStatusError.check(status)
        node_id = snapshot_id.partition(":")[0]
        await self._write(StepStarted(snapshot_id, time()), node_id)
        start = perf_counter()
        try:
            yield
        except Exception as error:
            failed = StepFailed(snapshot_id, perf_counter() - start, ErrorInfo.from_exception(error), time())
            await self._write(failed, node_id)
            raise
        await self._write(StepFinished(snapshot_id, perf_counter() - start, None, (), None, time()), node_id)

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        """Claim the first node that has not run yet, marking it `pending`."""
        for snapshot in self._view.snapshots():
            if isinstance(snapshot, NodeSnapshot) and snapshot.status == "created":
                await self._write(TaskClaimed(snapshot.id, time()), snapshot.node.get_node_id())
                snapshot.status = "pending"
                return self._copy_snapshot(snapshot)
        return None

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        """All snapshots, in order."""
        return list(self._view.snapshots())

    def _copy_snapshot(self, snapshot: NodeSnapshot[StateT, RunEndT]) -> NodeSnapshot[StateT, RunEndT]:
        return snapshot

    def _replace(self, snapshots: Sequence[Snapshot[StateT, RunEndT]]) -> None:
        """Replace the whole log by records equivalent to `snapshots`."""
        self._log.reset(snapshot_records(snapshots))
        loaded_times = {
            snapshot.id: (snapshot.start_ts, snapshot.duration)
            for snapshot in snapshots
            if isinstance(snapshot, NodeSnapshot) and (snapshot.start_ts is not None or snapshot.duration is not None)
        }
        self._view = SnapshotView(self._log, loaded_times)

    def dump_json(self, *, indent: int | None = None) -> bytes:
        """The snapshots as JSON (pydantic-graph's format: a list of snapshots)."""
        with node_types(self._nodes):
            return self._adapter().dump_json(self._view.snapshots(), indent=indent)

    def _adapter(self) -> pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]]:
        if self._types is None:
            raise GraphRuntimeError(
                f"{type(self).__name__} does not know the graph's types yet: call "
                f"`persistence.set_graph_types(graph)` first (Graph.run and Graph.iter do)."
            )
        return build_snapshot_list_type_adapter(*self._types)


def snapshot_records(snapshots: Sequence[Snapshot[Any, Any]]) -> list[RunRecord]:
    """Run-log records that reproduce `snapshots` when viewed."""
    records: list[RunRecord] = []
    for snapshot in snapshots:
        if isinstance(snapshot, EndSnapshot):
            snapshot.result.set_snapshot_id(snapshot.id)
            records.append(RunEndRecorded(snapshot.state, snapshot.result, snapshot.ts.timestamp()))
            continue
        node: AnyNode = snapshot.node
        node.set_snapshot_id(snapshot.id)
        started = snapshot.start_ts.timestamp() if snapshot.start_ts is not None else time()
        records.append(TasksScheduled((Task(node.get_node_id(), node, (), snapshot.id),), snapshot.state, started))
        duration = snapshot.duration or 0.0
        if snapshot.status == "pending":
            records.append(TaskClaimed(snapshot.id, started))
        elif snapshot.status in ("running", "success", "error"):
            records.append(StepStarted(snapshot.id, started))
        if snapshot.status == "success":
            records.append(StepFinished(snapshot.id, duration, None, (), None, started + duration))
        elif snapshot.status == "error":
            error = ErrorInfo(type="", message="", traceback="")
            records.append(StepFailed(snapshot.id, duration, error, started + duration))
    return records


class SimpleStatePersistence(LogPersistence[StateT, RunEndT]):
    """Keeps only the latest snapshot, without copying the state; the default of a run."""

    def __init__(self, last_snapshot: Snapshot[StateT, RunEndT] | None = None) -> None:
        super().__init__(keep_all=False, copy_state=None)
        if last_snapshot is not None:
            self._replace([last_snapshot])

    def _use_history_log(self, copy_state: Callable[[Any], Any] | None) -> None:
        """Keep every record, with copies of the state, so the run's history can be shown."""
        self._log = MemoryRunLog(keep_all=True)
        self._view = SnapshotView(self._log)
        self._copy_state = copy_state

    @property
    def last_snapshot(self) -> Snapshot[StateT, RunEndT] | None:
        """The latest snapshot, or `None` before the run records anything."""
        snapshots = self._view.snapshots()
        return snapshots[-1] if snapshots else None

    @last_snapshot.setter
    def last_snapshot(self, snapshot: Snapshot[StateT, RunEndT] | None) -> None:
        self._replace([snapshot] if snapshot is not None else [])

    def __repr__(self) -> str:
        return f"SimpleStatePersistence(last_snapshot={self.last_snapshot!r})"


class FullStatePersistence(LogPersistence[StateT, RunEndT]):
    """Keeps every snapshot of the run; with `deep_copy`, each with its own copy of the state."""

    deep_copy: bool
    """Whether snapshots hold copies of the state (else the live state object)."""

    def __init__(self, deep_copy: bool = True, history: list[Snapshot[StateT, RunEndT]] | None = None) -> None:
        super().__init__(keep_all=True, copy_state=deep_copy_value if deep_copy else None)
        self.deep_copy = deep_copy
        if history:
            self._replace(history)

    @property
    def history(self) -> list[Snapshot[StateT, RunEndT]]:
        """Every snapshot of the run, in order."""
        return self._view.snapshots()

    @history.setter
    def history(self, snapshots: list[Snapshot[StateT, RunEndT]]) -> None:
        self._replace(snapshots)

    def _copy_snapshot(self, snapshot: NodeSnapshot[StateT, RunEndT]) -> NodeSnapshot[StateT, RunEndT]:
        return deep_copy_value(snapshot) if self.deep_copy else snapshot

    def load_json(self, json_data: str | bytes | bytearray) -> None:
        """Replace the history with snapshots read from JSON."""
        with node_types(self._nodes):
            self.history = self._adapter().validate_json(json_data)

    def __repr__(self) -> str:
        return f"FullStatePersistence(deep_copy={self.deep_copy!r}, history={self.history!r})"
