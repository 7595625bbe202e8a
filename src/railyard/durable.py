"""Durable runs: a run recorded in a `RunStore`, so that it survives its process.

```python
store = SqliteStore("runs.db")
result = await graph.run(Start(), state=State(), persistence=DurablePersistence(store, "order-42"))
# ... or, after a crash, a deploy or a human's answer, in any process:
result = await graph.resume(DurablePersistence(store, "order-42"))
```

The guarantee: a step's outcome (the next node or the end, and the new state) is stored
in one record before the next step starts, so a finished step never runs again. The
step that was running when the process died runs again on resume (at least once for
that one step), with the same `ctx.step_id`, to use as an idempotency key. A run is
stored before its first node runs, a node's exception is stored and leaves the run
`failed` (resumable after a fix), and only one driver advances a run at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import replace
from time import time
from typing import TYPE_CHECKING, Any

from railyard._copy import deep_copy
from railyard._ids import new_hex_id, new_snapshot_id
from railyard._node_schema import node_types
from railyard._replay import replay
from railyard._run_log import StoreRecorder
from railyard._version import railyard_version
from railyard.exceptions import (
    CorruptRunError,
    GraphMismatchError,
    GraphNodeStatusError,
    RunCancelled,
    RunEnded,
)
from railyard.nodes import BaseNode
from railyard.persistence import NodeSnapshot, RunEndT, StateT
from railyard.persistence._views import SnapshotView
from railyard.persistence.in_mem import LogPersistence
from railyard.runtime._tasks import Task
from railyard.store import RunStatus, RunStore, StoredRecord
from railyard.store._deltas import StateRebuild
from railyard.store.codec import RecordCodec, RecordDecodeError
from railyard.store.memory import MemoryRunLog
from railyard.store.records import (
    DIALECT,
    JoinClosed,
    RunCancelledRecorded,
    RunCreated,
    RunEndRecorded,
    RunRecord,
    RunSuspendedRecorded,
    SignalReceived,
    StepFinished,
    TaskClaimed,
    TasksScheduled,
)

if TYPE_CHECKING:
    from railyard.graph import Graph
    from railyard.runtime._recorder import Recorder
    from railyard.versioning import GraphVersion

__all__ = ("DurablePersistence",)

# A task not run yet, claimed but not started, cut off mid-step, or failed runs on resume.
_UNFINISHED = ("created", "pending", "running", "error")


class DurablePersistence(LogPersistence[StateT, RunEndT]):
    """A run kept in a durable `RunStore` (file, SQLite, PostgreSQL or memory).

    Use it as the `persistence=` of `Graph.run` / `Graph.iter` to start run `run_id`
    (a new id is made if none is given), and with `Graph.iter_from_persistence` or
    `Graph.resume` to carry it on, in this process or another. Its snapshots
    (`load_all`, `history`) are views over the run's records.

    Raises:
        RunExists: starting a new run under the id of a stored one.
        RunLocked: another driver is advancing the run.
        RunEnded: resuming a run that has ended.
        CorruptRunError: a stored record cannot be read back with the graph's types.
    """

    def __init__(self, store: RunStore, run_id: str | None = None) -> None:
        # The run is in the store; in memory only its current step is kept (memory stays flat
        # however long the run), and snapshots are read from the store when asked for.
        super().__init__(keep_all=False, copy_state=None)
        self._log = MemoryRunLog(keep_all=False, keep_status=True)  # every task's status, to refuse re-runs
        self._view = SnapshotView(self._log)
        self.store = store
        """Where the run is kept."""
        self.run_id = run_id if run_id is not None else new_hex_id()
        """The run's id in the store."""
        self._codec: RecordCodec | None = None
        self._run_log: _NodeRunRecorder | None = None
        self._strict_new = True
        self._full = SnapshotView(MemoryRunLog())
        self._graph_name: str | None = None
        self._fingerprint: str | None = None
        self._version: GraphVersion | None = None
        self._stamp: RunCreated | None = None  # due before a resumed run writes: it goes on at a new version
        self._resuming = False  # `_reload` reads the run to resume it (`load_next`)
        self.resume_attempts: dict[str, tuple[int, float]] = {}
        """Read by a resumed run: the next attempt (and when it is due) of a node its retry policy retries."""
        self.resume_answers: dict[str, tuple[str, Any]] = {}
        """Read by a resumed run: the signals delivered to a node that waited."""
        self.resume_started: float | None = None
        """Read by a resumed run: when it started (its run timeout counts from then)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store!r}, run_id={self.run_id!r})"

    @property
    def history(self) -> list[Any]:
        """The run's snapshots as of the last `load_all()` / `load_next()` (which read the store)."""
        return self._full.snapshots()

    def dump_json(self, *, indent: int | None = None) -> bytes:
        """The snapshots of the last `load_all()` as JSON (pydantic-graph's format)."""
        with node_types(self._nodes):
            return self._adapter().dump_json(self._full.snapshots(), indent=indent)

    # -- types ------------------------------------------------------------------------------

    def set_graph_types(self, graph: Graph[StateT, Any, RunEndT]) -> None:
        """Remember the graph's node classes, types, name and version (recorded with a new run)."""
        from railyard.versioning import graph_version

        self._graph_name = graph.name
        self._version = graph_version(graph)
        self._fingerprint = self._version.fingerprint
        super().set_graph_types(graph)

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        """Remember the graph's types, and build the codec its records are stored with."""
        super().set_types(state_type, run_end_type)
        self._codec = _codec_for(tuple(self._nodes), state_type, run_end_type)
        if self._run_log is None:
            self._run_log = _NodeRunRecorder(
                self.store, self.run_id, self._codec, self._log, graph=self._graph_name, fingerprint=self._fingerprint
            )
        else:  # the same run (perhaps open, holding its lock), told the graph's types again
            self._run_log.codec = self._codec
            self._run_log.graph = self._graph_name
            self._run_log.fingerprint = self._fingerprint
        self._run_log.shape = self._version.shape if self._version is not None else None

    def _require_codec(self) -> RecordCodec:
        if self._codec is None:
            raise RuntimeError(
                f"{self!r} does not know the graph's types yet: call `persistence.set_graph_types(graph)` "
                f"first (Graph.run, Graph.iter and Graph.iter_from_persistence do)."
            )
        return self._codec

    # -- writing: the store first, then the in-memory view ---------------------------------

    def _require_run_log(self) -> _NodeRunRecorder:
        self._require_codec()
        assert self._run_log is not None, "made with the codec"
        return self._run_log

    async def _write(self, record: RunRecord, node_id: str | None) -> None:
        """Store one record, then add it to the in-memory view; only the lock holder writes.

        Called outside a run (a direct `snapshot_node` or `load_next`, say), it takes the
        run's lock for the one write, so it is refused while another driver holds the run.
        """
        await self._require_run_log().write(record, node_id)

    def _recorder(self, graph: Graph[Any, Any, Any]) -> Recorder:
        return self._require_run_log()

    # -- the run's lifecycle ----------------------------------------------------------------

    async def _open_run(self, *, new: bool) -> None:
        """Take the run's lock; for a new run, refuse an id the store already holds."""
        run_log = self._require_run_log()
        exists = await run_log.open(new=new, existing_ok=not self._strict_new)
        if new and exists:
            try:
                await self._reload()
            except BaseException:
                await self._close_run()
                raise

    async def _close_run(self) -> None:
        """Release the run's lock."""
        if self._run_log is not None:
            await self._run_log.close()

    # -- reading ----------------------------------------------------------------------------

    async def _reload(self) -> list[RunRecord]:
        """Read the run's records from the store: all of them into `history`, the tail into the log.

        Read to resume the run (`load_next`), first check that this graph can (`railyard.versioning`).
        """
        stored = await self.store.read(self.run_id)
        if self._resuming and self._version is not None:
            from railyard.versioning import check_resume

            self._stamp = check_resume(self._version, self.store, self.run_id, stored, self._require_codec())
        records = decode_run(self.run_id, self.store, stored, self._require_codec(), version=self._version)
        full = MemoryRunLog()
        full.reset(records)
        self._full = SnapshotView(full)
        self._log.reset(records)
        self._view.reset()
        run_log = self._require_run_log()
        run_log.exists = True
        run_log.status = stored[-1].status if stored else None
        return records

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        """Claim the node to run next: one not run yet, or one interrupted or failed.

        Raises:
            RunNotFound: the store has no such run.
            RunEnded: the run has ended.
            GraphVersionError: the graph changed in ways the run needs (nothing is stored).
        """
        self._resuming = True
        try:
            records = await self._reload()
        finally:
            self._resuming = False
        # The one replay every kind of run resumes through: the pending tasks in the order they
        # were scheduled, so the last is the node to run next (not run yet, claimed, cut off
        # mid-step, or failed); one scheduled earlier and never run was replaced (`run.next(node)`).
        position = replay(records)
        GraphMismatchError.check(self.run_id, repr(self.store), position.graph, self._graph_name)
        if position.cancelled is not None:
            raise RunCancelled(self.run_id, repr(self.store), position.cancelled)
        if position.end is not None:
            raise RunEnded(self.run_id, repr(self.store))
        if not position.pending:
            return None
        self.resume_attempts = position.attempts  # the attempt a retried node had reached
        self.resume_answers = position.answers  # the signals its waiting node gets
        self.resume_started = position.started_at  # when the run started (its run timeout counts from it)
        waiting = self._full.get(position.pending[-1].task_id)
        if not isinstance(waiting, NodeSnapshot) or waiting.status not in _UNFINISHED:
            return None
        if self._stamp is not None:  # the run goes on at this graph's version: said before it writes
            await self._write_stamp(self._stamp)
            self._stamp = None
        if waiting.status != "pending":
            await self._write(TaskClaimed(waiting.id, time()), waiting.node.get_node_id())
            waiting.status = "pending"
        return deep_copy(waiting)

    async def load_all(self) -> list[Any]:
        """Every snapshot of the run, read from the store."""
        await self._reload()
        return list(self._full.snapshots())

    async def _write_stamp(self, record: RunCreated) -> None:
        """Append the record saying the run goes on at this graph's version, its status unchanged."""
        from railyard.versioning import stamp

        run_log = self._require_run_log()
        status = run_log.status if run_log.status is not None else RunStatus.WAITING
        if run_log.locked:
            await stamp(self.store, self.run_id, self._require_codec(), record, status)
        else:
            async with self.store.lock(self.run_id):
                await stamp(self.store, self.run_id, self._require_codec(), record, status)


_CODECS: dict[tuple[Any, ...], RecordCodec] = {}
"""Codecs by (node classes, state type, end type): building one costs about a millisecond."""


def _codec_for(nodes: tuple[type[BaseNode[Any, Any, Any]], ...], state_type: Any, run_end_type: Any) -> RecordCodec:
    """The record codec of a graph's types, made once per process (a persistence is made per run)."""
    key = (nodes, state_type, run_end_type)
    try:
        codec = _CODECS.get(key)
    except TypeError:  # an unhashable type: no caching
        return RecordCodec(nodes, state_type, run_end_type)
    if codec is None:
        if len(_CODECS) >= 256:
            _CODECS.clear()
        codec = _CODECS[key] = RecordCodec(nodes, state_type, run_end_type)
    return codec


class ShapedRecorder(StoreRecorder):
    """A store recorder whose new runs open with the graph's shape (`railyard._fingerprint`)."""

    shape: dict[str, Any] | None = None
    """The graph's shape, recorded in the run's `run_created`."""

    def _created(self) -> RunCreated:
        return replace(super()._created(), shape=self.shape)


class _NodeRunRecorder(ShapedRecorder):
    """The store recorder of a node-API run: it also keeps the persistence's in-memory log.

    That log knows every task's status, so a task scheduled twice is recorded once, and a
    step that already ran is refused before it runs again.
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        codec: RecordCodec,
        log: MemoryRunLog,
        *,
        graph: str | None,
        fingerprint: str | None,
    ) -> None:
        super().__init__(store, run_id, codec, graph=graph, fingerprint=fingerprint, on_record=log.append)
        self.log = log

    def tasks_created(self, tasks: Sequence[Task], state: Any, replaces: Sequence[str] = ()) -> Awaitable[None] | None:
        """Record the tasks not recorded yet."""
        known = self.log.task_status
        return super().tasks_created([task for task in tasks if task.task_id not in known], state, replaces)

    async def step_started(self, task: Task, state: Any) -> None:
        """Record that the task starts, unless it already ran (or runs elsewhere).

        Raises:
            GraphNodeStatusError: the task is not waiting to run.
        """
        status = self.log.task_status.get(task.task_id)
        if status is not None:
            GraphNodeStatusError.check(status)
        await super().step_started(task, state)

    async def steps_started(self, tasks: Sequence[Task], state: Any) -> None:
        """Record that the tasks start, unless one of them already ran (or runs elsewhere).

        Raises:
            GraphNodeStatusError: a task is not waiting to run.
        """
        for task in tasks:
            status = self.log.task_status.get(task.task_id)
            if status is not None:
                GraphNodeStatusError.check(status)
        await super().steps_started(tasks, state)


async def read_run(
    store: RunStore, run_id: str, codec: RecordCodec, *, version: GraphVersion | None = None
) -> list[RunRecord]:
    """Every record of a stored run, decoded with the graph's types (and migrated to its `version`).

    Raises:
        RunNotFound: the store has no such run.
        CorruptRunError: a record cannot be decoded; the message names the run, the record
            (1-based) and the field.
        GraphVersionError: a record stored by an older version does not fit once migrated.
    """
    return decode_run(run_id, store, await store.read(run_id), codec, version=version)


def decode_run(
    run_id: str,
    store: RunStore,
    stored: Sequence[StoredRecord],
    codec: RecordCodec,
    *,
    version: GraphVersion | None = None,
) -> list[RunRecord]:
    """Decode a run's stored records; a record that does not decode is a `CorruptRunError`.

    With the graph's `version`, records stored by an older version of the graph are
    migrated as they are read (`railyard.versioning`); the stored records are not changed.
    """
    if version is not None and version.migrations:
        from railyard.versioning import decode_migrated

        migrated = decode_migrated(run_id, store, stored, codec, version)
        if migrated is not None:
            return migrated
    records: list[RunRecord] = []
    states = StateRebuild()  # states stored by change are rebuilt record by record
    for index, item in enumerate(stored, start=1):
        try:
            records.append(codec.decode(item.body, states))
        except RecordDecodeError as err:
            raise CorruptRunError(run_id, repr(store), index, str(err)) from None
    return records


async def fork_run(
    store: RunStore,
    run_id: str,
    at_step: int,
    codec: RecordCodec,
    *,
    new_run_id: str | None = None,
    graph: str | None = None,
    fingerprint: str | None = None,
    version: GraphVersion | None = None,
) -> str:
    """Start a new run from the state and next node after step `at_step` of run `run_id`.

    Step 0 is the start of the run. The old run is not changed. With the graph's `version`,
    what an older version stored is migrated, and the new run is of this version.

    Returns:
        The new run's id.

    Raises:
        ValueError: the run has no step `at_step`, or that step ended the run.
    """
    records = await read_run(store, run_id, codec, version=version)
    finished = [r for r in records if isinstance(r, StepFinished) and r.task_id]
    if at_step == 0:
        first = next((r for r in records if isinstance(r, TasksScheduled)), None)
        if first is None:
            raise ValueError(f"Run {run_id!r} has no start to fork from.")
        state, tasks = first.state, first.tasks
    elif 0 < at_step <= len(finished):
        step = finished[at_step - 1]
        if step.end is not None:
            raise ValueError(f"Step {at_step} of run {run_id!r} ended the run; fork from an earlier step.")
        state, tasks = step.state, step.next_tasks
    else:
        raise ValueError(f"Run {run_id!r} has {len(finished)} finished steps; cannot fork at step {at_step}.")
    new_tasks = tuple(_fresh(task) for task in tasks)
    new_id = new_run_id if new_run_id is not None else new_hex_id()
    shape = version.shape if version is not None else None
    created = RunCreated(graph, fingerprint, railyard_version(), DIALECT, time(), shape=shape)
    record = TasksScheduled(new_tasks, state, time())
    node_id = new_tasks[0].node_id if new_tasks else None
    await store.create(
        new_id,
        [
            codec.stored(created, node_id=None, first=True, graph=graph),
            codec.stored(record, node_id=node_id, first=True),
        ],
    )
    return new_id


def record_node_id(record: RunRecord) -> str | None:
    """The id of the node a record is about, as far as the record itself tells."""
    if isinstance(record, TasksScheduled):
        return record.tasks[0].node_id if record.tasks else None
    if isinstance(record, RunCreated | RunEndRecorded | SignalReceived | RunSuspendedRecorded | RunCancelledRecorded):
        return None
    if isinstance(record, JoinClosed):
        return record.join_id
    if isinstance(record, StepFinished) and record.node_id is not None:
        return record.node_id
    return record.task_id.partition(":")[0] or None


def _fresh(task: Task) -> Task:
    """A copy of `task` under a new id (its node copied, with a new snapshot id)."""
    node = task.inputs
    if isinstance(node, BaseNode):
        copied: BaseNode[Any, Any, Any] = node.deep_copy()
        task_id = new_snapshot_id(task.node_id)
        copied.set_snapshot_id(task_id)
        return Task(task.node_id, copied, task.fork_stack, task_id)
    return Task(task.node_id, deep_copy(node), task.fork_stack, new_hex_id())
