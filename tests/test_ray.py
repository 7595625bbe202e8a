"""`RayExecutor`: steps as Ray tasks on a real local Ray instance, while the driver keeps the run.

One Ray instance (2 CPUs) serves the whole module. The graphs are in `tests/ray_graphs.py`,
at module level, so that Ray workers import their code by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import ray

from railyard.exceptions import RunNotFound
from railyard.ray import RayExecutor, RayOptions, StepLost, ValueCannotCross
from railyard.store import StoredRecord
from railyard.store.memory import MemoryStore
from railyard.store.sqlite import SqliteStore
from tests import ray_graphs
from tests.ray_graphs import TRACKER, Seen

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """One local Ray instance for the module: its address, for drivers in other processes."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture
def tracker(ray_address: str) -> Iterator[Any]:
    """The actor the tracking steps report to (a fresh one per test)."""
    actor: Any = ray.remote(ray_graphs.Tracker).options(name=TRACKER).remote()
    try:
        yield actor
    finally:
        ray.kill(actor)


def test_the_executor_says_what_it_runs_where() -> None:
    assert repr(RayExecutor()) == "RayExecutor()"
    chosen = RayExecutor({"crunch": RayOptions(num_cpus=2)}, max_concurrency=4)
    assert repr(chosen) == "RayExecutor(steps=['crunch'], max_concurrency=4)"
    assert chosen.steps == {"crunch": RayOptions(num_cpus=2)}
    assert RayOptions(num_cpus=0.5, resources={"gpu_box": 1}).ray_options() == {
        "num_cpus": 0.5,
        "resources": {"gpu_box": 1},
        "max_retries": 0,
    }
    with pytest.raises(ValueError, match="max_concurrency"):
        RayExecutor(max_concurrency=0)
    with pytest.raises(TypeError, match=r"steps=\['crunch'\]"):
        RayExecutor("crunch")


def test_railyard_does_not_import_ray_and_a_missing_ray_says_what_to_install() -> None:
    code = """
import json, sys
import railyard, railyard.builder, railyard.ray
imported = "ray" in sys.modules
sys.modules["ray"] = None  # as if Ray were not installed
try:
    railyard.ray.RayExecutor()
except ImportError as error:
    print(json.dumps([imported, str(error)]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    imported, message = json.loads(done.stdout)
    assert imported is False
    assert message == "RayExecutor needs Ray, which is not installed: pip install 'railyard-graph[ray]'"


async def test_a_thousand_item_map_on_ray_gives_the_in_process_result(ray_address: str) -> None:
    items = list(range(1000))
    here = await ray_graphs.squares.run(inputs=items)
    there = await ray_graphs.squares.run(inputs=items, executor=RayExecutor(options=RayOptions(num_cpus=0.5)))
    assert sorted(there) == sorted(here) == [i * i for i in items]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_only_the_named_steps_go_to_ray(ray_address: str) -> None:
    driver = os.getpid()
    seen = Seen()
    assert await ray_graphs.placed.run(inputs=[1, 2, 3], state=seen, executor=RayExecutor(["crunch"])) == 3
    assert (seen.prepare, seen.tally) == (driver, driver)
    assert len(seen.items) == 3
    assert driver not in seen.items

    # every step: the state's changes made on Ray workers come back to the run's state
    everywhere = Seen()
    assert await ray_graphs.placed.run(inputs=[1, 2], state=everywhere, executor=RayExecutor()) == 2
    assert driver not in (everywhere.prepare, everywhere.tally, *everywhere.items)
    assert 0 not in (everywhere.prepare, everywhere.tally)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_node_graph_steps_run_on_ray_and_bring_their_state_back(ray_address: str) -> None:
    state = ray_graphs.Counter(left=3)
    result = await ray_graphs.countdown.run(ray_graphs.Countdown(), state=state, executor=RayExecutor())
    assert result.output == 4
    assert state.left == 0
    assert len(state.visited) == 4
    assert os.getpid() not in state.visited


async def test_a_worker_dying_is_a_failed_attempt_that_the_retry_policy_retries(ray_address: str) -> None:
    store = MemoryStore()
    assert await ray_graphs.fragile.run(inputs="x", store=store, run_id="fragile", executor=RayExecutor()) == (
        "x on attempt 2"
    )
    failed = [json.loads(record.body) for record in await store.read("fragile") if record.kind == "step_failed"]
    assert [(body["attempt"], body["error"]["type"]) for body in failed] == [(1, "railyard.ray.StepLost")]
    assert "survive" in failed[0]["error"]["message"]
    assert StepLost.__module__ == "railyard.ray"


async def test_a_value_that_cannot_cross_names_the_step(ray_address: str) -> None:
    with pytest.raises(ValueCannotCross) as result:
        await ray_graphs.opaque.run(inputs=1, executor=RayExecutor())
    assert (result.value.node_id, result.value.what) == ("make_opaque", "result")
    assert "Step `make_opaque` runs on Ray, but its result cannot cross" in str(result.value)

    with pytest.raises(ValueCannotCross) as inputs:
        await ray_graphs.squares.run(inputs=[1, ray_graphs.Opaque()], executor=RayExecutor(["square"]))  # type: ignore[list-item]
    assert (inputs.value.node_id, inputs.value.what) == ("square", "inputs")
    assert "leave `square` out of RayExecutor(steps=...)" in str(inputs.value)


async def test_max_concurrency_bounds_the_tasks_in_flight(tracker: Any) -> None:
    items = list(range(8))
    # unbounded, Ray runs several at once (one per CPU at least)
    assert await ray_graphs.held.run(inputs=items, executor=RayExecutor()) == sum(items)
    assert await tracker.peak.remote() >= 2
    # the executor lets one task at a time onto the cluster, though Ray would take 8 (a quarter CPU each)
    executor = RayExecutor(options=RayOptions(num_cpus=0.25), max_concurrency=1)
    assert await ray_graphs.held.run(inputs=items, executor=executor) == sum(items)
    assert await tracker.peak.remote() == 1


async def test_cancelling_the_wait_cancels_the_ray_task(tracker: Any) -> None:
    store = MemoryStore()
    outcome: list[str] = []

    async def drive() -> None:
        outcome.append(await ray_graphs.blocked.run(store=store, run_id="blocked", executor=RayExecutor()))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(drive)
            await tracker.wait.remote("started")  # the step runs on its worker
            group.cancel_scope.cancel()
        await tracker.wait.remote("interrupted")  # ray.cancel reached the running task
    assert outcome == []
    block = [record.kind for record in await store.read("blocked") if record.node_id == "block"]
    assert block == ["step_started"]  # its result was never delivered


# -- a driver killed mid-map ----------------------------------------------------------------


def _finished(records: list[StoredRecord]) -> Counter[str]:
    """How many times each step finished, by step id."""
    return Counter(json.loads(record.body)["task_id"] for record in records if record.kind == "step_finished")


async def _records(store: SqliteStore, run_id: str) -> list[StoredRecord]:
    try:
        return list(await store.read(run_id))
    except RunNotFound:  # not made yet
        return []


async def test_a_driver_killed_mid_map_resumes_without_repeating_a_finished_branch(
    ray_address: str, tmp_path: Path
) -> None:
    items, kills, run_id = 1000, 10, "hashes"
    stride = items // (kills + 2)  # branches finished between kills: the kills spread over the map
    database = tmp_path / "runs.db"
    store = SqliteStore(database)
    command = [sys.executable, "-m", "tests.ray_graphs", ray_address, str(database), run_id, str(items)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    finished_before = 0
    with anyio.fail_after(300):
        for kill in range(kills):
            log = tmp_path / f"driver{kill}.log"
            with log.open("wb") as errors:
                driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errors)
            try:
                # kill it once it has finished some more branches, mid-map
                while len(_finished(await _records(store, run_id))) < finished_before + stride:
                    assert driver.poll() is None, f"the driver ended before it was killed:\n{log.read_text()[-3000:]}"
                    await anyio.sleep(0.01)  # polling the store: the records are the event
            finally:
                driver.send_signal(signal.SIGKILL)
                await anyio.to_thread.run_sync(driver.wait)
            finished_before = len(_finished(await _records(store, run_id)))
        assert finished_before < items  # the run was still part-way through its map
        last = await anyio.to_thread.run_sync(
            lambda: subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        )
    assert last.returncode == 0, last.stderr[-2000:]
    records = await _records(store, run_id)
    finished = _finished(records)
    assert max(finished.values()) == 1, [step for step, count in finished.items() if count > 1]
    digests = [r for r in records if r.kind == "step_finished" and r.node_id == "digest"]
    assert len(digests) == items
    # the branches in flight at a kill ran again, under the same step ids
    started = Counter(json.loads(r.body)["task_id"] for r in records if r.kind == "step_started")
    assert max(started.values()) > 1
    (ended,) = [body["end"] for r in records if (body := json.loads(r.body)).get("end") is not None]
    expected = [f"{i}:{ray_graphs.burn(i, ray_graphs.ROUNDS)}" for i in range(items)]
    assert sorted(ended["data"]) == sorted(expected)


def test_railyard_run_with_the_ray_executor_joins_the_cluster(ray_address: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "railyard", "run", "tests.support.cli_graphs:doubles", "--inputs", "[1, 2, 3]"]
    command += ["--executor", f"ray:{ray_address}", "--store", f"sqlite:{tmp_path / 'runs.db'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)) == [2, 4, 6]  # branches join in the order they finish
