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
from railyard.durable import DurablePersistence
from railyard.store import RunStore
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
