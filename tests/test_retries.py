"""Retry policies and per-attempt timeouts, on node and builder runs, in memory and in a store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, SqliteStore
from railyard.builder import GraphBuilder, StepContext, reduce_list_append
from railyard.durable import read_run
from railyard.persistence.in_mem import FullStatePersistence
from railyard.retries import NonRetryable, RetryPolicy, StepTimeout
from railyard.store.codec import RecordCodec
from railyard.store.records import RunStatus, StepFailed, StepFinished

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=3, initial_interval=0.001, jitter=0)


@dataclass
class Calls:
    attempts: list[tuple[int, str]] = field(default_factory=list[tuple[int, str]])


@dataclass
class FailsTwice(BaseNode[Calls, None, int]):
    retry_policy: ClassVar[RetryPolicy | None] = FAST

    async def run(self, ctx: GraphRunContext[Calls]) -> End[int]:
        ctx.state.attempts.append((ctx.attempt, ctx.step_id))
        if ctx.attempt < 3:
            raise ValueError(f"attempt {ctx.attempt} failed")
        return End(ctx.attempt)


fails_twice = Graph(nodes=[FailsTwice])


# -- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, r"RetryPolicy\(attempts=0\): attempts must be at least 1"),
        ({"initial_interval": -1}, r"RetryPolicy\(initial_interval=-1\): must not be negative"),
        ({"backoff": 0.5}, r"RetryPolicy\(backoff=0.5\): backoff must be at least 1"),
        ({"jitter": 2}, r"RetryPolicy\(jitter=2\): jitter must be between 0 and 1"),
    ],
)
def test_a_policy_out_of_range_names_the_figure(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_the_wait_grows_by_the_backoff_up_to_the_max_and_spreads_by_the_jitter() -> None:
    policy = RetryPolicy(attempts=10, initial_interval=1, backoff=2, max_interval=5, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    spread = RetryPolicy(initial_interval=10, jitter=0.1)
    assert all(9 <= spread.delay(1) <= 11 for _ in range(200))


def test_which_errors_are_retried() -> None:
    policy = RetryPolicy(attempts=3, retry_on=(ConnectionError,))
    assert policy.retries(ConnectionResetError(), 1)
    assert not policy.retries(ConnectionError(), 3)  # the last attempt
    assert not policy.retries(ValueError(), 1)
    assert not RetryPolicy().retries(NonRetryable("no"), 1)
    wrapped = ConnectionError("down")
    wrapped.__cause__ = NonRetryable("the account is closed")
    assert not policy.retries(wrapped, 1)


# -- node runs --------------------------------------------------------------------------------------


async def test_a_node_failing_twice_runs_three_times_with_the_same_step_id() -> None:
    calls = Calls()
    result = await fails_twice.run(FailsTwice(), state=calls)
    assert result.output == 3
    assert [attempt for attempt, _ in calls.attempts] == [1, 2, 3]
    assert len({step_id for _, step_id in calls.attempts}) == 1


async def test_each_attempt_is_in_the_log_with_its_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await fails_twice.run(FailsTwice(), state=Calls(), store=store, run_id="r")
    records = await read_run(store, "r", RecordCodec(fails_twice.get_nodes(), Calls, int))
    failed = [r for r in records if isinstance(r, StepFailed)]
    assert [(r.attempt, r.error.type, r.error.message) for r in failed] == [
        (1, "builtins.ValueError", "attempt 1 failed"),
        (2, "builtins.ValueError", "attempt 2 failed"),
    ]
    assert all(r.retry_at is not None for r in failed)
    assert any(isinstance(r, StepFinished) and r.end is not None for r in records)
    (info,) = await store.runs()
    assert info.status is RunStatus.ENDED
    await store.aclose()


async def test_the_last_attempt_s_error_is_the_step_s_and_is_final(tmp_path: Path) -> None:
    @dataclass
    class AlwaysFails(BaseNode[None, None, int]):
        retry_policy: ClassVar[RetryPolicy | None] = RetryPolicy(attempts=2, initial_interval=0.001)

        async def run(self, ctx: GraphRunContext) -> End[int]:
            raise KeyError(f"attempt {ctx.attempt}")

    graph = Graph(nodes=[AlwaysFails])
    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(KeyError, match="attempt 2"):
        await graph.run(AlwaysFails(), store=store, run_id="r")
    records = await read_run(store, "r", RecordCodec(graph.get_nodes(), type(None), int))
    failed = [(r.attempt, r.retry_at is None) for r in records if isinstance(r, StepFailed)]
    assert failed == [(1, False), (2, True)]
    (info,) = await store.runs()
    assert info.status is RunStatus.FAILED
    await store.aclose()


async def test_non_retryable_fails_at_once() -> None:
    tries: list[int] = []

    @dataclass
    class Refused(BaseNode[None, None, int]):
        retry_policy: ClassVar[RetryPolicy | None] = FAST

        async def run(self, ctx: GraphRunContext) -> End[int]:
            tries.append(ctx.attempt)
            raise NonRetryable("the card was declined")

    with pytest.raises(NonRetryable, match="the card was declined"):
        await Graph(nodes=[Refused]).run(Refused())
    assert tries == [1]


async def test_the_graph_s_policy_applies_to_nodes_without_their_own() -> None:
    tries: list[int] = []

    @dataclass
    class Plain(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            tries.append(ctx.attempt)
            if ctx.attempt == 1:
                raise OSError("flaky disk")
            return End(ctx.attempt)

    assert (await Graph(nodes=[Plain], retry_policy=FAST).run(Plain())).output == 2
    with pytest.raises(OSError, match="flaky disk"):
        await Graph(nodes=[Plain]).run(Plain())  # no policy anywhere: one attempt


async def test_an_attempt_over_its_timeout_is_cancelled_and_retried() -> None:
    @dataclass
    class Slow(BaseNode[None, None, int]):
        step_timeout: ClassVar[float | None] = 0.05
        retry_policy: ClassVar[RetryPolicy | None] = FAST

        async def run(self, ctx: GraphRunContext) -> End[int]:
            if ctx.attempt == 1:
                await anyio.sleep_forever()
            return End(ctx.attempt)

    assert (await Graph(nodes=[Slow]).run(Slow())).output == 2

    @dataclass
    class Stuck(BaseNode[None, None, int]):
        step_timeout: ClassVar[float | None] = 0.02

        async def run(self, ctx: GraphRunContext) -> End[int]:
            await anyio.sleep_forever()
            raise AssertionError  # pragma: no cover

    with pytest.raises(StepTimeout, match=r"^Step `Stuck` timed out after 0.02 s"):
        await Graph(nodes=[Stuck]).run(Stuck())


async def test_a_run_stopped_mid_retry_resumes_at_the_attempt_it_had_reached(tmp_path: Path) -> None:
    second_started = anyio.Event()
    seen: list[int] = []

    @dataclass
    class Charge(BaseNode[None, None, int]):
        retry_policy: ClassVar[RetryPolicy | None] = FAST

        async def run(self, ctx: GraphRunContext) -> End[int]:
            seen.append(ctx.attempt)
            if ctx.attempt == 1:
                raise ConnectionError("gateway down")
            if len(seen) == 2:  # the first process: it dies during attempt 2
                second_started.set()
                await anyio.sleep_forever()
            return End(ctx.attempt)

    graph = Graph(nodes=[Charge])
    store = SqliteStore(tmp_path / "runs.db")

    async def first_process() -> None:
        await graph.run(Charge(), store=store, run_id="r")

    async with anyio.create_task_group() as group:
        group.start_soon(first_process)
        await second_started.wait()
        group.cancel_scope.cancel()
    assert (await graph.resume(store, "r")).output == 2  # attempt 2 again, not attempt 1
    assert seen == [1, 2, 2]
    await store.aclose()


async def test_retries_record_into_an_in_memory_persistence() -> None:
    sp = FullStatePersistence()
    assert (await fails_twice.run(FailsTwice(), state=Calls(), persistence=sp)).output == 3
    assert [getattr(s, "status", "end") for s in sp.history] == ["success", "end"]


# -- builder runs ------------------------------------------------------------------------------------------


async def test_map_items_retry_in_place_and_no_sibling_is_cancelled() -> None:
    g = GraphBuilder(input_type=list[int], output_type=list[int])
    runs: dict[int, list[int]] = {}

    @g.step(retry_policy=RetryPolicy(attempts=2, initial_interval=0.001))
    async def work(ctx: StepContext[None, None, int]) -> int:
        runs.setdefault(ctx.inputs, []).append(ctx.attempt)
        if ctx.inputs % 40 == 7 and ctx.attempt == 1:
            raise TimeoutError(f"item {ctx.inputs}")
        return ctx.inputs

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(g.edge_from(g.start_node).map().to(work), g.edge_from(work).to(collect), g.edge_from(collect).to(g.end_node))
    graph = g.build()
    assert sorted(await graph.run(inputs=list(range(200)))) == list(range(200))
    assert {item: tries for item, tries in runs.items() if tries != [1]} == {i: [1, 2] for i in range(7, 200, 40)}
    assert sum(len(tries) for tries in runs.values()) == 205  # 200 items, 5 of them twice


async def test_the_builder_s_default_policy_and_timeout() -> None:
    g = GraphBuilder(output_type=int, retry_policy=FAST, step_timeout=0.05)

    @g.step
    async def hang_once(ctx: StepContext[None, None, None]) -> int:
        if ctx.attempt == 1:
            await anyio.sleep_forever()
        return ctx.attempt

    g.add(g.edge_from(g.start_node).to(hang_once), g.edge_from(hang_once).to(g.end_node))
    assert await g.build().run() == 2


# -- map(on_error="collect") ----------------------------------------------------------------------------------


def _collecting_graph(fails: set[int], *, retry: RetryPolicy | None = None) -> Any:
    g = GraphBuilder(input_type=list[int], output_type=list[Any], name="collecting")

    @g.step(retry_policy=retry)
    async def work(ctx: StepContext[None, None, int]) -> int:
        if ctx.inputs in fails:
            raise LookupError(f"no price for item {ctx.inputs}")
        return ctx.inputs * 10

    @g.step
    async def label(ctx: StepContext[None, None, int]) -> str:
        return f"#{ctx.inputs}"

    collect = g.join(reduce_list_append, initial_factory=list[Any])
    g.add(
        g.edge_from(g.start_node).map(on_error="collect").to(work),
        g.edge_from(work).to(label),
        g.edge_from(label).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    return g.build()


async def test_collect_keeps_the_failed_items_with_their_index_and_the_others_go_on() -> None:
    from railyard.builder import ItemFailure

    graph = _collecting_graph({3, 11})
    out = await graph.run(inputs=[i * 2 for i in range(20)])  # items 0, 2, 4, ...: 3 and 11 never come; 22 does
    assert sorted(v for v in out if isinstance(v, str)) == sorted(f"#{i * 20}" for i in range(20))
    graph = _collecting_graph({4, 30})
    out = await graph.run(inputs=[i * 2 for i in range(20)])
    failures = sorted((v for v in out if isinstance(v, ItemFailure)), key=lambda f: f.index)
    assert [(f.index, f.inputs, f.step, f.error_type, f.message) for f in failures] == [
        (2, 4, "work", "builtins.LookupError", "no price for item 4"),
        (15, 30, "work", "builtins.LookupError", "no price for item 30"),
    ]
    assert len([v for v in out if isinstance(v, str)]) == 18


async def test_collect_retries_first_and_keeps_only_the_last_failure(tmp_path: Path) -> None:
    from railyard.builder import ItemFailure

    graph = _collecting_graph({5}, retry=RetryPolicy(attempts=2, initial_interval=0.001))
    store = SqliteStore(tmp_path / "runs.db")
    out = await graph.run(inputs=list(range(8)), store=store, run_id="c")
    (failure,) = [v for v in out if isinstance(v, ItemFailure)]
    assert (failure.index, failure.message) == (5, "no price for item 5")
    (info,) = await store.runs()
    assert info.status is RunStatus.ENDED  # a collected failure does not fail the run
    from railyard.builder._durable import builder_codec

    records = await read_run(store, "c", builder_codec(graph))
    assert [r.attempt for r in records if isinstance(r, StepFailed)] == [
        1
    ]  # the retried attempt; the last one is collected
    await store.aclose()


def test_on_error_takes_raise_or_collect() -> None:
    g = GraphBuilder(input_type=list[int])
    with pytest.raises(ValueError, match=r"map\(on_error='skip'\): on_error must be 'raise' or 'collect'"):
        g.edge_from(g.start_node).map(on_error="skip")  # type: ignore[arg-type]


async def test_a_collected_failure_is_replayed_into_its_join_on_resume(tmp_path: Path) -> None:
    from railyard.builder import ItemFailure

    graph = _collecting_graph({1})
    store = SqliteStore(tmp_path / "runs.db")
    async with graph.iter(inputs=[0, 1, 2, 3], store=store, run_id="r") as run:
        async for tasks in run:
            if any(task.node_id == "label" for task in tasks):
                break  # some branches (item 1's failure among them) have gone on: the process "dies"
    out = await graph.resume(store, "r")
    (failure,) = [v for v in out if isinstance(v, ItemFailure)]  # read back as an ItemFailure, not a dict
    assert (failure.index, failure.inputs) == (1, 1)
    assert sorted(v for v in out if isinstance(v, str)) == ["#0", "#20", "#30"]
    await store.aclose()
