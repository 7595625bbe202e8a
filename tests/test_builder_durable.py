"""Durable builder runs: killed mid-fan-out and resumed, only unfinished branches run again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from railyard.builder import GraphBuilder, StepContext, reduce_list_append, reduce_sum
from railyard.exceptions import RunEnded, RunExists
from railyard.store import RunStatus
from railyard.store.file import FileStore
from railyard.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


class Crash(BaseException):
    """The process dies here (like SIGKILL: nothing after it runs)."""


@dataclass
class Effects:
    crash_on: int | None = None
    done: list[int] = field(default_factory=list[int])


def fan_out_graph():  # type: ignore[no-untyped-def]
    g = GraphBuilder(deps_type=Effects, input_type=list[int], output_type=int)

    @g.step
    async def square(ctx: StepContext[None, Effects, int]) -> int:
        await anyio.lowlevel.checkpoint()
        if ctx.inputs == ctx.deps.crash_on:
            raise Crash  # the process dies in this branch
        ctx.deps.done.append(ctx.inputs)
        return ctx.inputs * ctx.inputs

    @g.step
    async def plus_one(ctx: StepContext[None, Effects, int]) -> int:
        return ctx.inputs + 1

    total = g.join(reduce_sum, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).map(max_concurrency=3).to(square),
        g.edge_from(square).to(plus_one),
        g.edge_from(plus_one).to(total),
        g.edge_from(total).to(g.end_node),
    )
    return g.build()


ITEMS = list(range(20))
EXPECTED = sum(i * i + 1 for i in ITEMS)


@pytest.mark.parametrize("kind", ["sqlite", "file"])
async def test_a_run_cut_off_mid_fan_out_resumes_with_only_unfinished_branches(kind: str, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db") if kind == "sqlite" else FileStore(tmp_path / "runs")
    graph = fan_out_graph()
    first = Effects(crash_on=9)
    with pytest.raises(Crash):
        await graph.run(inputs=ITEMS, deps=first, store=store, run_id="fan")
    (info,) = await store.runs()
    assert info.status in (RunStatus.RUNNING, RunStatus.WAITING)
    assert 9 not in first.done and 0 < len(first.done) < len(ITEMS)

    finished_before = await finished_inputs(graph, store, "fan", "square")
    assert finished_before and finished_before <= set(first.done)

    second = Effects()
    assert await graph.resume(store, "fan", deps=second) == EXPECTED
    assert set(first.done) | set(second.done) == set(ITEMS)  # every branch ran
    assert not finished_before & set(second.done)  # a finished step never ran again
    assert len(first.done) + len(second.done) - len(ITEMS) <= 2  # only steps in flight (3 at a time) did
    with pytest.raises(RunEnded):
        await graph.resume(store, "fan", deps=Effects())
    with pytest.raises(RunExists):
        await graph.run(inputs=ITEMS, deps=Effects(), store=store, run_id="fan")


async def finished_inputs(graph, store, run_id: str, node_id: str) -> set[int]:  # type: ignore[no-untyped-def]
    """The inputs of the `node_id` steps the store records as finished."""
    from railyard.builder._durable import builder_codec
    from railyard.durable import read_run
    from railyard.store.records import StepFinished, TasksScheduled

    records = await read_run(store, run_id, builder_codec(graph))
    inputs = {}
    for record in records:
        for task in getattr(record, "tasks", ()) + getattr(record, "next_tasks", ()):
            inputs[task.task_id] = (task.node_id, task.inputs)
    done = {r.task_id for r in records if isinstance(r, StepFinished)}
    _ = TasksScheduled
    return {value for task_id, (node, value) in inputs.items() if node == node_id and task_id in done}


async def test_a_durable_run_gives_the_same_result_as_a_plain_one(tmp_path: Path) -> None:
    graph = fan_out_graph()
    store = SqliteStore(tmp_path / "runs.db")
    assert await graph.run(inputs=ITEMS, deps=Effects(), store=store) == await graph.run(inputs=ITEMS, deps=Effects())
    (info,) = await store.runs()
    assert info.status is RunStatus.ENDED


async def test_joins_that_closed_before_the_crash_are_not_replayed(tmp_path: Path) -> None:
    g = GraphBuilder(deps_type=Effects, input_type=list[list[int]], output_type=list[int])

    @g.step
    async def tenx(ctx: StepContext[None, Effects, int]) -> int:
        if ctx.inputs == ctx.deps.crash_on:
            raise Crash
        ctx.deps.done.append(ctx.inputs)
        return ctx.inputs * 10

    inner = g.join(reduce_sum, initial=0, node_id="inner", preferred_parent_fork="closest")
    outer = g.join(reduce_list_append, initial_factory=list[int], node_id="outer")
    g.add(
        g.edge_from(g.start_node).map(max_concurrency=1).map().to(tenx),
        g.edge_from(tenx).to(inner),
        g.edge_from(inner).to(outer),
        g.edge_from(outer).to(g.end_node),
    )
    graph = g.build()
    store = SqliteStore(tmp_path / "runs.db")
    first = Effects(crash_on=5)
    with pytest.raises(Crash):
        await graph.run(inputs=[[1, 2], [3, 4], [5, 6]], deps=first, store=store, run_id="nested")
    finished_before = await finished_inputs(graph, store, "nested", "tenx")
    second = Effects()
    result = await graph.resume(store, "nested", deps=second)
    assert sorted(result) == [30, 70, 110]
    assert set(first.done) | set(second.done) == {1, 2, 3, 4, 5, 6}
    assert not finished_before & set(second.done)


WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    import anyio
    from railyard.builder import GraphBuilder, StepContext, reduce_list_append
    from railyard.store.sqlite import SqliteStore

    g = GraphBuilder(input_type=list[int], output_type=list[int])

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        await anyio.sleep(0.004)
        fd = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{ctx.inputs}\\n".encode())
        os.close(fd)
        return ctx.inputs * 3

    collect = g.join(reduce_list_append, initial_factory=list[int], node_id="collect")
    g.add(g.edge_from(g.start_node).map(max_concurrency=4).to(work), g.edge_from(work).to(collect), g.edge_from(collect).to(g.end_node))
    graph = g.build()

    async def main():
        store = SqliteStore(sys.argv[1])
        if sys.argv[3] == "start":
            print("started", flush=True)
            result = await graph.run(inputs=list(range(60)), store=store, run_id="killed")
        else:
            result = await graph.resume(store, "killed")
        print(sorted(result), flush=True)

    asyncio.run(main())
    """
)


def test_killed_mid_fan_out_with_sigkill_then_resumed(tmp_path: Path) -> None:
    import signal
    import time

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    db, effects = tmp_path / "runs.db", tmp_path / "effects.log"
    first = subprocess.Popen(
        [sys.executable, str(script), str(db), str(effects), "start"], stdout=subprocess.PIPE, text=True
    )
    assert first.stdout is not None and first.stdout.readline() == "started\n"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not effects.exists() or len(effects.read_text().split()) < 12):
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    before = Counter(effects.read_text().split())
    assert 12 <= sum(before.values()) < 60
    second = subprocess.run(
        [sys.executable, str(script), str(db), str(effects), "resume"], capture_output=True, text=True, check=False
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout == f"{[3 * i for i in range(60)]}\n"
    after = Counter(effects.read_text().split())
    assert set(after) == {str(i) for i in range(60)}
    # a branch that had finished never ran again; at most the few in flight (4 at a time) did
    assert sum(after.values()) - 60 <= 4


async def test_step_ids_of_two_runs_of_one_graph_never_repeat(tmp_path: Path) -> None:
    from railyard import SqliteStore
    from railyard.builder import GraphBuilder, reduce_list_append

    seen: list[str] = []
    g = GraphBuilder(name="ids_graph", input_type=list[int], output_type=list[int])

    @g.step
    async def note(ctx: StepContext[None, None, int]) -> int:
        seen.append(ctx.step_id)
        return ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(g.edge_from(g.start_node).map().to(note), g.edge_from(note).to(collect), g.edge_from(collect).to(g.end_node))
    graph = g.build()
    store = SqliteStore(tmp_path / "runs.db")
    await graph.run(inputs=[1, 2, 3], store=store, run_id="one")
    first = set(seen)
    seen.clear()
    await graph.run(inputs=[1, 2, 3], store=store, run_id="two")
    assert len(first) == 3 and len(set(seen)) == 3
    assert first.isdisjoint(seen)  # a sink keyed on ctx.step_id keeps both runs' effects
    await store.aclose()


async def test_a_run_whose_branch_failed_stays_failed_when_siblings_finish_after(tmp_path: Path) -> None:
    import anyio

    from railyard import RunStatus, SqliteStore
    from railyard.builder import GraphBuilder, reduce_sum

    released = anyio.Event()
    g = GraphBuilder(name="late_siblings", input_type=list[int], output_type=int)

    @g.step
    async def item(ctx: StepContext[None, None, int]) -> int:
        if ctx.inputs == 0:
            await anyio.wait_all_tasks_blocked()  # every sibling waits on `released`
            released.set()  # they go on (and finish) while the failure is on its way to the driver
            raise RuntimeError("item 0 failed")
        await released.wait()
        return ctx.inputs

    total = g.join(reduce_sum, initial=0)
    g.add(g.edge_from(g.start_node).map().to(item), g.edge_from(item).to(total), g.edge_from(total).to(g.end_node))
    graph = g.build()
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RuntimeError, match="item 0 failed"):
        await graph.run(inputs=list(range(20)), store=store, run_id="r")
    records = await store.read("r")
    failed_at = next(index for index, record in enumerate(records) if record.kind == "step_failed")
    assert any(record.kind == "step_finished" for record in records[failed_at + 1 :])  # siblings did finish after it
    (info,) = await store.runs()
    assert info.status is RunStatus.FAILED
    assert [i.run_id for i in await store.runs(status=RunStatus.FAILED)] == ["r"]
    await store.aclose()


async def test_an_unbounded_maps_finished_branches_are_durable_while_a_branch_still_runs(tmp_path: Path) -> None:
    # every branch starts at once, so no later start carries the finishes: the driver commits them while it waits
    release = anyio.Event()
    g = GraphBuilder(input_type=list[int], output_type=list[int])

    @g.step
    async def work(ctx: StepContext[None, None, int]) -> int:
        if ctx.inputs == 0:
            await release.wait()
        return ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).map().to(work),
        g.edge_from(work).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    graph = g.build()
    path = tmp_path / "runs.db"
    seen: list[int] = []

    async def watch() -> None:
        reader = SqliteStore(path)
        try:
            with anyio.fail_after(30):
                while True:  # another connection: only what is committed
                    records = await reader.read("wide") if (await reader.runs()) else []
                    finished = sum(1 for r in records if r.kind == "step_finished" and r.node_id == "work")
                    if finished == 3:
                        seen.append(finished)
                        release.set()
                        return
                    await anyio.sleep(0.01)
        finally:
            await reader.aclose()

    store = SqliteStore(path)
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        result = await graph.run(inputs=[0, 1, 2, 3], store=store, run_id="wide")
    await store.aclose()
    assert sorted(result) == [0, 1, 2, 3]
    assert seen == [3]  # three branches were committed while the fourth still ran
