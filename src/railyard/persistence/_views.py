"""pydantic-graph snapshots computed from a run log, lazily and incrementally."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from railyard.persistence import EndSnapshot, NodeSnapshot, Snapshot
from railyard.store.memory import MemoryRunLog
from railyard.store.records import (
    RunEndRecorded,
    RunRecord,
    StepFailed,
    StepFinished,
    StepStarted,
    TaskClaimed,
    TasksScheduled,
)

__all__ = ("SnapshotView",)


class SnapshotView:
    """The snapshots of one run log, brought up to date on each read.

    Records are only ever appended, so each read applies the records it has not seen;
    a log that keeps only its current step is re-read whole (it holds a few records).
    """

    __slots__ = ("_by_id", "_earlier", "_loaded_times", "_seen", "_snapshots", "log")

    def __init__(
        self, log: MemoryRunLog, loaded_times: dict[str, tuple[datetime | None, float | None]] | None = None
    ) -> None:
        self.log = log
        self._loaded_times = loaded_times or {}
        """Start times and durations of snapshots loaded as given (kept until the step runs)."""
        self._snapshots: list[Snapshot[Any, Any]] = []
        self._by_id: dict[str, Snapshot[Any, Any]] = {}
        self._earlier: dict[str, Snapshot[Any, Any]] = {}
        """The snapshots of the read before a re-read: a snapshot read again is the same object."""
        self._seen = 0

    def reset(self) -> None:
        """Forget what was read, after the log was replaced."""
        self._snapshots = []
        self._by_id = {}
        self._seen = 0

    def snapshots(self) -> list[Snapshot[Any, Any]]:
        """Every snapshot of the run, in the order they were recorded."""
        records = self.log.records
        if not self.log.keep_all or self._seen > len(records):
            earlier = self._by_id
            self.reset()
            self._earlier = earlier
        for record in records[self._seen :]:
            self._apply(record)
        self._seen = len(records)
        return self._snapshots

    def get(self, snapshot_id: str) -> Snapshot[Any, Any] | None:
        """The snapshot with `snapshot_id`, if recorded."""
        self.snapshots()
        return self._by_id.get(snapshot_id)

    def _add(self, snapshot: Snapshot[Any, Any]) -> None:
        if snapshot.id not in self._by_id:
            if (same := self._earlier.pop(snapshot.id, None)) is not None and type(same) is type(snapshot):
                same.__dict__.update(snapshot.__dict__)  # the caller's object, brought up to date
                snapshot = same
            if self._loaded_times and isinstance(snapshot, NodeSnapshot) and snapshot.id in self._loaded_times:
                snapshot.start_ts, snapshot.duration = self._loaded_times[snapshot.id]
            self._by_id[snapshot.id] = snapshot
            self._snapshots.append(snapshot)

    def _node(self, task_id: str) -> NodeSnapshot[Any, Any] | None:
        snapshot = self._by_id.get(task_id)
        return snapshot if isinstance(snapshot, NodeSnapshot) else None

    def _apply(self, record: RunRecord) -> None:
        match record:
            case TasksScheduled(tasks=tasks, state=state):
                for task in tasks:
                    self._add(NodeSnapshot(state=state, node=task.inputs, id=task.task_id))
            case TaskClaimed(task_id=task_id):
                if (node := self._node(task_id)) is not None:
                    node.status = "pending"
            case StepStarted(task_id=task_id, ts=ts):
                if (node := self._node(task_id)) is not None:
                    node.status = "running"
                    node.start_ts = datetime.fromtimestamp(ts, UTC)
            case StepFinished(task_id=task_id, duration=duration, state=state, next_tasks=next_tasks, end=end, ts=ts):
                if (node := self._node(task_id)) is not None:
                    node.status = "success"
                    node.duration = duration
                for task in next_tasks:
                    self._add(NodeSnapshot(state=state, node=task.inputs, id=task.task_id))
                if end is not None:
                    self._add(
                        EndSnapshot(
                            state=state, result=end, ts=datetime.fromtimestamp(ts, UTC), id=end.get_snapshot_id()
                        )
                    )
            case RunEndRecorded(state=state, end=end, ts=ts):
                self._add(
                    EndSnapshot(state=state, result=end, ts=datetime.fromtimestamp(ts, UTC), id=end.get_snapshot_id())
                )
            case StepFailed(task_id=task_id, duration=duration):
                if (node := self._node(task_id)) is not None:
                    node.status = "error"
                    node.duration = duration
