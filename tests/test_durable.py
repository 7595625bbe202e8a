"""Durable runs: the guarantee, the step id, one driver per run, resume after a fix, fork."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.durable import DurablePersistence
from railyard.exceptions import RunEnded, RunLocked, RunNotFound
from railyard.store import RunStatus
from railyard.store.sqlite import SqliteStore
from railyard.testing._sample import CountTo, CrashState, count_graph

pytestmark = pytest.mark.anyio


@dataclass
class Steps:
    seen: list[str] = field(default_factory=list[str])


@dataclass
class Flaky:
    crash_at: int | None = None
    fail_at: int | None = None
    calls: list[tuple[int, str]] = field(default_factory=list[tuple[int, str]])


@dataclass
class Work(BaseNode[Steps, Flaky, int]):
    n: int = 0

    async def run(self, ctx: GraphRunContext[Steps, Flaky]) -> Work | End[int]:
        ctx.deps.calls.append((self.n, ctx.step_id))
        if self.n == ctx.deps.crash_at:
            raise KeyboardInterrupt  # the process "dies" mid-step: nothing is recorded for it
        if self.n == ctx.deps.fail_at:
            raise ValueError(f"step {self.n} failed")
        ctx.state.seen.append(f"work {self.n}")
        return Work(self.n + 1) if self.n < 4 else End(self.n)


work_graph = Graph(nodes=[Work])


async def test_a_step_in_flight_runs_again_with_the_same_step_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    deps = Flaky(crash_at=2)
    with pytest.raises(KeyboardInterrupt):
        await work_graph.run(Work(), state=Steps(), deps=deps, persistence=DurablePersistence(store, "r"))
    (info,) = await store.runs()
    assert (info.status, info.steps, info.last_node) == (RunStatus.STALLED, 2, "Work")  # cut off mid-step

    fixed = Flaky()
    result = await work_graph.resume(DurablePersistence(store, "r"), deps=fixed)
    assert result.output == 4
    assert result.state.seen == ["work 0", "work 1", "work 2", "work 3", "work 4"]
    # the interrupted step ran again, with the id it had: an idempotency key for its effects
    crashed_id = deps.calls[-1][1]
    assert fixed.calls[0] == (2, crashed_id)
    assert [n for n, _ in deps.calls + fixed.calls] == [0, 1, 2, 2, 3, 4]  # finished steps never again
    assert len({step_id for _, step_id in deps.calls + fixed.calls}) == 5


async def test_a_failed_run_resumes_after_a_fix(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(ValueError, match="step 3 failed"):
        await work_graph.run(Work(), state=Steps(), deps=Flaky(fail_at=3), persistence=DurablePersistence(store, "r"))
    (info,) = await store.runs(status=RunStatus.FAILED)
    assert info.steps == 3
    reader: DurablePersistence[Steps, int] = DurablePersistence(store, "r")
    reader.set_graph_types(work_graph)
    (failed,) = [s for s in await reader.load_all() if getattr(s, "status", None) == "error"]
    assert failed.node == Work(3)
    result = await work_graph.resume(DurablePersistence(store, "r"), deps=Flaky())
    assert result.output == 4 and result.state.seen[-2:] == ["work 3", "work 4"]
    assert [i.status for i in await store.runs()] == [RunStatus.ENDED]


async def test_the_run_is_stored_before_its_first_node_runs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    seen: list[object] = []

    @dataclass
    class Look(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            seen.extend((info.run_id, info.status) for info in await store.runs())
            return End(1)

    await Graph(nodes=[Look]).run(Look(), persistence=DurablePersistence(store, "early"))
    assert seen == [("early", RunStatus.RUNNING)]


async def test_resume_errors(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(RunNotFound, match=r"No run 'nope' in SqliteStore"):
        await count_graph.resume(DurablePersistence(store, "nope"))
    await count_graph.run(CountTo(1), state=CrashState(), persistence=DurablePersistence(store, "done"))
    with pytest.raises(RunEnded, match=r"Run 'done' in SqliteStore\(.*\) has ended and cannot be resumed"):
        await count_graph.resume(DurablePersistence(store, "done"))


async def test_generated_run_ids_and_repr(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    first: DurablePersistence[CrashState, int] = DurablePersistence(store)
    second: DurablePersistence[CrashState, int] = DurablePersistence(store)
    assert first.run_id != second.run_id and len(first.run_id) == 32
    assert (
        repr(first) == f"DurablePersistence(store=SqliteStore({str(tmp_path / 'runs.db')!r}), run_id={first.run_id!r})"
    )


async def test_fork_starts_a_new_run_from_any_step(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await count_graph.run(CountTo(5), state=CrashState(), persistence=DurablePersistence(store, "old"))
    before = [record.body for record in await store.read("old")]

    new_id = await count_graph.fork(store, "old", at_step=2, new_run_id="branch")
    assert new_id == "branch"
    async with count_graph.iter_from_persistence(DurablePersistence(store, "branch")) as run:
        assert run.state == CrashState(count=2)
        assert run.next_node == CountTo(5)
        async for _ in run:
            pass
    assert run.result is not None and run.result.output == 5
    assert [record.body for record in await store.read("old")] == before  # untouched

    from_start = await count_graph.fork(store, "old", at_step=0)
    result = await count_graph.resume(DurablePersistence(store, from_start))
    assert result.output == 5 and len(from_start) == 32
    with pytest.raises(ValueError, match=r"Run 'old' has 6 finished steps; cannot fork at step 9"):
        await count_graph.fork(store, "old", at_step=9)
    with pytest.raises(ValueError, match=r"Step 6 of run 'old' ended the run"):
        await count_graph.fork(store, "old", at_step=6)


DRIVER = textwrap.dedent(
    """
    import asyncio, sys
    from dataclasses import dataclass
    from railyard import BaseNode, End, Graph, GraphRunContext
    from railyard.durable import DurablePersistence
    from railyard.exceptions import RunLocked
    from railyard.store.sqlite import SqliteStore

    @dataclass
    class Slow(BaseNode[None, None, int]):
        n: int = 0
        async def run(self, ctx: GraphRunContext) -> "Slow | End[int]":
            await asyncio.sleep(0.05)
            return Slow(self.n + 1) if self.n < 19 else End(self.n)

    graph = Graph(nodes=[Slow])

    async def main(db, mode):
        store = SqliteStore(db)
        if mode == "start":
            await graph.initialize(Slow(), DurablePersistence(store, "shared"))
        try:
            async with graph.iter_from_persistence(DurablePersistence(store, "shared")) as run:
                print("driving", flush=True)
                async for _ in run:
                    pass
            print("finished", run.result.output, flush=True)
        except RunLocked as error:
            print("refused:", error, flush=True)
            sys.exit(3)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_two_processes_one_run_one_proceeds(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    db = tmp_path / "runs.db"
    first = subprocess.Popen([sys.executable, str(script), str(db), "start"], stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None and first.stdout.readline() == "driving\n"
    second = subprocess.run(
        [sys.executable, str(script), str(db), "resume"], check=False, capture_output=True, text=True
    )
    assert second.returncode == 3
    assert second.stdout.startswith("refused: Run 'shared' in SqliteStore(") and "another process" in second.stdout
    out, _ = first.communicate(timeout=30)
    assert first.returncode == 0 and out == "finished 19\n"

    import asyncio

    async def check() -> None:
        store = SqliteStore(db)
        (info,) = await store.runs()
        assert (info.status, info.steps) == (RunStatus.ENDED, 20)
        kinds = [record.kind for record in await store.read("shared")]
        assert kinds.count("step_started") == 20 and kinds.count("step_finished") == 20
        await store.aclose()

    asyncio.run(check())


async def test_two_drivers_in_one_process(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await count_graph.initialize(CountTo(2), DurablePersistence(store, "x"), state=CrashState())
    async with count_graph.iter_from_persistence(DurablePersistence(store, "x")):
        with pytest.raises(RunLocked):
            await count_graph.resume(DurablePersistence(store, "x"))


async def test_a_cancelled_run_lets_go_of_its_lock_and_resumes(tmp_path: Path) -> None:
    import anyio

    store = SqliteStore(tmp_path / "runs.db")

    @dataclass
    class Sleepy(BaseNode[None, None, int]):
        n: int = 0

        async def run(self, ctx: GraphRunContext) -> Sleepy | End[int]:
            if self.n == 2 and not ctx.deps:
                await anyio.sleep(10)
            return Sleepy(self.n + 1) if self.n < 3 else End(self.n)

    graph = Graph(nodes=[Sleepy])
    with anyio.move_on_after(0.2):
        await graph.run(Sleepy(), persistence=DurablePersistence(store, "c"))
    (info,) = await store.runs()
    assert (info.status, info.steps) == (RunStatus.STALLED, 2)  # cut off in step 3, and let go of
    result = await graph.resume(DurablePersistence(store, "c"), deps=True)
    assert result.output == 3


@dataclass
class Loop(BaseNode[CrashState, None, int]):
    async def run(self, ctx: GraphRunContext[CrashState]) -> Loop | End[int]:
        ctx.state.count += 1
        return self if ctx.state.count < 4 else End(ctx.state.count)  # the same node object each step


loop_graph = Graph(nodes=[Loop])


async def test_a_node_returning_itself_gets_a_new_step_id_each_step(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, "loop")
    start = Loop()
    async with loop_graph.iter(start, state=CrashState(), persistence=persistence) as run:
        await run.next()
        await run.next()
    result = await loop_graph.resume(DurablePersistence(store, "loop"))
    assert result.output == 4
    kinds = [record.kind for record in await store.read("loop")]
    assert kinds.count("step_finished") == 4
    # a second run from the same node object gets its own step ids
    other: DurablePersistence[CrashState, int] = DurablePersistence(store, "loop-2")
    first_id = start.get_snapshot_id()
    await loop_graph.run(start, state=CrashState(), persistence=other)
    assert start.get_snapshot_id() != first_id


async def test_a_finished_step_is_refused_when_given_again(tmp_path: Path) -> None:
    from railyard import GraphNodeStatusError

    store = SqliteStore(tmp_path / "runs.db")
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, "again")
    async with count_graph.iter(CountTo(5), state=CrashState(), persistence=persistence) as run:
        first = run.next_node
        await run.next()
        await run.next()
        with pytest.raises(GraphNodeStatusError, match="Incorrect snapshot status 'success'"):
            await run.next(first)  # type: ignore[arg-type]


async def test_resume_after_an_override_goes_on_from_the_override(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    persistence: DurablePersistence[Steps, int] = DurablePersistence(store, "override")
    async with work_graph.iter(Work(0), state=Steps(), deps=Flaky(), persistence=persistence) as run:
        assert await run.next() == Work(1)
        assert await run.next(Work(3)) == Work(4)  # skip ahead, then stop
    result = await work_graph.resume(DurablePersistence(store, "override"), deps=Flaky())
    assert result.state.seen == ["work 0", "work 3", "work 4"]


async def test_a_run_whose_block_has_exited_refuses_to_go_on(tmp_path: Path) -> None:
    from railyard import GraphRuntimeError

    store = SqliteStore(tmp_path / "runs.db")
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, "stale")
    async with count_graph.iter(CountTo(5), state=CrashState(), persistence=persistence) as run:
        await run.next()
    with pytest.raises(GraphRuntimeError, match=r"its `async with` block has exited"):
        await run.next()


async def test_claiming_a_failed_run_keeps_it_failed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(ValueError):
        await work_graph.run(Work(), state=Steps(), deps=Flaky(fail_at=1), persistence=DurablePersistence(store, "f"))
    async with work_graph.iter_from_persistence(DurablePersistence(store, "f"), deps=Flaky()):
        pass  # opened, claimed, not run
    assert [info.status for info in await store.runs()] == [RunStatus.FAILED]


async def test_a_second_run_in_one_file_resumes(tmp_path: Path) -> None:
    from railyard import FileStatePersistence

    path = tmp_path / "two.json"
    await count_graph.run(CountTo(1), state=CrashState(), persistence=FileStatePersistence(path))
    async with count_graph.iter(CountTo(3), state=CrashState(), persistence=FileStatePersistence(path)) as run:
        await run.next()  # the second run in the file stops after a step
    result = await count_graph.resume(FileStatePersistence(path))
    assert result.output == 3


async def test_a_worker_skips_a_run_it_cannot_start_and_drives_the_rest(tmp_path: Path) -> None:
    from railyard.worker import run_worker

    store = SqliteStore(tmp_path / "runs.db")
    await work_graph.initialize(Work(), DurablePersistence(store, "a-other-graph"), state=Steps())
    await count_graph.initialize(CountTo(2), DurablePersistence(store, "b-ours"), state=CrashState())
    await count_graph.initialize(CountTo(2), DurablePersistence(store, "c-ours"), state=CrashState())
    driven = await run_worker(count_graph, store)  # "a-…" holds another graph's nodes: it cannot start
    assert driven == ["b-ours", "c-ours"]
    statuses = {info.run_id: info.status for info in await store.runs()}
    assert statuses == {"a-other-graph": RunStatus.CREATED, "b-ours": RunStatus.ENDED, "c-ours": RunStatus.ENDED}
