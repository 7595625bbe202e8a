"""Run logs written by earlier railyard releases read and resume on this one.

`tests/fixtures/logs_v1/` was written by railyard before states were stored by change
(every record carries its whole state): a node run stopped halfway, a node run that
ended, and a builder map that failed at one item; in a SQLite database and in a
directory of JSON Lines files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from railyard import FileStore, RunEnded, SqliteStore
from railyard.durable import DurablePersistence, read_run
from railyard.store import RunStore
from railyard.store.codec import RecordCodec
from railyard.testing._sample import CrashState, FailPlan, count_graph, map_graph

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "logs_v1"


@pytest.fixture(params=["sqlite", "file"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> RunStore:
    copy = tmp_path / "logs"
    shutil.copytree(FIXTURES, copy)
    return SqliteStore(copy / "runs.db") if request.param == "sqlite" else FileStore(copy / "files")


async def test_old_runs_are_listed_as_they_were(old_store: RunStore) -> None:
    infos = {info.run_id: info for info in await old_store.runs()}
    assert {run_id: (info.status.value, info.graph) for run_id, info in infos.items()} == {
        "count-halfway": ("waiting", "count_graph"),
        "count-ended": ("ended", "count_graph"),
        "map-failed": ("failed", "map_graph"),
    }
    await old_store.aclose()


async def test_an_old_node_run_resumes_where_it_stopped(old_store: RunStore) -> None:
    result = await count_graph.resume(old_store, "count-halfway")
    assert result.output == 6
    assert result.state == CrashState(count=6)
    with pytest.raises(RunEnded):
        await count_graph.resume(old_store, "count-ended")
    # the resumed run's history reads back whole: old records and new ones, states rebuilt
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(old_store, "count-halfway")
    persistence.set_graph_types(count_graph)
    counts = [snapshot.state.count for snapshot in await persistence.load_all()]
    assert counts == [0, 1, 2, 3, 4, 5, 6, 6]  # each node's snapshot, then the end's
    await old_store.aclose()


async def test_an_old_builder_run_resumes_only_its_unfinished_items(old_store: RunStore) -> None:
    plan = FailPlan()
    assert await map_graph.resume(old_store, "map-failed", deps=plan) == sum(n**3 for n in range(12))
    assert 5 in plan.calls
    assert len(plan.calls) < 12  # items that finished before the failure did not run again
    await old_store.aclose()


async def test_a_fork_of_an_old_run_goes_on_in_the_new_format(old_store: RunStore) -> None:
    new_id = await count_graph.fork(old_store, "count-ended", at_step=2)
    result = await count_graph.resume(old_store, new_id)
    assert result.output == 4
    await old_store.aclose()


def test_dialect_1_records_are_read_in_dialect_2s_kinds() -> None:
    from railyard.store.records import JoinClosed, RunEndRecorded

    codec = RecordCodec(count_graph.get_nodes(), CrashState, int)
    end = codec.decode(
        b'{"kind":"step_finished","task_id":"","duration":0.0,"state":{"count":3,"checksum":0},'
        b'"next_tasks":[],"end":{"data":3},"end_id":"end:1","ts":1.0}'
    )
    assert isinstance(end, RunEndRecorded) and end.end.data == 3 and end.state == CrashState(count=3)
    closed = codec.decode(
        b'{"kind":"step_finished","task_id":"join:total:task:3:ab","duration":0.0,"state":{"count":0,"checksum":0},'
        b'"next_tasks":[],"end":null,"end_id":null,"ts":1.0}'
    )
    assert isinstance(closed, JoinClosed) and (closed.join_id, closed.close_id) == ("total", "join:total:task:3:ab")


async def test_an_end_given_to_a_persistence_is_a_run_ended_record(tmp_path: Path) -> None:
    from railyard import End
    from railyard.store.records import RunEndRecorded

    store = SqliteStore(tmp_path / "runs.db")
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, "r")
    persistence.set_graph_types(count_graph)
    await persistence.snapshot_end(CrashState(count=7), End(7))
    assert [record.kind for record in await store.read("r")] == ["run_created", "run_ended"]
    (info,) = await store.runs()
    assert info.status.value == "ended"
    records = await read_run(store, "r", RecordCodec(count_graph.get_nodes(), CrashState, int))
    assert isinstance(records[-1], RunEndRecorded) and records[-1].end.data == 7
    snapshots = await persistence.load_all()
    assert [type(snapshot).__name__ for snapshot in snapshots] == ["EndSnapshot"]
    await store.aclose()
