"""One worker drives several runs at once, stops gracefully, and lets go of a run taken over from it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.store import RunStatus
from railyard.store.memory import MemoryStore
from railyard.store.sqlite import SqliteStore
from railyard.worker import Worker, run_worker

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


class Gate:
    """Where the steps of `held_graph` meet: each waits until `open` is set, after saying it arrived."""

    def __init__(self) -> None:
        self.inside = 0
        self.arrived = anyio.Event()
        self.wanted = 0
        self.open = anyio.Event()

    def reset(self, wanted: int) -> None:
        self.inside, self.wanted = 0, wanted
        self.arrived, self.open = anyio.Event(), anyio.Event()


GATE = Gate()


@dataclass
class Hold(BaseNode[None, None, str]):
    """Arrives at the gate, waits for it to open, ends."""

    async def run(self, ctx: GraphRunContext) -> End[str]:
        GATE.inside += 1
        if GATE.inside >= GATE.wanted:
            GATE.arrived.set()
        await GATE.open.wait()
        return End("through")


held_graph = Graph(nodes=[Hold], name="held")


async def _make_runs(store: MemoryStore | SqliteStore, count: int) -> list[str]:
    made = [f"held-{index}" for index in range(count)]
    for run_id in made:
        await held_graph.initialize(Hold(), store=store, run_id=run_id)
    return made


async def test_a_worker_drives_up_to_its_concurrency_at_once() -> None:
    store = MemoryStore()
    made = await _make_runs(store, 6)
    GATE.reset(wanted=4)
    worker = Worker(held_graph, store, concurrency=4)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await GATE.arrived.wait()  # four runs are inside their step at once
            assert len(worker.driving) == 4 and GATE.inside == 4
            GATE.open.set()
    assert sorted(worker.driven) == made
    assert {info.status for info in await store.runs()} == {RunStatus.ENDED}


async def test_stop_claims_no_more_and_lets_the_runs_in_hand_finish() -> None:
    store = MemoryStore()
    made = await _make_runs(store, 5)
    GATE.reset(wanted=2)
    worker = Worker(held_graph, store, concurrency=2, idle_timeout=None)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await GATE.arrived.wait()
            worker.stop()
            GATE.open.set()
    assert len(worker.driven) == 2, "the two runs in hand finished; no other was claimed"
    ended = [info.run_id for info in await store.runs(status=RunStatus.ENDED)]
    assert sorted(ended) == sorted(worker.driven)
    assert sorted(await run_worker(held_graph, store)) == sorted(set(made) - set(ended))


async def test_stop_without_grace_releases_the_runs_where_they_stand() -> None:
    store = MemoryStore()
    made = await _make_runs(store, 3)
    GATE.reset(wanted=3)
    worker = Worker(held_graph, store, concurrency=3, idle_timeout=None)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await GATE.arrived.wait()
            worker.stop(grace=0)
    assert worker.driven == []
    infos = await store.runs()
    assert {info.status for info in infos} == {RunStatus.STALLED} and {info.owner for info in infos} == {None}
    GATE.reset(wanted=3)
    GATE.open.set()
    assert sorted(await run_worker(held_graph, store, concurrency=3)) == made, "cut off mid-step: resumable"


@pytest.mark.parametrize(
    ("concurrency", "grace", "message"),
    [
        pytest.param(0, 1.0, "concurrency=0", id="no-concurrency"),
        pytest.param(True, 1.0, "concurrency=True", id="bool"),
        pytest.param(2, -1.0, "grace=-1.0", id="negative-grace"),
    ],
)
def test_bad_worker_settings_are_refused(concurrency: int, grace: float, message: str) -> None:
    with pytest.raises(ValueError, match=rf"Worker\({message}\)"):
        Worker(held_graph, MemoryStore(), concurrency=concurrency, grace=grace)


# -- a run taken over from its worker ----------------------------------------------------------


async def test_a_worker_whose_run_is_taken_over_stops_driving_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SqliteStore(path, lease=0.3)  # renewed every 0.1 s
    await _make_runs(store, 1)
    GATE.reset(wanted=1)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            worker = Worker(held_graph, store)
            group.start_soon(worker.run)
            await GATE.arrived.wait()
            with sqlite3.connect(path) as connection:  # another driver took it over (as a lease running out lets)
                connection.execute("UPDATE railyard_runs SET owner = 'elsewhere:1#other', lease_expires = 9e9")
                before = connection.execute("SELECT * FROM railyard_records ORDER BY seq").fetchall()
            lost = store.lease_lost("held-0")
            assert lost is not None
            await lost.wait()  # the lease's renewal found it: the drive is cancelled
            worker.stop()  # (else, on SQLite, whose lock is free now, the worker would take the run back)
    assert worker.driven == [], "the drive was stopped: its run is another's"
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT * FROM railyard_records ORDER BY seq").fetchall() == before
        assert connection.execute("SELECT owner FROM railyard_runs").fetchall() == [("elsewhere:1#other",)]
    await store.aclose()


# -- SIGTERM --------------------------------------------------------------------------------

SIGNALLED_WORKER = """
import asyncio, logging, sys
from railyard.store.sqlite import SqliteStore
from railyard.worker import run_worker
from tests.test_workers_concurrency import held_graph

logging.basicConfig()
logging.getLogger("railyard.worker").setLevel(logging.INFO)

async def main(path):
    store = SqliteStore(path)
    print(await run_worker(held_graph, store, idle_timeout=None, handle_signals=True), flush=True)
    await store.aclose()

asyncio.run(main(sys.argv[1]))
"""


def test_sigterm_stops_a_worker_gracefully(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED_WORKER, str(tmp_path / "runs.db")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    for line in worker.stderr:  # once it says so, it handles SIGTERM
        if "worker started" in line:
            break
    worker.terminate()
    out, err = worker.communicate(timeout=30)
    assert (worker.returncode, out) == (0, "[]\n"), err
    assert "claiming no more runs" in err
