"""The run log: the memory store, run summaries, and records as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import pytest

from railyard import End, FullStatePersistence
from railyard.runtime._tasks import ForkStackItem, Task
from railyard.store import RunStatus, summarize
from railyard.store.codec import RecordCodec, RecordDecodeError
from railyard.store.records import ErrorInfo, StepFailed, StepFinished, StepStarted, TaskClaimed, TasksScheduled
from tests.graphs import Check42, Greet, Increment, MyState, never_42_graph

pytestmark = pytest.mark.anyio


def _task(node: Increment | Check42) -> Task:
    return Task(node.get_node_id(), node, (), node.get_snapshot_id())


def test_failed_run_summary() -> None:
    task = _task(Increment())
    records = [
        TasksScheduled((task,), MyState(1), 1.0),
        StepStarted(task.task_id, 2.0),
        StepFailed(task.task_id, 0.1, ErrorInfo("builtins.ValueError", "boom", "Traceback..."), 3.0),
    ]
    info = summarize("r", records)
    assert (info.status, info.steps, info.last_node) == (RunStatus.FAILED, 0, "Increment")


def test_error_info_from_an_exception() -> None:
    try:
        raise ValueError("bad value")
    except ValueError as err:
        info = ErrorInfo.from_exception(err)
    assert (info.type, info.message) == ("builtins.ValueError", "bad value")
    assert "Traceback" in info.traceback and 'raise ValueError("bad value")' in info.traceback


class Color(Enum):
    RED = "red"


@dataclass
class Rich:
    when: datetime
    color: Color
    tags: list[str]
    nested: MyState | None = None


async def test_records_round_trip_through_json() -> None:
    codec = RecordCodec([Increment, Check42], MyState, int)
    first = _task(Increment())
    second = Task("Check42", Check42(), (ForkStackItem("fork", "f1", 2),), "Check42:abc")
    end = End(43)
    end.set_snapshot_id("end:xyz")
    records = [
        TasksScheduled((first,), MyState(41, ["a"]), 1.5),
        TaskClaimed(first.task_id, 1.6),
        StepStarted(first.task_id, 1.7),
        StepFinished(first.task_id, 0.25, MyState(42, ["a", "b"]), (second,), None, 2.0),
        StepFinished(second.task_id, 0.5, MyState(43), (), end, 3.0),
        StepFailed(second.task_id, 0.1, ErrorInfo("x.Y", "msg", "tb"), 4.0),
    ]
    for record in records:
        encoded = codec.encode(record)
        json.loads(encoded)  # plain JSON, readable anywhere
        decoded = codec.decode(encoded)
        assert type(decoded) is type(record)
        assert decoded == record
    decoded_end = codec.decode(codec.encode(records[4]))
    assert isinstance(decoded_end, StepFinished) and decoded_end.end is not None
    assert decoded_end.end.get_snapshot_id() == "end:xyz"
    decoded_tasks = codec.decode(codec.encode(records[0]))
    assert isinstance(decoded_tasks, TasksScheduled)
    assert decoded_tasks.tasks[0].inputs.get_snapshot_id() == first.task_id


async def test_rich_states_round_trip() -> None:
    codec = RecordCodec([Greet], Rich, str)
    state = Rich(datetime(2026, 1, 2, 3, 4, 5), Color.RED, ["x"], MyState(1))
    record = TasksScheduled((Task("Greet", Greet("Ada"), (), "Greet:1"),), state, 1.0)
    data = json.loads(codec.encode(record))
    assert data["tasks"][0]["inputs"] == {"name": "Ada", "node_id": "Greet"}
    assert data["state"]["color"] == "red"
    assert codec.decode(codec.encode(record)) == record


def test_a_state_that_no_longer_validates_names_the_field() -> None:
    codec = RecordCodec([Increment, Check42], MyState, int)
    bad = b'{"kind":"tasks_scheduled","tasks":[],"state":{"number":"many","log":[]},"ts":1.0}'
    with pytest.raises(RecordDecodeError, match=r"field `state\.number`: Input should be a valid integer.*'many'"):
        codec.decode(bad)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object with a `kind`"),
        (b'{"kind": "mystery"}', "unknown record kind 'mystery'"),
        (b'{"kind": "step_started"}', "step_started record has no field 'task_id'"),
        (
            b'{"kind":"tasks_scheduled","tasks":[{"node_id":"Nope","task_id":"t","inputs":{"node_id":"Nope"},"fork_stack":[]}],"state":{"number":1},"ts":1}',
            r"field `tasks\.0\.inputs`: .*node id 'Nope' is not a node of this graph",
        ),
    ],
    ids=["invalid-json", "not-an-object", "unknown-kind", "missing-field", "unknown-node"],
)
def test_bad_records_are_clear_errors(data: bytes, message: str) -> None:
    codec = RecordCodec([Increment, Check42], MyState, int)
    with pytest.raises(RecordDecodeError, match=message):
        codec.decode(data)


async def test_a_real_run_log_round_trips() -> None:
    persistence = FullStatePersistence()
    await never_42_graph.run(Increment(), state=MyState(41), persistence=persistence)
    codec = RecordCodec(never_42_graph.get_nodes(), MyState, int)
    records = persistence._log.records  # the run log behind the view
    assert [codec.decode(codec.encode(r)) for r in records] == records
