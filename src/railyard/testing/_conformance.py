"""The store conformance suite: what every `RunStore` must do, checked through its public API."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from time import time
from typing import Any

from railyard._ids import new_hex_id
from railyard.durable import DurablePersistence
from railyard.exceptions import RunEnded, RunExists, RunLocked, RunNotFound
from railyard.persistence import EndSnapshot, NodeSnapshot
from railyard.store import RunStatus, RunStore, StoredRecord
from railyard.testing._sample import (
    Color,
    CountTo,
    CrashState,
    FailPlan,
    Mixed,
    Point,
    RichState,
    count_graph,
    map_graph,
    rich_graph,
)

__all__ = ("CHECKS", "StoreFactory", "check_store")

StoreFactory = Callable[[], RunStore | Awaitable[RunStore]]
"""Makes a new, empty store (sync or async)."""


def _record(kind: str, status: RunStatus, node: str | None = None, *, step: bool = False, n: int = 0) -> StoredRecord:
    body = f'{{"kind":"{kind}","n":{n}}}'
    return StoredRecord(kind=kind, body=body, status=status, node_id=node, finishes_step=step, ts=time() + n)


async def check_records_in_order(store: RunStore) -> None:
    """Records come back in the order they were written, byte for byte."""
    run_id = f"order-{new_hex_id()}"
    first = [_record("tasks_scheduled", RunStatus.CREATED, "A", n=0)]
    await store.create(run_id, first)
    batch = [
        _record("step_started", RunStatus.RUNNING, "A", n=1),
        _record("step_finished", RunStatus.WAITING, "A", step=True, n=2),
    ]
    await store.append(run_id, batch)
    await store.append(run_id, [_record("step_started", RunStatus.RUNNING, "B", n=3)])
    stored = await store.read(run_id)
    assert [r.body for r in stored] == [r.body for r in [*first, *batch]] + ['{"kind":"step_started","n":3}'], (
        "records must come back in the order they were appended"
    )
    assert stored[1] == batch[0], "a stored record must come back unchanged"


async def check_missing_and_duplicate_runs(store: RunStore) -> None:
    """A missing run is `RunNotFound`; creating an existing one is `RunExists` and changes nothing."""
    run_id = f"dup-{new_hex_id()}"
    for call in (store.read(run_id), store.append(run_id, [_record("step_started", RunStatus.RUNNING)])):
        try:
            await call
        except RunNotFound as err:
            assert run_id in str(err), "RunNotFound must name the run"
        else:
            raise AssertionError("reading or appending to a missing run must raise RunNotFound")
    await store.create(run_id, [_record("tasks_scheduled", RunStatus.CREATED, "A")])
    try:
        await store.create(run_id, [_record("tasks_scheduled", RunStatus.CREATED, "Z", n=9)])
    except RunExists as err:
        assert run_id in str(err), "RunExists must name the run"
    else:
        raise AssertionError("creating a run twice must raise RunExists")
    assert [r.node_id for r in await store.read(run_id)] == ["A"], "a refused create must not change the run"


async def check_status_transitions(store: RunStore) -> None:
    """`runs()` follows each run's records: status, steps, last node, start time, filtering."""
    run_id = f"status-{new_hex_id()}"
    started = time()
    await store.create(run_id, [_record("tasks_scheduled", RunStatus.CREATED, "A")])

    async def info() -> Any:
        (found,) = [i for i in await store.runs() if i.run_id == run_id]
        return found

    assert (await info()).status is RunStatus.CREATED
    async with store.lock(run_id):  # a driver holds the run while it writes
        await store.append(run_id, [_record("step_started", RunStatus.RUNNING, "A")])
        running = await info()
        assert running.status is RunStatus.RUNNING, "a run its driver holds mid-step is running"
        assert running.owner is not None and running.lease_expires is not None, "the driver's lease is listed"
        await store.append(run_id, [_record("step_finished", RunStatus.WAITING, "B", step=True)])
        current = await info()
        assert (current.status, current.steps, current.last_node) == (RunStatus.WAITING, 1, "B")
        assert current.started_at is not None and abs(current.started_at.timestamp() - started) < 60
        await store.append(run_id, [_record("step_started", RunStatus.RUNNING, "B")])
    cut_off = await info()
    assert cut_off.status is RunStatus.STALLED, "a run left mid-step by its driver is reported stalled"
    assert cut_off.owner is None, "a driver that let go holds no lease"
    async with store.lock(run_id):
        await store.append(run_id, [_record("step_failed", RunStatus.FAILED, "B")])
        assert (await info()).status is RunStatus.FAILED
        await store.append(run_id, [_record("task_claimed", RunStatus.WAITING, "B")])
        await store.append(run_id, [_record("step_started", RunStatus.RUNNING, "B")])
        await store.append(run_id, [_record("step_finished", RunStatus.ENDED, None, step=True)])
    final = await info()
    assert (final.status, final.steps, final.last_node) == (RunStatus.ENDED, 2, "B")
    ended = {i.run_id for i in await store.runs(status=RunStatus.ENDED)}
    failed = {i.run_id for i in await store.runs(status=RunStatus.FAILED)}
    assert run_id in ended and run_id not in failed, "runs(status=...) must filter by the current status"


async def check_lock(store: RunStore) -> None:
    """One holder at a time; a second is refused at once with `RunLocked`; exit releases."""
    run_id = f"lock-{new_hex_id()}"
    await store.create(run_id, [_record("tasks_scheduled", RunStatus.CREATED, "A")])
    async with store.lock(run_id):
        try:
            async with store.lock(run_id):
                raise AssertionError("a second lock on a held run must raise RunLocked")
        except RunLocked as err:
            assert run_id in str(err), "RunLocked must name the run"
    try:
        async with store.lock(run_id):
            raise KeyError("inside")
    except KeyError:
        pass
    async with store.lock(run_id):
        pass  # released after a normal exit and after an exception


async def check_rich_round_trip(store: RunStore) -> None:
    """States, nodes and results of many types come back equal: dataclasses, models, enums, ..."""
    state = RichState(nested=CrashState(3, 4))
    result = await rich_graph.run(Mixed(3, when=state.when), state=state, persistence=DurablePersistence(store, "rich"))
    assert result.output == Point(x=3, y=1.5, label="green")
    reader: DurablePersistence[RichState, Point] = DurablePersistence(store, "rich")
    reader.set_graph_types(rich_graph)
    snapshots = await reader.load_all()
    nodes = [s for s in snapshots if isinstance(s, NodeSnapshot)]
    assert [n.node for n in nodes] == [
        Mixed(3, Color.GREEN, state.when),
        Mixed(3, Color.RED, state.when),
        Mixed(3, Color.GREEN, state.when),
        Mixed(3, Color.RED, state.when),
    ], "nodes must round-trip with their fields"
    assert all(n.status == "success" for n in nodes)
    assert nodes[2].state.points == [Point(x=1, y=0.5, label="green"), Point(x=2, y=1.0, label="red")]
    assert nodes[2].state.tags == {"t1": 1, "t2": "2"} and nodes[2].state.choice == "b"
    assert nodes[3].state.color is Color.GREEN and nodes[3].state.nested == CrashState(3, 4)
    assert nodes[3].state.when == state.when, "datetimes must round-trip exactly"
    end = snapshots[-1]
    assert isinstance(end, EndSnapshot) and end.result.data == result.output and end.state == result.state
    assert (await store.runs(status=RunStatus.ENDED))[-1].steps >= 4


async def check_failure_recorded_and_resumable(store: RunStore) -> None:
    """A node's exception is recorded, the run is `failed`, and resuming retries the step."""
    run_id = f"fail-{new_hex_id()}"
    try:
        await rich_graph.run(Mixed(5, fail_at=2), state=RichState(), persistence=DurablePersistence(store, run_id))
    except RuntimeError as err:
        assert str(err) == "asked to fail at 2"
    else:
        raise AssertionError("the node's exception must propagate")
    (info,) = [i for i in await store.runs() if i.run_id == run_id]
    assert (info.status, info.last_node) == (RunStatus.FAILED, "Fail"), f"a failed run must be failed, got {info}"
    reader: DurablePersistence[RichState, Point] = DurablePersistence(store, run_id)
    reader.set_graph_types(rich_graph)
    failed = [s for s in await reader.load_all() if isinstance(s, NodeSnapshot) and s.status == "error"]
    assert [type(f.node).__name__ for f in failed] == ["Fail"], "exactly the failing step must be `error`"
    try:
        await rich_graph.resume(DurablePersistence(store, run_id))
    except RuntimeError as err:
        assert str(err) == "asked to fail at 2", "resuming retries the failed step"
    statuses = [s.status for s in await reader.load_all() if isinstance(s, NodeSnapshot)]
    assert statuses.count("error") == 1 and statuses[-1] == "error"


async def check_resume_finishes_each_step_once(store: RunStore) -> None:
    """A run stopped between steps resumes where it stopped; an ended run cannot resume."""
    run_id = f"resume-{new_hex_id()}"
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, run_id)
    async with count_graph.iter(CountTo(5), state=CrashState(), persistence=persistence) as run:
        await run.next()
        await run.next()  # two steps, then this driver stops
    resumed = DurablePersistence(store, run_id)
    async with count_graph.iter_from_persistence(resumed) as run:
        assert run.state == CrashState(count=2), "resume must start from the state after the last step"
        async for _ in run:
            pass
    assert run.result is not None and run.result.output == 5
    (info,) = [i for i in await store.runs() if i.run_id == run_id]
    assert (info.status, info.steps) == (RunStatus.ENDED, 6), f"each step must be recorded once, got {info}"
    try:
        await count_graph.resume(DurablePersistence(store, run_id))
    except RunEnded as err:
        assert run_id in str(err)
    else:
        raise AssertionError("resuming an ended run must raise RunEnded")


async def check_one_driver(store: RunStore) -> None:
    """Two drivers of one run: the second is refused with `RunLocked`; the run is intact."""
    run_id = f"drivers-{new_hex_id()}"
    await count_graph.initialize(CountTo(3), DurablePersistence(store, run_id), state=CrashState())
    async with count_graph.iter_from_persistence(DurablePersistence(store, run_id)) as first:
        try:
            async with count_graph.iter_from_persistence(DurablePersistence(store, run_id)):
                raise AssertionError("a second driver must be refused")
        except RunLocked:
            pass
        async for _ in first:
            pass
    assert first.result is not None and first.result.output == 3
    try:
        await count_graph.run(CountTo(3), state=CrashState(), persistence=DurablePersistence(store, run_id))
    except RunExists:
        pass
    else:
        raise AssertionError("starting a new run under a stored run's id must raise RunExists")


async def check_claim(store: RunStore) -> None:
    """`claim` hands a ready run to one claimer at a time and skips held and ended runs."""
    ready, busy, done = (f"{name}-{new_hex_id()}" for name in ("ready", "busy", "done"))
    await store.create(ready, [_record("tasks_scheduled", RunStatus.CREATED, "A")])
    await store.create(busy, [_record("tasks_scheduled", RunStatus.CREATED, "A")])
    await store.create(done, [_record("tasks_scheduled", RunStatus.CREATED, "A")])
    await store.append(done, [_record("step_finished", RunStatus.ENDED, "A", step=True)])
    async with store.lock(busy):
        claimed = await store.claim()
        assert claimed == ready, f"claim must pick the ready, unheld run, got {claimed!r}"
        assert await store.claim() is None, "a claimed run must not be handed out again"
        async with store.lock(ready):  # takes the claim over
            pass
    await store.release_claim(ready)  # nothing left to release: a no-op
    again = await store.claim()
    assert again in (ready, busy), "a released run can be claimed again"
    await store.release_claim(again)


async def check_builder_run_cut_off_mid_map(store: RunStore) -> None:
    """A builder run that fails mid-map resumes with only the unfinished items; a fork mid-map finishes alike."""
    run_id = f"map-{new_hex_id()}"
    expected = sum(i**3 for i in range(12))
    first = FailPlan(fail_at=7)
    try:
        await map_graph.run(inputs=12, deps=first, store=store, run_id=run_id)
    except RuntimeError as err:
        assert str(err) == "asked to fail at item 7", f"the step's own exception must propagate, got {err!r}"
    else:
        raise AssertionError("the failing item's exception must propagate")
    (info,) = [i for i in await store.runs() if i.run_id == run_id]
    assert (info.status, info.graph) == (RunStatus.FAILED, "map_graph"), f"a failed builder run is failed: {info}"
    again = FailPlan()
    assert await map_graph.resume(store, run_id, deps=again) == expected, "the resumed run must finish the sum"
    finished_before = {item for item, count in first.calls.items() if count and item != 7}
    rerun = {item for item in again.calls if item in finished_before}
    assert len(rerun) <= 1, f"items that finished before the failure ran again: {sorted(rerun)}"
    assert 7 in again.calls, "the failed item runs again"
    (info,) = [i for i in await store.runs() if i.run_id == run_id]
    assert info.status == RunStatus.ENDED, f"the resumed run must end, got {info}"
    forked = await map_graph.fork(store, run_id, 6)
    assert await map_graph.resume(store, forked, deps=FailPlan()) == expected, "a fork mid-map finishes alike"
    try:
        await map_graph.resume(store, run_id, deps=FailPlan())
    except RunEnded:
        pass
    else:
        raise AssertionError("resuming an ended builder run must raise RunEnded")


async def check_graph_names(store: RunStore) -> None:
    """A run's graph name, written on its first record, comes back with it, in `runs()`, and filters `claim`."""
    orders, fan_out, unnamed = (f"{name}-{new_hex_id()}" for name in ("orders", "fan-out", "unnamed"))
    first = _record("tasks_scheduled", RunStatus.CREATED, "A")
    await store.create(orders, [StoredRecord(**{**_fields(first), "graph": "orders"})])
    await store.create(fan_out, [StoredRecord(**{**_fields(first), "graph": "fan_out"})])
    await store.create(unnamed, [first])
    await store.append(orders, [_record("step_started", RunStatus.RUNNING, "A", n=1)])
    stored = await store.read(orders)
    assert [r.graph for r in stored] == ["orders", None], f"the graph name is on the first record only: {stored!r}"
    assert (await store.read(unnamed))[0].graph is None, "a run created without a graph name has none"
    names = {info.run_id: info.graph for info in await store.runs()}
    assert names == {orders: "orders", fan_out: "fan_out", unnamed: None}, f"runs() reports graph names: {names!r}"
    claimed = await store.claim(graphs=["fan_out"])
    assert claimed == fan_out, f"claim(graphs=['fan_out']) must pick the fan_out run, got {claimed!r}"
    assert await store.claim(graphs=["fan_out", "other"]) is None, "no other fan_out run is ready"
    anonymous = await store.claim(graphs=[None])
    assert anonymous == unnamed, f"claim(graphs=[None]) picks runs recorded without a name, got {anonymous!r}"
    for run_id in (claimed, anonymous):
        await store.release_claim(run_id)


async def check_list_page_and_delete(store: RunStore) -> None:
    """`runs()` pages with `limit` and `cursor` and filters by start; `delete` removes a run, and refuses a held one."""
    prefix = f"page-{new_hex_id()}"
    ids = [f"{prefix}-{n}" for n in range(3)]
    for n, run_id in enumerate(ids):
        await store.create(run_id, [_record("tasks_scheduled", RunStatus.CREATED, "A", n=n)])
    listed = [i.run_id for i in await store.runs() if i.run_id.startswith(prefix)]
    assert listed == ids, f"runs() lists runs oldest first: {listed!r}"
    first = await store.runs(limit=1, cursor=ids[0])
    assert [i.run_id for i in first] == [ids[1]], "runs(cursor=...) goes on after the cursor's run"
    started = {i.run_id: i.started_at for i in await store.runs()}
    since = [i.run_id for i in await store.runs(since=started[ids[1]]) if i.run_id.startswith(prefix)]
    assert since == ids[1:], f"runs(since=...) lists the runs started from then on: {since!r}"
    async with store.lock(ids[0]):
        try:
            await store.delete(ids[0])
        except RunLocked:
            pass
        else:
            raise AssertionError("delete() must refuse a run a driver holds (RunLocked)")
    await store.delete(ids[0])
    try:
        await store.read(ids[0])
    except RunNotFound:
        pass
    else:
        raise AssertionError("a deleted run must be gone (RunNotFound)")
    assert ids[0] not in {i.run_id for i in await store.runs()}, "a deleted run must not be listed"


def _fields(record: StoredRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in StoredRecord.__dataclass_fields__}


CHECKS: tuple[Callable[[RunStore], Awaitable[None]], ...] = (
    check_records_in_order,
    check_missing_and_duplicate_runs,
    check_status_transitions,
    check_lock,
    check_rich_round_trip,
    check_failure_recorded_and_resumable,
    check_resume_finishes_each_step_once,
    check_one_driver,
    check_claim,
    check_graph_names,
    check_builder_run_cut_off_mid_map,
    check_list_page_and_delete,
)
"""Every check of the suite; each takes a fresh store."""


async def check_store(make_store: StoreFactory) -> None:
    """Run the whole conformance suite, each check on a fresh store from `make_store`.

    Raises:
        AssertionError: the store broke the `RunStore` contract; the message says how.
    """
    for check in CHECKS:
        made = make_store()
        store = await made if inspect.isawaitable(made) else made
        try:
            await check(store)
        except AssertionError as err:
            raise AssertionError(f"{check.__name__}: {err}") from err
        finally:
            await store.aclose()
