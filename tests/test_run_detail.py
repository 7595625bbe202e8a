"""`store.run(run_id)`: one run in full, on every store: its error and traceback, attempts, waits, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, RetryPolicy
from railyard.exceptions import RunNotFound
from railyard.store import RunStatus, RunStore
from railyard.suspension import RunSuspended, cancel
from tests.support.stores import open_test_store
from tests.test_suspension import OrderState, Review, orders

pytestmark = pytest.mark.anyio


@dataclass
class Broken(BaseNode[None, None, int]):
    retry_policy: ClassVar[RetryPolicy | None] = RetryPolicy(attempts=3, initial_interval=0.001)

    async def run(self, ctx: GraphRunContext) -> End[int]:
        raise ValueError(f"bad input on attempt {ctx.attempt}")


broken = Graph(nodes=[Broken], name="broken")


@pytest.fixture(params=["memory", "sqlite", "file", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunStore]:
    made = open_test_store(request.param, tmp_path, request)
    yield made
    await made.aclose()  # type: ignore[attr-defined]


async def test_a_failed_run_shows_its_error_with_the_traceback_and_its_attempts(store: RunStore) -> None:
    with pytest.raises(ValueError, match="attempt 3"):
        await broken.run(Broken(), store=store, run_id="b")
    detail = await store.run("b")
    assert detail.info.status is RunStatus.FAILED and detail.info.graph == "broken"
    assert detail.error is not None
    assert (detail.error.type, detail.error.message) == ("builtins.ValueError", "bad input on attempt 3")
    assert 'raise ValueError(f"bad input on attempt {ctx.attempt}")' in detail.error.traceback
    assert detail.attempts == 2  # two attempts ran again before the last one failed
    assert detail.updated_at is not None and detail.info.started_at is not None
    assert detail.updated_at >= detail.info.started_at
    assert detail.waiting_for == () and detail.cancel_reason is None


async def test_a_suspended_run_shows_what_it_waits_for_and_a_cancelled_one_why(store: RunStore) -> None:
    with pytest.raises(RunSuspended):
        await orders.run(Review(), state=OrderState(), store=store, run_id="o")
    detail = await store.run("o")
    assert (detail.info.status, detail.waiting_for, detail.error) == (RunStatus.SUSPENDED, ("approval",), None)
    await cancel(store, "o", "withdrawn")
    detail = await store.run("o")
    assert (detail.info.status, detail.cancel_reason, detail.waiting_for) == (RunStatus.CANCELLED, "withdrawn", ())


async def test_an_unknown_run_is_run_not_found(store: RunStore) -> None:
    with pytest.raises(RunNotFound):
        await store.run("nope")


async def test_a_fan_out_that_failed_keeps_its_error_when_siblings_finished_after_it(tmp_path: Path) -> None:
    from railyard.store.sqlite import SqliteStore
    from tests.cli_graphs_live import one_fails

    store = SqliteStore(tmp_path / "runs.db")
    with pytest.raises(ValueError, match="seven is right out"):
        await one_fails.run(inputs=20, store=store, run_id="f")
    records = await store.read("f")
    failed_at = max(i for i, r in enumerate(records) if r.kind == "step_failed")
    assert any(r.kind == "step_finished" for r in records[failed_at:])  # branches that were running finished too
    detail = await store.run("f")
    assert detail.info.status is RunStatus.FAILED
    assert detail.error is not None and detail.error.message == "seven is right out"
    await store.aclose()
