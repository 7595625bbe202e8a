"""Durable runs killed with SIGKILL at random moments resume without losing or repeating a step."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from railyard.builder._durable import builder_codec
from railyard.durable import read_run
from railyard.store.codec import RecordCodec
from railyard.store.records import StepFinished
from railyard.store.urls import open_store
from railyard.testing._sample import CrashState, FanOutState, crash_graph, fan_out_graph
from railyard.testing.crash import crash_test

pytestmark = pytest.mark.anyio

TRIALS = 20


@pytest.mark.parametrize("kind", ["file", "sqlite", "postgres"])
async def test_kill_and_resume(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "postgres":
        url = request.getfixturevalue("new_postgres_database")()
    else:
        url = f"file://{tmp_path}/runs" if kind == "file" else f"sqlite:///{tmp_path}/runs.db"
    report = await crash_test("railyard.testing._sample:crash_subject", url, trials=TRIALS, workdir=tmp_path, seed=7)
    assert report.steps == 301  # 300 ticks and the step that ends the run
    assert len(report.trials) == TRIALS
    # the kills must really land mid-run, or the test proves nothing
    assert report.kills_mid_run >= TRIALS // 2, report

    # the side effect of each step, keyed by its step id: a step ran twice only if it was
    # in flight when its process was killed; every finished step ran
    store = open_store(url)
    codec = RecordCodec(crash_graph.get_nodes(), CrashState, int)
    for index, trial in enumerate(report.trials):
        effects = Counter((tmp_path / f"trial-{index}" / "effects.log").read_text().split())
        twice = {step for step, count in effects.items() if count > 1}
        assert twice <= set(trial.restarted_steps), (index, twice, trial)
        assert max(effects.values()) <= 2
        records = await read_run(store, trial.run_id, codec)
        finished = [r for r in records if isinstance(r, StepFinished) and r.task_id]
        assert {r.task_id for r in finished[:-1]} == set(effects)  # the last step ends the run: no effect
        assert finished[-1].state == CrashState(count=300, checksum=finished[-1].state.checksum)
    await store.aclose()


@pytest.mark.parametrize("kind", ["file", "sqlite", "postgres"])
async def test_kill_and_resume_a_builder_fan_out(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if kind == "postgres":
        url = request.getfixturevalue("new_postgres_database")()
    else:
        url = f"file://{tmp_path}/runs" if kind == "file" else f"sqlite:///{tmp_path}/runs.db"
    report = await crash_test("railyard.testing._sample:fan_out_subject", url, trials=TRIALS, workdir=tmp_path, seed=11)
    # start, numbers, the map, its 150 squares, their 150 arrivals at the join, finish, end
    # (the join's closing is a record of its own, not a step)
    assert report.steps == 1 + 1 + 1 + 150 + 150 + 1 + 1
    assert len(report.trials) == TRIALS
    assert report.kills_mid_run >= TRIALS // 2, report

    # every map item's side effect happened; one happened twice only if its step was in flight at the kill
    store = open_store(url)
    codec = builder_codec(fan_out_graph)
    for index, trial in enumerate(report.trials):
        effects = Counter((tmp_path / f"trial-{index}" / "effects.log").read_text().split())
        assert len(effects) == 150, (index, trial)
        twice = {step for step, count in effects.items() if count > 1}
        assert twice <= set(trial.restarted_steps), (index, twice, trial)
        records = await read_run(store, trial.run_id, codec)
        ended = [r for r in records if isinstance(r, StepFinished) and r.end is not None]
        assert len(ended) == 1 and ended[0].end is not None and ended[0].end.data == sum(i * i for i in range(150))
        assert ended[0].state == FanOutState(squared=150, total=sum(i * i for i in range(150)))
    await store.aclose()
