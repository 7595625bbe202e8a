"""Telling runs apart: run summaries, stalled runs, listing with filters and pages, deleting, pruning, cancelling."""

from __future__ import annotations

import json
import os
import signal as signals
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import time

import anyio
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, RunCancelled, run_worker
from railyard.exceptions import RunLocked, RunNotFound
from railyard.store import RunStatus, RunStore
from railyard.store.file import FileStore
from railyard.store.sqlite import SqliteStore
from railyard.suspension import RunSuspended, cancel, signal
from tests.support.stores import open_test_store
from tests.support.triage_subjects import Stick, Tick, sticky, ticks
from tests.test_run_detail import Broken, broken
from tests.test_suspension import OrderState, Review, orders

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Done(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        return End("done")


done = Graph(nodes=[Done], name="done")


@pytest.fixture(params=["memory", "sqlite", "file", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    made = open_test_store(request.param, tmp_path, request)
    yield made
    await made.aclose()  # type: ignore[attr-defined]


async def _five_runs(store: RunStore) -> None:
    """`d1`, `d2` ended (graph `done`), `b` failed (`broken`), `o` suspended (`orders`), `d3` ended."""
    await done.run(Done(), store=store, run_id="d1")
    await done.run(Done(), store=store, run_id="d2")
    with pytest.raises(ValueError):
        await broken.run(Broken(), store=store, run_id="b")
    with pytest.raises(RunSuspended):
        await orders.run(Review(), state=OrderState(), store=store, run_id="o")
    await done.run(Done(), store=store, run_id="d3")


# -- what a run's summary says ---------------------------------------------------------------


async def test_a_summary_says_why_a_run_stopped_and_when_it_last_changed(store: RunStore) -> None:
    await _five_runs(store)
    info = {i.run_id: i for i in await store.runs()}
    assert info["b"].error == "builtins.ValueError: bad input on attempt 3"
    assert (info["o"].status, info["o"].waiting_for, info["o"].error) == (RunStatus.SUSPENDED, ("approval",), None)
    assert (info["d1"].error, info["d1"].waiting_for, info["d1"].owner) == (None, (), None)
    for summary in info.values():
        assert summary.started_at is not None and summary.updated_at is not None
        assert summary.updated_at >= summary.started_at
    await signal(store, "o", "approval", {"approved": True})
    (answered,) = [i for i in await store.runs() if i.run_id == "o"]
    assert (answered.status, answered.waiting_for) == (RunStatus.WAITING, ())
    await cancel(store, "o", "not needed")
    (cancelled,) = [i for i in await store.runs() if i.run_id == "o"]
    assert (cancelled.status, cancelled.error, cancelled.waiting_for) == (RunStatus.CANCELLED, None, ())
    assert (await store.run("b")).info.error == info["b"].error


async def test_a_driven_run_lists_its_owner_and_lease(store: RunStore) -> None:
    seen = {}

    @dataclass
    class Look(BaseNode[None, RunStore, str]):
        async def run(self, ctx: GraphRunContext[None, RunStore]) -> End[str]:
            (seen["info"],) = await ctx.deps.runs()
            return End("looked")

    await Graph(nodes=[Look], name="look").run(Look(), deps=store, store=store, run_id="l")
    info = seen["info"]
    assert info.status is RunStatus.RUNNING and info.owner == f"{os.uname().nodename}:{os.getpid()}"
    assert info.lease_expires is not None and info.lease_expires > datetime.now(UTC)
    (after,) = await store.runs()
    assert (after.status, after.owner, after.lease_expires) == (RunStatus.ENDED, None, None)


# -- listing: filters and pages -------------------------------------------------------------------


async def test_runs_filter_by_status_graph_and_start_and_page_with_a_cursor(store: RunStore) -> None:
    await _five_runs(store)
    every = await store.runs()
    assert [i.run_id for i in every] == ["d1", "d2", "b", "o", "d3"]
    assert [i.run_id for i in await store.runs(status=RunStatus.ENDED)] == ["d1", "d2", "d3"]
    assert [i.run_id for i in await store.runs(status=[RunStatus.FAILED, RunStatus.SUSPENDED])] == ["b", "o"]
    assert [i.run_id for i in await store.runs(graph="done")] == ["d1", "d2", "d3"]
    assert [i.run_id for i in await store.runs(graph=["broken", "orders"])] == ["b", "o"]
    assert [i.run_id for i in await store.runs(status=RunStatus.ENDED, graph="orders")] == []
    started = {i.run_id: i.started_at for i in every}
    assert started["b"] is not None and started["d3"] is not None
    assert [i.run_id for i in await store.runs(since=started["b"])] == ["b", "o", "d3"]
    assert [i.run_id for i in await store.runs(until=started["b"])] == ["d1", "d2"]
    window = await store.runs(since=started["b"], until=started["d3"])
    assert [i.run_id for i in window] == ["b", "o"]
    assert len(await store.runs(since=0.0, until=time() + 60)) == 5  # POSIX timestamps do as well
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await store.runs(limit=2, cursor=cursor)
        if not page:
            break
        pages.append([i.run_id for i in page])
        cursor = page[-1].run_id
    assert pages == [["d1", "d2"], ["b", "o"], ["d3"]]
    ended_after_d1 = await store.runs(status=RunStatus.ENDED, cursor="d1", limit=1)
    assert [i.run_id for i in ended_after_d1] == ["d2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, r"runs\(limit=0\): the limit is a whole number of runs, 1 or more"),
        ({"status": "lost"}, r"runs\(status='lost'\): a status is one of created, running"),
        ({"since": datetime(2026, 1, 1)}, r"give an aware datetime"),
        ({"since": 10.0, "until": 5.0}, r"`since` is after `until`"),
        ({"cursor": "nope"}, r"runs\(cursor='nope'\): .* has no run 'nope'"),
    ],
)
async def test_runs_names_a_bad_argument(store: RunStore, kwargs: dict[str, object], message: str) -> None:
    await done.run(Done(), store=store, run_id="d1")
    with pytest.raises(ValueError, match=message):
        await store.runs(**kwargs)  # type: ignore[arg-type]


# -- deleting and pruning ------------------------------------------------------------------------


async def test_delete_removes_a_run_and_refuses_one_being_driven(store: RunStore) -> None:
    await _five_runs(store)
    await store.delete("d2")
    assert [i.run_id for i in await store.runs()] == ["d1", "b", "o", "d3"]
    with pytest.raises(RunNotFound, match="'d2'"):
        await store.read("d2")
    with pytest.raises(RunNotFound, match="'d2'"):
        await store.delete("d2")
    before = await store.read("d1")
    async with store.lock("d1"):
        with pytest.raises(RunLocked, match="'d1'"):
            await store.delete("d1")
    assert await store.read("d1") == before


async def test_prune_deletes_finished_runs_unchanged_for_long_enough(store: RunStore) -> None:
    await _five_runs(store)
    await cancel(store, "o", "stale")
    assert await store.prune(older_than=timedelta(hours=1)) == []  # all changed just now
    assert sorted(await store.prune(older_than=0)) == ["d1", "d2", "d3", "o"]
    assert [i.run_id for i in await store.runs()] == ["b"]  # a failed run is kept unless asked for
    assert await store.prune(older_than=0, status=RunStatus.FAILED) == ["b"]
    with pytest.raises(ValueError, match=r"prune\(older_than=-1\): give a timedelta"):
        await store.prune(older_than=-1)


async def test_deleting_a_file_run_leaves_no_file_behind(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "runs")
    await done.run(Done(), store=store, run_id="r")
    await store.delete("r")
    assert list((tmp_path / "runs").iterdir()) == []


# -- stalled runs ------------------------------------------------------------------------------


_children: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap_children() -> object:
    """A test that fails midway leaves no child process or pipe behind."""
    yield
    while _children:
        child = _children.pop()
        if child.poll() is None:
            child.kill()
        if child.stdout is not None and not child.stdout.closed:
            child.communicate()


def _child(*args: str) -> subprocess.Popen[str]:
    child = _spawn(*args)
    _children.append(child)
    return child


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.triage_subjects", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])},
    )


async def _line(child: subprocess.Popen[str]) -> str:
    """The next line the child prints (it says where it is)."""
    assert child.stdout is not None
    return (await anyio.to_thread.run_sync(child.stdout.readline)).strip()


async def test_a_killed_run_shows_stalled_once_its_lease_runs_out_and_a_worker_resumes_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    child = _child("stick", str(path), "stick")
    assert await _line(child) == "in the step"
    store = SqliteStore(path, lease=0.5)
    child.send_signal(signals.SIGKILL)
    child.communicate()  # reaped, its pipe closed
    (info,) = await store.runs()
    assert info.owner == f"{os.uname().nodename}:{child.pid}" and info.lease_expires is not None
    if info.status is not RunStatus.STALLED:  # its lease has not run out yet: a live driver's would be renewed
        assert info.status is RunStatus.RUNNING
        await anyio.sleep(info.lease_expires.timestamp() - time() + 0.05)
    assert [i.run_id for i in await store.runs(status=RunStatus.STALLED)] == ["stuck"]
    assert await run_worker([sticky], store) == ["stuck"]
    (finished,) = await store.runs()
    assert (finished.status, finished.owner) == (RunStatus.ENDED, None)
    await store.aclose()


# -- cancelling a run that is being driven ------------------------------------------------------


async def test_cancel_from_another_process_stops_a_thousand_step_run_within_one_step(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    child = _child("tick", str(path), "t")
    store = SqliteStore(path)
    assert await _line(child) == "under way"  # the child waits, in step 21, until told to go on
    await cancel(store, "t", "enough")
    asked = time()
    assert child.stdin is not None
    child.stdin.write("go on\n")
    child.stdin.flush()
    out, _ = await anyio.to_thread.run_sync(child.communicate)
    assert out.strip() == "cancelled: enough"
    (info,) = await store.runs()
    assert info.status is RunStatus.CANCELLED and info.steps < 1000
    records = await store.read("t")
    assert records[-1].kind == "run_cancelled"
    started_after = [r for r in records if r.kind == "step_started" and r.ts > asked]
    assert len(started_after) <= 1, "at most the step whose start saw the request begins after it"
    finished_ids = {json.loads(r.body)["task_id"] for r in records if r.kind == "step_finished"}
    assert not any(json.loads(r.body)["task_id"] in finished_ids for r in started_after), "and it never finishes"
    with pytest.raises(RunCancelled):
        await ticks.resume(store, "t")
    await store.aclose()


async def test_cancel_stops_a_long_step_with_an_anyio_cancellation(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    entered, left = anyio.Event(), anyio.Event()

    @dataclass
    class Long(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> End[str]:
            entered.set()
            try:
                await anyio.sleep_forever()
            finally:
                left.set()
            return End("never")  # pragma: no cover

    graph = Graph(nodes=[Long], name="long")
    driver = SqliteStore(path, lease=0.3)
    raised: list[BaseException] = []

    async def drive() -> None:
        try:
            await graph.run(Long(), store=driver, run_id="l")
        except RunCancelled as error:
            raised.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(drive)
        await entered.wait()
        other = SqliteStore(path)  # as another process would: the driver holds the run
        await cancel(other, "l", "taking too long")
        await left.wait()  # the running step was cancelled where it was
    assert [str(e) for e in raised] == [
        f"Run 'l' in {driver!r} was cancelled (taking too long) and cannot be resumed. Use `graph.fork(...)` to "
        f"start a new run from one of its steps."
    ]
    (info,) = await other.runs()
    assert (info.status, info.owner) == (RunStatus.CANCELLED, None)
    await other.aclose()
    await driver.aclose()


def test_the_subjects_are_importable() -> None:
    assert Tick().n == 0 and isinstance(Stick(), Stick)


async def test_cancel_stops_every_branch_of_a_builder_fan_out(tmp_path: Path) -> None:
    from railyard.builder import GraphBuilder, StepContext

    path = tmp_path / "runs.db"
    started: list[int] = []
    cancelled: list[int] = []
    all_in = anyio.Event()
    g = GraphBuilder(input_type=list[int], output_type=list[int], name="fan")

    @g.step
    async def wait(ctx: StepContext[None, None, int]) -> int:
        started.append(ctx.inputs)
        if len(started) == 3:
            all_in.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(ctx.inputs)
        return ctx.inputs  # pragma: no cover

    collect = g.join(reducer=lambda values, value: [*values, value], initial_factory=list, node_id="collect")
    g.add(
        g.edge_from(g.start_node).map().to(wait),
        g.edge_from(wait).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    graph = g.build()
    driver = SqliteStore(path, lease=0.3)
    raised: list[BaseException] = []

    async def drive() -> None:
        try:
            await graph.run(inputs=[1, 2, 3], store=driver, run_id="f")
        except RunCancelled as error:
            raised.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(drive)
        await all_in.wait()
        await cancel(SqliteStore(path), "f", "stop the batch")
    assert sorted(cancelled) == [1, 2, 3] and len(raised) == 1
    assert [i.status for i in await driver.runs()] == [RunStatus.CANCELLED]
    await driver.aclose()


async def test_a_cancel_asked_between_steps_is_recorded_when_the_driver_lets_go(store: RunStore) -> None:
    async with ticks.iter(Tick(), store=store, run_id="t") as run:
        await run.next()
        await cancel(store, "t", "stop it")  # held by this driver, between its steps
    (info,) = await store.runs()
    assert (info.status, info.cancel_requested) == (RunStatus.CANCELLED, None)
    assert [r.kind for r in await store.read("t")][-1] == "run_cancelled"
    assert await run_worker([ticks], store) == []
