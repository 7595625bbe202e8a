"""Branch tasks on a real PostgreSQL server: map items spread over worker processes, each done once.

The processes' steps log each item as it ends (`tests.branch_graphs`): how often each ran,
and how many ran at once, are read from those lines, never from the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from railyard._step_codec import wait_future
from railyard.branches import BranchExecutor, NotDurable, RemoteStepError, StepLost, ValueCannotCross
from railyard.exceptions import PersistenceError
from railyard.store import RunStatus
from railyard.store._postgres_tasks import ensure_tasks
from railyard.store.memory import MemoryStore
from railyard.store.postgres import PostgresStore
from railyard.store.sqlite import SqliteStore
from railyard.worker import Worker
from tests import branch_graphs
from tests.branch_graphs import Add, Refused, Tally

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(new_postgres_database: Callable[[], str]) -> str:
    return new_postgres_database()


def _env(log: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "RAILYARD_BRANCH_LOG": str(log)}


@contextlib.contextmanager
def _workers(url: str, count: int, slots: int, log: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Branch-only worker processes; stopped by SIGTERM at the end."""
    with contextlib.ExitStack() as files:
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.branch_graphs", "worker", url, str(slots)],
                cwd=ROOT,
                env=_env(log),
                stdout=subprocess.DEVNULL,
                stderr=files.enter_context((log / f"worker{n}.err").open("wb")),
            )
            for n in range(count)
        ]
        try:
            yield started
        finally:
            for process in started:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in started:
                process.wait(timeout=60)


def _lines(log: Path) -> list[tuple[int, int, float, float]]:
    lines = []
    for path in log.glob("*.log"):
        for line in path.read_text().splitlines():
            item, pid, started, ended = line.split()
            lines.append((int(item), int(pid), float(started), float(ended)))
    return lines


def _most_at_once(lines: list[tuple[int, int, float, float]]) -> int:
    """The most steps running at one moment: an end before a start at the same instant."""
    events = sorted([(started, 1) for _, _, started, _ in lines] + [(ended, -1) for _, _, _, ended in lines])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


async def _finished_steps(store: PostgresStore, run_id: str, node_id: str | None = None) -> Counter[str]:
    """How often each step (of `node_id`, or any) was recorded finished."""
    return Counter(
        json.loads(r.body)["task_id"]
        for r in await store.read(run_id)
        if r.kind == "step_finished" and r.body and (node_id is None or r.node_id == node_id)
    )


async def test_two_thousand_items_over_four_worker_processes_each_done_once_within_the_limit(
    url: str, tmp_path: Path
) -> None:
    items = 2000
    store = PostgresStore(url, lease=branch_graphs.LEASE)
    with _workers(url, 4, 4, tmp_path) as workers:
        with BranchExecutor(store, ["work"], queue=branch_graphs.QUEUE, concurrency=branch_graphs.LIMIT) as executor:
            with anyio.fail_after(240):
                result = await branch_graphs.spread.run(
                    inputs=list(range(items)), store=store, run_id="spread", executor=executor
                )
        assert sorted(result) == [2 * i for i in range(items)]
        lines = _lines(tmp_path)
        ran = Counter(item for item, *_ in lines)
        assert sorted(ran) == list(range(items)) and set(ran.values()) == {1}, "each item ran exactly once"
        most = _most_at_once(lines)
        assert most <= branch_graphs.LIMIT, f"{most} steps ran at once; the queue's limit is {branch_graphs.LIMIT}"
        assert most == branch_graphs.LIMIT, "the limit was reached (16 slots wanted more)"
        by_worker = Counter(pid for _, pid, *_ in lines)
        assert set(by_worker) == {w.pid for w in workers}, f"spread over every worker: {by_worker}"
        assert max((await _finished_steps(store, "spread")).values()) == 1
        assert len(await _finished_steps(store, "spread", "work")) == items
    assert [w.returncode for w in workers] == [0, 0, 0, 0]
    await store.aclose()


async def test_a_driver_killed_mid_map_gets_the_answers_that_came_meanwhile(url: str, tmp_path: Path) -> None:
    items, run_id = 300, "killed"
    store = PostgresStore(url, lease=branch_graphs.LEASE)
    command = [sys.executable, "-m", "tests.branch_graphs", "drive", url, run_id, str(items)]
    with _workers(url, 2, 3, tmp_path):
        for kill in range(3):
            driver = subprocess.Popen(
                command, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                with anyio.fail_after(120):
                    while len(_lines(tmp_path)) < (kill + 1) * items // 5:  # the logged items are the event
                        assert driver.poll() is None, "the driver ended before it was killed"
                        await anyio.sleep(0.01)
            finally:
                driver.send_signal(signal.SIGKILL)
                await anyio.to_thread.run_sync(driver.wait)
        with anyio.fail_after(120):
            last = await anyio.to_thread.run_sync(
                lambda: subprocess.run(command, cwd=ROOT, env=_env(tmp_path), capture_output=True, check=False)
            )
    assert last.returncode == 0, last.stderr.decode()[-2000:]
    assert int(last.stdout) == sum(2 * i for i in range(items))
    ran = Counter(item for item, *_ in _lines(tmp_path))
    assert sorted(ran) == list(range(items))
    # the workers never died: a task outlives its driver, so no item ran twice
    assert set(ran.values()) == {1}, [item for item, count in ran.items() if count > 1]
    finished = await _finished_steps(store, run_id)
    assert max(finished.values()) == 1
    await store.aclose()


async def test_a_worker_killed_mid_task_loses_its_tasks_to_another_once_their_lease_runs_out(
    url: str, tmp_path: Path
) -> None:
    items = 200
    store = PostgresStore(url, lease=branch_graphs.LEASE)
    with _workers(url, 2, 3, tmp_path) as workers:
        with BranchExecutor(store, ["work"], queue=branch_graphs.QUEUE) as executor:
            async with anyio.create_task_group() as group:

                async def kill_one() -> None:
                    while True:  # the first item it logged is the event
                        if any(pid == workers[0].pid for _, pid, *_ in _lines(tmp_path)):
                            workers[0].send_signal(signal.SIGKILL)
                            return
                        await anyio.sleep(0.01)

                group.start_soon(kill_one)
                with anyio.fail_after(120):
                    result = await branch_graphs.spread.run(
                        inputs=list(range(items)), store=store, run_id="survived", executor=executor
                    )
        assert workers[0].wait() == -signal.SIGKILL
        assert sorted(result) == [2 * i for i in range(items)]
        finished = await _finished_steps(store, "survived")
        assert max(finished.values()) == 1
        assert {item for item, *_ in _lines(tmp_path)} == set(range(items))
    await store.aclose()


# -- in one process: a worker beside the driver ------------------------------------------------


@contextlib.asynccontextmanager
async def _worker(url: str, graphs: list[Any], slots: int = 4, **kwargs: Any) -> AsyncIterator[Worker]:
    store = PostgresStore(url, lease=kwargs.pop("lease", 3.0))
    worker = Worker(graphs, store, concurrency=0, branches=slots, idle_timeout=None, **kwargs)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        try:
            yield worker
        finally:
            worker.stop(grace=0)
    await store.aclose()


async def test_a_node_runs_on_a_branch_worker_and_its_state_comes_back(url: str) -> None:
    store = PostgresStore(url)
    async with _worker(url, [branch_graphs.tally]) as worker:
        with BranchExecutor(store) as executor:
            result = await branch_graphs.tally.run(Add(3), state=Tally(), store=store, run_id="t", executor=executor)
    assert result.output == [3, 2, 1, 0] and result.state == Tally(seen=[3, 2, 1, 0])
    assert worker.branches is not None and worker.branches.ran == 4
    await store.aclose()


async def test_a_steps_error_comes_back_as_itself_and_its_retry_policy_decides(url: str) -> None:
    store = PostgresStore(url)
    async with _worker(url, [branch_graphs.failing]):
        with BranchExecutor(store) as executor:
            assert sorted(await branch_graphs.failing.run(inputs=[1, 2, 3], store=store, executor=executor)) == [
                1,
                2,
                3,
            ]
            with pytest.raises(Exception) as caught:
                await branch_graphs.failing.run(inputs=[4], store=store, run_id="four", executor=executor)
    assert branch_graphs.ATTEMPTS[3] == 2  # `Refused` came back as itself: the policy retried it
    error = _leaf(caught.value)
    assert isinstance(error, RemoteStepError)
    assert error.error_type == "tests.branch_graphs.Unrebuildable" and error.error_message == "cannot: four"
    assert "Unrebuildable: cannot: four" in error.traceback and "in check" in error.traceback
    assert (await store.run("four")).info.status == RunStatus.FAILED
    refused = Refused("why", 3)
    from railyard._step_codec import error_from_json, error_json

    again = error_from_json("check", "s1", error_json(refused), "on a test")
    assert isinstance(again, Refused) and (again.reason, again.item) == ("why", 3)
    await store.aclose()


async def test_a_failed_run_resumed_runs_its_failed_step_again(url: str) -> None:
    store = PostgresStore(url)
    async with _worker(url, [branch_graphs.failing]):
        with BranchExecutor(store) as executor:
            branch_graphs.FOUR_FAILS["now"] = True
            with pytest.raises(Exception, match="cannot: four"):
                await branch_graphs.failing.run(inputs=[4, 1], store=store, run_id="again", executor=executor)
            branch_graphs.FOUR_FAILS["now"] = False  # fixed: the failed task is queued afresh, not answered again
            try:
                assert sorted(await branch_graphs.failing.resume(store, "again", executor=executor)) == [1, 4]
            finally:
                branch_graphs.FOUR_FAILS["now"] = True
    assert (await store.run("again")).info.status == RunStatus.ENDED
    await store.aclose()


async def test_a_step_raising_system_exit_fails_its_attempt_and_the_worker_goes_on(url: str) -> None:
    store = PostgresStore(url)
    async with _worker(url, [branch_graphs.failing], slots=1):
        with BranchExecutor(store) as executor:
            with pytest.raises(RemoteStepError, match=r"builtins\.SystemExit: six leaves"):
                await branch_graphs.failing.run(inputs=[6], store=store, executor=executor)
            assert await branch_graphs.failing.run(inputs=[1], store=store, executor=executor) == [1]
    await store.aclose()


class Outer:
    class Inner(Exception):
        """An exception class inside a class."""


def test_errors_rebuild_nested_classes_and_refuse_state_that_breaks_them() -> None:
    from railyard._step_codec import error_from_json, error_json

    nested = error_from_json("s", "s1", error_json(Outer.Inner("deep")), "here")
    assert type(nested) is Outer.Inner and nested.args == ("deep",)
    described = {**error_json(Refused("why", 3)), "state": {"__notes__": 5}}
    again = error_from_json("s", "s1", described, "here")
    assert isinstance(again, Refused) and again.__notes__[-1].startswith("raised here by step `s`")


async def test_a_driver_cancels_only_the_tasks_still_its_own(url: str) -> None:
    from railyard._branch_client import BranchClient

    store = PostgresStore(url)
    await branch_graphs.tally.initialize(Add(0), store=store, run_id="shared", state=Tally())
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as made:
        await ensure_tasks(made, "the test database")
    row = {"run_id": "shared", "step_id": "Add:1", "attempt": 1, "node_id": "Add", "payload": {"inputs": {}}}
    first, second = BranchClient(url, "q", None, 0.05), BranchClient(url, "q", None, 0.05)
    try:
        waited = first.submit(row)
        with psycopg.connect(url, autocommit=True) as connection:
            await _until(lambda: bool(connection.execute("SELECT 1 FROM railyard_tasks").fetchall()))
            taken = second.submit(row)  # a driver that took the run over submits the same attempt
            await _until(
                lambda: connection.execute("SELECT submitted_by FROM railyard_tasks").fetchone() == (second._by,)
            )
            first.cancel(waited)
            await wait_future(waited)  # (as a step waits: a cancelled future runs its callbacks)
            assert waited.cancelled()
            first.close()  # its cancel was written (or refused) before its thread ended
            assert connection.execute("SELECT state FROM railyard_tasks").fetchall() == [("queued",)]
        assert not taken.done()
    finally:
        first.close()
        second.close()
        await store.aclose()


async def _until(done: Callable[[], bool]) -> None:
    """Wait until `done()`: what it reads (a row) is the event, looked at every 10 ms."""
    with anyio.fail_after(30):
        while True:
            if done():
                return
            await anyio.sleep(0.01)


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        (error,) = error.exceptions
    return error


async def test_cancelling_the_run_stops_the_step_on_its_worker(url: str) -> None:
    branch_graphs.STARTED.clear()
    branch_graphs.STOPPED.clear()
    store = PostgresStore(url)
    async with _worker(url, [branch_graphs.held]):
        with BranchExecutor(store) as executor:
            with anyio.move_on_after(60) as waited:
                async with anyio.create_task_group() as group:
                    group.start_soon(
                        lambda: branch_graphs.held.run(inputs=1, store=store, run_id="h", executor=executor)
                    )
                    await anyio.to_thread.run_sync(branch_graphs.STARTED.wait)
                    group.cancel_scope.cancel()
                assert await anyio.to_thread.run_sync(branch_graphs.STOPPED.wait, 30)
            assert not waited.cancelled_caught
    with psycopg.connect(url) as connection:
        states = connection.execute("SELECT state FROM railyard_tasks").fetchall()
    assert states == [("cancelled",)]
    await store.aclose()


async def test_a_task_lost_max_claims_times_fails_its_attempt_with_step_lost(url: str) -> None:
    store = PostgresStore(url)
    failed = anyio.Event()
    with BranchExecutor(store, queue="lossy") as executor:
        async with anyio.create_task_group() as group:

            async def drive() -> None:
                with pytest.raises(Exception) as caught:
                    await branch_graphs.held.run(inputs=1, store=store, run_id="lost", executor=executor)
                lost = _leaf(caught.value)
                assert isinstance(lost, StepLost) and "lease ran out 3 times" in str(lost), lost
                failed.set()

            group.start_soon(drive)
            with anyio.fail_after(30):
                while True:  # the queued row is the event: make it look claimed 3 times by a dead worker
                    with (
                        psycopg.connect(url, autocommit=True) as connection,
                        contextlib.suppress(psycopg.errors.UndefinedTable),
                    ):
                        changed = connection.execute(
                            "UPDATE railyard_tasks SET state = 'running', claims = 3, owner = 'gone/1', "
                            "lease_expires = 0 WHERE state = 'queued'"
                        ).rowcount
                        if changed:
                            break
                    await anyio.sleep(0.01)
            async with _worker(url, [branch_graphs.held], queues=["lossy"]):
                with anyio.fail_after(30):
                    await failed.wait()  # its first claim round marks the task lost
    assert (await store.run("lost")).info.status == RunStatus.FAILED
    await store.aclose()


async def test_a_run_that_is_not_stored_is_refused_with_the_fix(url: str) -> None:
    store = PostgresStore(url)
    with BranchExecutor(store) as executor, pytest.raises(Exception) as caught:
        await branch_graphs.spread.run(inputs=[1], executor=executor)
    error = _leaf(caught.value)
    assert isinstance(error, NotDurable) and "run(..., store=store)" in str(error)
    await store.aclose()


async def test_a_value_that_cannot_cross_names_the_step_and_the_executor(url: str) -> None:
    store = PostgresStore(url)
    async with _worker(url, [branch_graphs.failing]):
        with BranchExecutor(store) as executor, pytest.raises(Exception) as caught:
            await branch_graphs.failing.run(inputs=[5], store=store, executor=executor)
    error = _leaf(caught.value)
    assert isinstance(error, ValueCannotCross) and (error.node_id, error.what) == ("check", "result")
    assert "as a branch task" in str(error) and "BranchExecutor(steps=...)" in str(error)
    await store.aclose()


async def test_tables_railyard_did_not_make_are_refused_and_left_alone(url: str) -> None:
    store = PostgresStore(url)
    await branch_graphs.tally.run(Add(0), state=Tally(), store=store, run_id="made")  # the run tables exist
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE railyard_tasks (id integer, note text)")
        connection.execute("INSERT INTO railyard_tasks VALUES (1, 'theirs')")
    with BranchExecutor(store) as executor, pytest.raises(Exception) as caught:
        await branch_graphs.tally.run(Add(0), state=Tally(), store=store, executor=executor)
    error = _leaf(caught.value)
    assert isinstance(error, PersistenceError) and "railyard_tasks" in str(error)
    worker = Worker(branch_graphs.tally, PostgresStore(url), concurrency=0, branches=1)
    with pytest.raises(PersistenceError, match="not made by railyard"):
        await worker.run()
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT * FROM railyard_tasks").fetchall() == [(1, "theirs")]
    await store.aclose()


async def test_bad_settings_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(TypeError, match="needs the PostgresStore"):
        BranchExecutor(SqliteStore(tmp_path / "runs.db"))  # type: ignore[arg-type]
    store = PostgresStore(url)
    with pytest.raises(TypeError, match=r"steps=\['work'\]"):
        BranchExecutor(store, "work")
    with pytest.raises(ValueError, match="concurrency"):
        BranchExecutor(store, concurrency=0)
    with pytest.raises(ValueError, match="branch tasks live in PostgreSQL"):
        Worker(branch_graphs.spread, MemoryStore(), branches=2)
    with pytest.raises(ValueError, match="concurrency=0"):
        Worker(branch_graphs.spread, store, concurrency=0)
    assert "queue='default'" in repr(BranchExecutor(store))
