"""The one replay: a run's records in, the position it stands at out — for every kind of run.

A durable run is resumed from its log alone. `replay` reads the records in order and
rebuilds what the loop held when the run stopped:

- the state (the latest recorded);
- the pending tasks: every task scheduled (at the start, by a step, by a join, by a
  caller's `next(...)`) that has not finished and was not replaced, in the order they
  were scheduled; a task that was running or failed when the run stopped is pending again;
- the open joins, each value that reached them reduced again in the order it arrived
  (on a scratch copy of the state: reducers' effects on the state are in the state
  recorded after them);
- the joins that closed, so a closed join is never reopened;
- the maps part-way through, with the items not handed out yet;
- the next task number, so new task ids go on from the stored ones.

The program says what a task is (`Program.kinds`, `join_key`, `reduce`, `map_spec`);
node-API runs have no joins or maps, so their position is their state and the task to
run next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from railyard._copy import deep_copy
from railyard.runtime._end import End
from railyard.runtime._joins import JoinKey, JoinState, closing_id
from railyard.runtime._program import MapItems, NodeKind, Program
from railyard.runtime._tasks import ForkStack, Task
from railyard.store.records import (
    JoinClosed,
    RunCancelledRecorded,
    RunCreated,
    RunEndRecorded,
    RunRecord,
    SignalReceived,
    StepFailed,
    StepFinished,
    StepSuspended,
    TasksScheduled,
)
from railyard.suspension import DEADLINE_PREFIX, TIMER_PREFIX

__all__ = ("Position", "replay")


@dataclass
class Position:
    """Where a stored run stands: what to run next and what is held open."""

    state: Any = None
    """The state, as last recorded."""
    pending: list[Task] = field(default_factory=list[Task])
    """Tasks scheduled and not finished, in the order they were scheduled."""
    joins: dict[JoinKey, JoinState] = field(default_factory=dict[JoinKey, JoinState])
    """The open joins, their values reduced again."""
    closed: set[str] = field(default_factory=set[str])
    """The closing ids of the joins that closed."""
    maps: list[tuple[MapItems, ForkStack, str, int]] = field(default_factory=list)
    """Maps part-way through: the items still to hand out, the fork's stack, its task id, the first item's index."""
    next_task_number: int = 1
    """The number the next new task gets (`task:N:...`)."""
    end: End[Any] | None = None
    """The run's end, if it ended."""
    graph: str | None = None
    """The name of the graph the run was created for, if recorded."""
    fingerprint: str | None = None
    """The fingerprint of the graph the run was created for, if recorded (dialect 2 on)."""
    cancelled: str | None = None
    """Why the run was cancelled, if it was (it is never resumed)."""
    answers: dict[str, tuple[str, Any]] = field(default_factory=dict[str, tuple[str, Any]])
    """Signals delivered to steps that waited and have not finished since: `{key: (step id, payload)}`."""
    started_at: float | None = None
    """When the run's first record was written (a POSIX timestamp)."""
    attempts: dict[str, tuple[int, float]] = field(default_factory=dict[str, tuple[int, float]])
    """Pending tasks whose last attempt failed and is retried: the next attempt's number and when it is due."""


@dataclass
class _Scratch:
    """What a reducer sees while its value is reduced again: a copy of the state, and the deps."""

    state: Any
    deps: Any
    run_id: str | None


class _ScratchRun:
    """A stand-in for the loop, for `Program.reduce` (which reads only `ctx`)."""

    def __init__(self, ctx: _Scratch) -> None:
        self.ctx = ctx


def replay(
    records: Sequence[RunRecord], program: Program | None = None, deps: Any = None, run_id: str | None = None
) -> Position:
    """The position of the run whose records these are (see the module's description).

    `program` is the run's compiled graph; `None` for a graph without joins or maps
    (the node API). `deps` and `run_id` are what reducers replayed see in their context.
    """
    tasks: dict[str, Task] = {}
    finished: list[str] = []
    done: set[str] = set()
    position = Position()
    waits: dict[str, str] = {}  # key -> the step waiting for it
    for record in records:
        if position.started_at is None:
            position.started_at = record.ts
        if type(record) is StepFinished:
            if position.answers:
                position.answers = {k: v for k, v in position.answers.items() if v[0] != record.task_id}
            position.state = record.state if record.state is not None else position.state
            if record.end is not None:
                position.end = record.end
            if record.task_id:
                finished.append(record.task_id)
                done.add(record.task_id)
            for task in record.next_tasks:
                tasks.setdefault(task.task_id, task)
        elif type(record) is TasksScheduled:
            position.state = record.state
            done.update(record.replaces)  # never to run: a caller scheduled others in their place
            position.end = None  # scheduled from outside after an end: the log goes on (a new run in a file)
            for task in record.tasks:
                tasks.setdefault(task.task_id, task)
        elif type(record) is JoinClosed:
            position.state = record.state
            position.closed.add(record.close_id)
            for task in record.next_tasks:
                tasks.setdefault(task.task_id, task)
        elif type(record) is RunEndRecorded:
            position.state, position.end = record.state, record.end
        elif type(record) is RunCreated:
            position.graph, position.fingerprint = record.graph, record.fingerprint
        elif type(record) is RunCancelledRecorded:
            position.cancelled = record.reason
        elif type(record) is StepSuspended:
            waits[record.key] = record.task_id
            if record.wake_at is not None and not record.key.startswith(TIMER_PREFIX):
                # a wait with a timeout: the step, run again, keeps the deadline it had
                position.answers[DEADLINE_PREFIX + record.key] = (record.task_id, record.wake_at)
        elif type(record) is SignalReceived:
            if record.key in waits:
                position.answers[record.key] = (waits.pop(record.key), record.payload)
        elif type(record) is StepFailed:
            if record.retry_at is None:  # a final failure: a resume starts the step's attempts afresh
                position.attempts.pop(record.task_id, None)
            else:
                position.attempts[record.task_id] = (record.attempt + 1, record.retry_at)
    cut_short: set[str] = set()
    if program is not None:
        cut_short = _replay_joins(position, program, tasks, finished, _Scratch(deep_copy(position.state), deps, run_id))
        _replay_maps(position, program, tasks, finished, cut_short)
    for task_id, task in tasks.items():
        if task_id not in done and not any(item.node_run_id in cut_short for item in task.fork_stack):
            position.pending.append(task)
    pending_ids = {task.task_id for task in position.pending}
    position.attempts = {key: value for key, value in position.attempts.items() if key in pending_ids}
    position.next_task_number = max((_number(task_id) for task_id in tasks), default=0) + 1
    return position


def _replay_joins(
    position: Position, program: Program, tasks: dict[str, Task], finished: list[str], ctx: _Scratch
) -> set[str]:
    """Reduce again every value that reached a join still open; return the forks a reducer cut short."""
    kinds = program.kinds
    scratch = _ScratchRun(ctx)
    for task_id in finished:  # in the order the values arrived
        task = tasks.get(task_id)
        if task is None or kinds.get(task.node_id) is not NodeKind.JOIN:
            continue
        key, downstream = program.join_key(task.node_id, task.fork_stack)
        if closing_id(*key) in position.closed:
            continue
        join_state = position.joins.get(key)
        if join_state is None:
            join_state = position.joins[key] = JoinState(program.join_initial(task.node_id), downstream)
        join_state.current = program.reduce(task, join_state, scratch, _no_cancel)
    return {key[1] for key, join_state in position.joins.items() if join_state.cancelled_sibling_tasks}


def _replay_maps(
    position: Position, program: Program, tasks: dict[str, Task], finished: list[str], cut_short: set[str]
) -> None:
    """Maps part-way through go on from their first item not handed out."""
    for task_id in finished:
        task = tasks.get(task_id)
        if task is None or task_id in cut_short or any(item.node_run_id in cut_short for item in task.fork_stack):
            continue
        spec = program.map_spec(task)
        if spec is None:
            continue
        items = list(spec.items) if isinstance(spec.items, Iterable) else []  # read from the log: a list
        handed_out = [
            t.fork_stack[-1].thread_index
            for t in tasks.values()
            if t.fork_stack and t.fork_stack[-1].node_run_id == task_id
        ]
        start = max(handed_out) + 1 if handed_out else 0
        if start < len(items) or (not items and spec.downstream_join_id is not None):
            remaining = MapItems(spec.fork_id, items[start:], spec.max_concurrency, spec.downstream_join_id)
            position.maps.append((remaining, task.fork_stack, task_id, start))


def _number(task_id: str) -> int:
    """The number in a task id `task:N:<hex>` (0 for ids of other shapes: node snapshots, older runs)."""
    kind, _, rest = task_id.partition(":")
    number = rest.partition(":")[0]
    return int(number) if kind == "task" and number.isdigit() else 0


def _no_cancel() -> None:
    """Cancelling siblings while replaying: they are dropped from the pending tasks instead."""
