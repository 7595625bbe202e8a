"""Logging: `railyard.*` loggers, silent by default, each record naming its run (and step) in `extra`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

import railyard
from railyard import BaseNode, End, Graph, GraphRunContext, RetryPolicy, run_worker
from railyard.builder import GraphBuilder, StepContext
from railyard.store.memory import MemoryStore
from railyard.suspension import RunSuspended
from tests.graphs import Increment, MyState, never_42_graph

pytestmark = pytest.mark.anyio


def _about(caplog: pytest.LogCaptureFixture, run_id: str) -> list[tuple[str, int, str, str | None]]:
    """(logger, level, message, step id) of every record about run `run_id`."""
    return [
        (r.name, r.levelno, r.getMessage(), r.__dict__["railyard_step_id"])
        for r in caplog.records
        if r.__dict__.get("railyard_run_id") == run_id
    ]


def test_silent_by_default() -> None:
    assert railyard.__name__ == "railyard"
    root = logging.getLogger("railyard")
    assert [type(h) for h in root.handlers] == [logging.NullHandler]  # no output unless the application asks
    assert root.propagate and root.level == logging.NOTSET


async def test_a_durable_run_logs_its_start_and_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="railyard")
    await never_42_graph.run(Increment(), state=MyState(1), store=MemoryStore(), run_id="log-1")
    records = _about(caplog, "log-1")
    assert ("railyard.run", logging.INFO, "run log-1 started (graph never_42_graph)", None) in records
    ended = [r for r in records if r[2].startswith("run log-1 ended at step ")]
    assert len(ended) == 1 and ended[0][3] is not None and ended[0][3].startswith("Check42:")
    assert ("railyard.store", logging.DEBUG, "released the lock on run log-1", None) in records
    assert any(r[0] == "railyard.store" and r[2].startswith("took the lock on run log-1") for r in records)


async def test_a_failed_run_and_its_retries_are_logged_with_the_step(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="railyard")
    g = GraphBuilder(name="flaky", output_type=int)

    @g.step(retry_policy=RetryPolicy(attempts=2, initial_interval=0, jitter=0))
    async def flaky(ctx: StepContext[None, None, None]) -> int:
        raise ConnectionError("down")

    g.add(g.edge_from(g.start_node).to(flaky), g.edge_from(flaky).to(g.end_node))
    with pytest.raises(ConnectionError):
        await g.build().run(store=MemoryStore(), run_id="log-2")
    records = _about(caplog, "log-2")
    (retry,) = [r for r in records if "attempt 1 of step" in r[2]]
    assert retry[0] == "railyard.run" and retry[1] == logging.INFO and "ConnectionError" in retry[2]
    assert "the next is due in" in retry[2]
    (failed,) = [r for r in records if r[1] == logging.ERROR]
    assert failed[0] == "railyard.run" and failed[2].startswith("run log-2 failed: step ")
    assert failed[3] == retry[3] and "(flaky, attempt 2) raised ConnectionError: down" in failed[2]


@dataclass
class Ask(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        return End(await ctx.wait_for("answer", str))


asking = Graph(nodes=[Ask], name="asking")


async def test_suspension_claims_and_the_worker_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="railyard")
    store = MemoryStore()
    with pytest.raises(RunSuspended):
        await asking.run(Ask(), store=store, run_id="log-3")
    (suspended,) = [r for r in _about(caplog, "log-3") if "suspended" in r[2]]
    assert suspended[:3] == ("railyard.run", logging.INFO, "run log-3 suspended, waiting for answer")
    assert suspended[3] is not None and suspended[3].startswith("Ask:")

    await asking.initialize(Ask(), store=store, run_id="log-4")
    assert await run_worker([asking], store, max_runs=1) == ["log-4"]
    records = _about(caplog, "log-4")
    assert ("railyard.worker", logging.INFO, "claimed run log-4", None) in records
    assert ("railyard.worker", logging.DEBUG, "released the claim on run log-4", None) in records
    assert any(r[0] == "railyard.worker" and r[2] == "run log-4 is suspended: answer" for r in records)
    assert ("railyard.run", logging.INFO, "run log-4 resumed (graph asking)", None) in records
