"""Run-log records as JSON, through pydantic: what durable stores write and read back.

A record's JSON is an object tagged by `kind`; nodes are stored with their `node_id`
(readable in `psql` or a text editor, stable across releases), states and results through
the graph's own types. Never pickle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import pydantic
import pydantic_core

from railyard._node_schema import nodes_schema
from railyard.nodes import BaseNode, End
from railyard.runtime._tasks import ForkStackItem, Task
from railyard.store import StoredRecord
from railyard.store._deltas import PatchError, StateDeltas, StateRebuild
from railyard.store.records import (
    DIALECT,
    ErrorInfo,
    JoinClosed,
    RunCancelledRecorded,
    RunCreated,
    RunEndRecorded,
    RunRecord,
    RunStatus,
    RunSuspendedRecorded,
    SignalReceived,
    StepFailed,
    StepFinished,
    StepStarted,
    StepSuspended,
    TaskClaimed,
    TasksScheduled,
)

__all__ = ("RecordCodec", "RecordDecodeError")

_KINDS: dict[type, str] = {
    RunCreated: "run_created",
    JoinClosed: "join_closed",
    RunEndRecorded: "run_ended",
    TasksScheduled: "tasks_scheduled",
    TaskClaimed: "task_claimed",
    StepStarted: "step_started",
    StepFinished: "step_finished",
    StepFailed: "step_failed",
    StepSuspended: "step_suspended",
    RunSuspendedRecorded: "run_suspended",
    RunCancelledRecorded: "run_cancelled",
    SignalReceived: "signal_received",
}


class RecordDecodeError(ValueError):
    """A stored record is not valid JSON or does not match the graph's current types."""


class _AnyNodeSchema:
    def __init__(self, known: dict[str, type[BaseNode[Any, Any, Any]]]) -> None:
        self.known = known

    def __get_pydantic_core_schema__(self, source: Any, handler: pydantic.GetCoreSchemaHandler) -> Any:
        return nodes_schema(self.known)


class RecordCodec:
    """Turns records into JSON and back, for one graph's node, state and result types."""

    def __init__(
        self,
        nodes: Sequence[type[BaseNode[Any, Any, Any]]],
        state_type: Any,
        run_end_type: Any = Any,
        *,
        inputs: Callable[[str], pydantic.TypeAdapter[Any]] | None = None,
    ) -> None:
        known = {node.get_node_id(): node for node in nodes}
        node_adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Annotated[Any, _AnyNodeSchema(known)])
        self._inputs: Callable[[str], pydantic.TypeAdapter[Any]] = inputs or (lambda node_id: node_adapter)
        """The adapter of a task's inputs, by its node id (node-API graphs: the node itself)."""
        self._state: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(state_type)
        self._end: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(End[run_end_type])

    # -- encoding -------------------------------------------------------------------------

    def encode(self, record: RunRecord, deltas: StateDeltas | None = None) -> bytes:
        """One record as compact JSON (its state as a patch where `deltas` says so)."""
        return pydantic_core.to_json(self.dump(record, deltas))

    def dump(self, record: RunRecord, deltas: StateDeltas | None = None) -> dict[str, Any]:
        """One record as a JSON-compatible dict.

        With `deltas` (the run's writer), a record's state is stored as a patch against
        the run's previous state where that is smaller (see `railyard.store._deltas`).
        """
        match record:
            case StepStarted(task_id=task_id, ts=ts):
                return {"kind": "step_started", "task_id": task_id, "ts": ts}
            case RunCreated(graph=graph, fingerprint=fingerprint, railyard_version=version, dialect=dialect, ts=ts):
                created: dict[str, Any] = {
                    "kind": "run_created",
                    "graph": graph,
                    "fingerprint": fingerprint,
                    "railyard_version": version,
                    "dialect": dialect,
                    "ts": ts,
                }
                if record.shape is not None:  # absent, not null: unknown, as in runs recorded before it was
                    created["shape"] = record.shape
                if record.parent is not None:  # absent, not null: a run of its own
                    created["parent"] = record.parent
                return created
            case JoinClosed(join_id=join_id, close_id=close_id, state=state, next_tasks=next_tasks, ts=ts):
                body = {
                    "kind": "join_closed",
                    "join_id": join_id,
                    "close_id": close_id,
                    "next_tasks": self._tasks(next_tasks),
                    "ts": ts,
                }
                self._put_state(body, state, deltas)  # last: once the writer has it, nothing may fail
                return body
            case RunEndRecorded(state=state, end=end, ts=ts):
                body = {
                    "kind": "run_ended",
                    "end": self._end.dump_python(end, mode="json"),
                    "end_id": end.get_snapshot_id(),
                    "ts": ts,
                }
                self._put_state(body, state, deltas)  # last: once the writer has it, nothing may fail
                return body
            case TasksScheduled(tasks=tasks, state=state, ts=ts, replaces=replaces):
                tasks_json = self._tasks(tasks)
                body = {"kind": "tasks_scheduled", "tasks": tasks_json, "ts": ts}
                if replaces:
                    body["replaces"] = list(replaces)
                self._put_state(body, state, deltas)  # last: once the writer has it, nothing may fail
                return body
            case TaskClaimed(task_id=task_id, ts=ts):
                return {"kind": "task_claimed", "task_id": task_id, "ts": ts}
            case StepFinished(task_id=task_id, duration=duration, state=state, next_tasks=next_tasks, end=end, ts=ts):
                body = {
                    "kind": "step_finished",
                    "task_id": task_id,
                    "node_id": record.node_id,
                    "duration": duration,
                    "next_tasks": self._tasks(next_tasks),
                    "end": None if end is None else self._end.dump_python(end, mode="json"),
                    "end_id": None if end is None else end.get_snapshot_id(),
                    "ts": ts,
                }
                self._put_state(body, state, deltas)  # last: once the writer has it, nothing may fail
                return body
            case StepFailed(task_id=task_id, duration=duration, error=error, ts=ts):
                failed: dict[str, Any] = {
                    "kind": "step_failed",
                    "task_id": task_id,
                    "duration": duration,
                    "error": {"type": error.type, "message": error.message, "traceback": error.traceback},
                    "ts": ts,
                }
                if record.attempt != 1 or record.retry_at is not None:  # a first, final failure reads as before
                    failed["attempt"] = record.attempt
                    failed["retry_at"] = record.retry_at
                return failed
            case StepSuspended():
                return {
                    "kind": "step_suspended",
                    "task_id": record.task_id,
                    "key": record.key,
                    "payload_type": record.payload_type,
                    "payload_schema": record.payload_schema,
                    "prompt": record.prompt,
                    "ts": record.ts,
                } | ({"wake_at": record.wake_at} if record.wake_at is not None else {})
            case SignalReceived(key=key, payload=payload, ts=ts):
                return {"kind": "signal_received", "key": key, "payload": payload, "ts": ts}
            case RunSuspendedRecorded(keys=keys, ts=ts, wake_at=wake_at):
                suspended: dict[str, Any] = {"kind": "run_suspended", "keys": list(keys), "ts": ts}
                if wake_at is not None:
                    suspended["wake_at"] = wake_at
                return suspended
            case RunCancelledRecorded(reason=reason, ts=ts):
                return {"kind": "run_cancelled", "reason": reason, "ts": ts}

    def _dump_state(self, state: Any) -> Any:
        return self._state.dump_python(state, mode="json")

    def _put_state(self, body: dict[str, Any], state: Any, deltas: StateDeltas | None) -> None:
        dumped = self._dump_state(state)
        if deltas is None:
            body["state"] = dumped
        else:
            key, value = deltas.encode(dumped)
            body[key] = value

    def _tasks(self, tasks: Sequence[Task]) -> list[dict[str, Any]]:
        return [
            {
                "node_id": task.node_id,
                "task_id": task.task_id,
                "inputs": self._inputs(task.node_id).dump_python(task.inputs, mode="json"),
                "fork_stack": [[f.fork_id, f.node_run_id, f.thread_index] for f in task.fork_stack],
            }
            for task in tasks
        ]

    def stored(
        self,
        record: RunRecord,
        *,
        node_id: str | None,
        first: bool = False,
        graph: str | None = None,
        deltas: StateDeltas | None = None,
    ) -> StoredRecord:
        """`record` as a backend keeps it: its JSON and the run's status after it.

        `node_id` is the node the record is about; `first` marks the record that creates
        the run, which carries the name of its `graph`; `deltas` is the run's writer of
        states by change (`None`: the whole state).
        """
        match record:
            case RunCreated():
                status = RunStatus.CREATED
            case JoinClosed():
                status = RunStatus.WAITING
            case RunEndRecorded():
                status = RunStatus.ENDED
            case TasksScheduled():
                status = RunStatus.CREATED if first else RunStatus.WAITING
            case StepStarted():
                status = RunStatus.RUNNING
            case StepFinished(end=end):
                status = RunStatus.ENDED if end is not None else RunStatus.WAITING
            case StepSuspended():
                status = RunStatus.RUNNING  # its siblings may go on: the run is suspended once they cannot
            case RunSuspendedRecorded():
                status = RunStatus.SUSPENDED
            case RunCancelledRecorded():
                status = RunStatus.CANCELLED
            case SignalReceived():
                status = RunStatus.WAITING  # answered: ready for a driver or a worker
            case StepFailed(retry_at=None):
                status = RunStatus.FAILED
            case StepFailed():
                status = RunStatus.WAITING  # its next attempt is due: ready for a driver or a worker
            case TaskClaimed():
                status = RunStatus.WAITING
        return StoredRecord(
            kind=_KINDS[type(record)],
            body=self.encode(record, deltas).decode(),
            status=status,
            node_id=node_id,
            finishes_step=isinstance(record, StepFinished) and bool(record.task_id),
            ts=record.ts,
            graph=graph if first else None,
        )

    # -- decoding -------------------------------------------------------------------------

    def decode(self, data: bytes | str, states: StateRebuild | None = None) -> RunRecord:
        """One record from JSON; `states` rebuilds states stored by change (the run's records, in order).

        Raises:
            RecordDecodeError: the JSON is invalid, or does not fit the graph's types; the
                message names the field.
        """
        try:
            value = pydantic_core.from_json(data)
        except ValueError as err:
            raise RecordDecodeError(f"not valid JSON: {err}") from None
        return self.load(value, states)

    def load(self, data: Any, states: StateRebuild | None = None) -> RunRecord:
        """One record from a JSON-compatible dict (see `decode`)."""
        if not isinstance(data, dict) or "kind" not in data:
            raise RecordDecodeError("a record must be a JSON object with a `kind`")
        record: dict[str, Any] = data  # pyright: ignore[reportUnknownVariableType]
        try:
            return self._load(record, states if states is not None else StateRebuild())
        except PatchError as err:
            raise RecordDecodeError(f"field `state_patch`: {err}") from None
        except KeyError as err:
            raise RecordDecodeError(f"{record.get('kind')} record has no field {err}") from None
        except TypeError as err:
            raise RecordDecodeError(f"{record.get('kind')} record has a malformed field: {err}") from None

    def _load(self, data: dict[str, Any], states: StateRebuild) -> RunRecord:
        kind = data["kind"]
        for field in ("ts", "duration"):
            if field in data and (isinstance(data[field], bool) or not isinstance(data[field], int | float)):
                raise RecordDecodeError(f"field `{field}`: must be a number (stored value: {data[field]!r})")
        if kind == "run_created":
            dialect = data["dialect"]
            if not isinstance(dialect, int) or dialect > DIALECT:
                raise RecordDecodeError(
                    f"the run was written in record dialect {dialect!r}, newer than this railyard reads "
                    f"(up to {DIALECT}): upgrade railyard (it was made by railyard {data.get('railyard_version')})"
                )
            shape = data.get("shape")  # runs recorded before railyard recorded shapes have none
            if shape is not None and not isinstance(shape, dict):
                raise RecordDecodeError(f"field `shape`: must be an object (stored value: {shape!r})")
            parent = data.get("parent")  # a child run's parent (`ctx.run_child`); absent in runs of their own
            if parent is not None and not (
                isinstance(parent, dict) and all(isinstance(v, str) for v in parent.values())  # pyright: ignore[reportUnknownVariableType]
            ):
                raise RecordDecodeError(f"field `parent`: must be an object of strings (stored value: {parent!r})")
            return RunCreated(
                data["graph"],
                data["fingerprint"],
                data["railyard_version"],
                dialect,
                data["ts"],
                shape=shape,
                parent=parent,
            )
        if kind == "join_closed":
            state = self._load_state(states.decode(data))
            tasks = self._load_tasks(data["next_tasks"], "next_tasks")
            return JoinClosed(data["join_id"], data["close_id"], state, tasks, data["ts"])
        if kind == "step_finished" and str(data.get("task_id", "")).startswith("join:"):
            # dialect 1: a join's closing, recorded as a step finished under its closing id
            close_id = data["task_id"]
            state = self._load_state(states.decode(data))
            tasks = self._load_tasks(data["next_tasks"], "next_tasks")
            join_id = close_id[len("join:") :].partition(":")[0]  # join:<join id>:<fork run's task id>
            return JoinClosed(join_id, close_id, state, tasks, data["ts"])
        if kind == "run_ended" or (kind == "step_finished" and data.get("task_id") == "" and data.get("end")):
            # dialect 1 recorded a persistence's `snapshot_end` as a step finished with no task
            return RunEndRecorded(self._load_state(states.decode(data)), self._load_end(data), data["ts"])
        if kind == "tasks_scheduled":
            state = self._load_state(states.decode(data))
            replaces = data.get("replaces", [])
            if not isinstance(replaces, list) or not all(isinstance(r, str) for r in replaces):  # pyright: ignore[reportUnknownVariableType]
                raise RecordDecodeError(f"field `replaces`: must be a list of task ids (stored value: {replaces!r})")
            return TasksScheduled(self._load_tasks(data["tasks"], "tasks"), state, data["ts"], tuple(replaces))
        if kind == "task_claimed":
            return TaskClaimed(data["task_id"], data["ts"])
        if kind == "step_started":
            return StepStarted(data["task_id"], data["ts"])
        if kind == "step_finished":
            end = None if data["end"] is None else self._load_end(data)
            return StepFinished(
                data["task_id"],
                data["duration"],
                self._load_state(states.decode(data)),
                self._load_tasks(data["next_tasks"], "next_tasks"),
                end,
                data["ts"],
                data.get("node_id"),  # dialect 1 named no node
            )
        if kind == "step_failed":
            error = data["error"]
            return StepFailed(
                data["task_id"],
                data["duration"],
                ErrorInfo(type=error["type"], message=error["message"], traceback=error["traceback"]),
                data["ts"],
                data.get("attempt", 1),
                data.get("retry_at"),
            )
        if kind == "step_suspended":
            return StepSuspended(
                data["task_id"],
                data["key"],
                data["payload_type"],
                data["payload_schema"],
                data["prompt"],
                data["ts"],
                data.get("wake_at"),
            )
        if kind == "run_cancelled":
            return RunCancelledRecorded(data["reason"], data["ts"])
        if kind == "run_suspended":
            return RunSuspendedRecorded(tuple(data["keys"]), data["ts"], data.get("wake_at"))
        if kind == "signal_received":
            return SignalReceived(data["key"], data["payload"], data["ts"])
        raise RecordDecodeError(f"unknown record kind {kind!r}")

    def _load_end(self, data: dict[str, Any]) -> End[Any]:
        """A record's `end`, with the snapshot id it was stored with."""
        end: End[Any] = _validate(self._end, data["end"], "end")
        if data.get("end_id"):
            end.set_snapshot_id(data["end_id"])
        return end

    def _load_state(self, state: Any) -> Any:
        return _validate(self._state, state, "state")

    def _load_tasks(self, items: list[dict[str, Any]], field: str) -> tuple[Task, ...]:
        tasks: list[Task] = []
        for index, item in enumerate(items):
            node = _validate(self._inputs(item["node_id"]), item["inputs"], f"{field}.{index}.inputs")
            if isinstance(node, BaseNode):
                node.set_snapshot_id(item["task_id"])
            try:
                stack = tuple(ForkStackItem(fork_id, run_id, index) for fork_id, run_id, index in item["fork_stack"])
            except (TypeError, ValueError):
                raise RecordDecodeError(
                    f"field `{field}.{index}.fork_stack`: must be a list of [fork id, run id, index] "
                    f"(stored value: {item['fork_stack']!r})"
                ) from None
            tasks.append(Task(item["node_id"], node, stack, item["task_id"]))
        return tuple(tasks)


def _validate(adapter: pydantic.TypeAdapter[Any], value: Any, field: str) -> Any:
    """Validate one field of a record; a failure names the field and what was wrong."""
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join([field, *(str(part) for part in first["loc"])])
        raise RecordDecodeError(f"field `{where}`: {first['msg']} (stored value: {first.get('input')!r})") from None
