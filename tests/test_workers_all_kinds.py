"""Workers drive node, builder and agent runs from one store, each run by the graph its record names."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from railyard.agent import Agent
from railyard.agent._graph import agent_graph
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.builder._durable import builder_codec
from railyard.durable import read_run
from railyard.exceptions import RunExists
from railyard.store import RunStatus, RunStore
from railyard.store.codec import RecordCodec
from railyard.store.memory import MemoryStore
from railyard.store.records import RunRecord, StepFinished, StepStarted, TasksScheduled
from railyard.store.urls import open_store
from railyard.testing._sample import CountTo, CrashState, FanOutState, count_graph, fan_out_graph
from railyard.worker import run_worker
from tests.support.worker_subjects import support_agent

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent

WORKER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from tests.support.worker_subjects import work

print(" ".join(asyncio.run(work(sys.argv[1], Path(sys.argv[2])))))
"""

WORKERS = 3
RUNS_OF_EACH = 6
COUNT_TO = 10  # steps of each node run
ITEMS = 20  # map items of each builder run


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        make: Callable[[], str] = request.getfixturevalue("new_postgres_database")
        return make()
    return f"sqlite:///{tmp_path}/runs.db"


async def test_workers_drive_node_builder_and_agent_runs_of_one_store(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    graph_of: dict[str, str] = {}
    for index in range(RUNS_OF_EACH):
        run_id = await count_graph.initialize(
            CountTo(COUNT_TO), store=store, run_id=f"count-{index}", state=CrashState()
        )
        assert run_id is not None
        graph_of[run_id] = "count_graph"
        run_id = await fan_out_graph.initialize(store, f"fan-out-{index}", state=FanOutState(), inputs=ITEMS)
        graph_of[run_id] = "fan_out_graph"
        run_id = await support_agent.initialize(f"question-{index}", store=store, run_id=f"agent-{index}")
        graph_of[run_id] = "support_agent"

    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, store_url, str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "Traceback" not in err, err  # a run that failed is logged, not raised
    driven = [run_id for out, _ in outputs for run_id in out.split()]
    assert sorted(driven) == sorted(graph_of), "every run driven, each by exactly one worker"

    infos = await store.runs()
    assert {info.run_id: (info.graph, info.status) for info in infos} == {
        run_id: (graph, RunStatus.ENDED) for run_id, graph in graph_of.items()
    }

    node_codec = RecordCodec(count_graph.get_nodes(), CrashState, int)
    builder = builder_codec(fan_out_graph)
    agent_codec = RecordCodec(agent_graph.get_nodes(), *agent_graph.inferred_types)
    squares: Counter[str] = Counter()
    for index in range(RUNS_OF_EACH):
        assert _output(await _records(store, f"count-{index}", node_codec)) == COUNT_TO
        records = await _records(store, f"fan-out-{index}", builder)
        assert _output(records) == sum(item * item for item in range(ITEMS))
        squares.update(_finished_steps_of(records, "square"))
        final = _output(await _records(store, f"agent-{index}", agent_codec))
        assert (final.data, final.tool_name) == (f"found QUESTION-{index}", None)

    # every map item's side effect happened exactly once, keyed by its step id (which
    # builder runs number alike, so the file holds each id once per run)
    assert sum(squares.values()) == RUNS_OF_EACH * ITEMS
    assert Counter((tmp_path / "fan_out.log").read_text().splitlines()) == squares
    lookups = Counter((tmp_path / "agent.log").read_text().splitlines())
    assert lookups == Counter(f"look_up question-{index}" for index in range(RUNS_OF_EACH))
    await store.aclose()


async def _records(store: RunStore, run_id: str, codec: RecordCodec) -> list[RunRecord]:
    """The run's records, after checking that each of its steps started once and finished once."""
    records = await read_run(store, run_id, codec)
    started = Counter(r.task_id for r in records if isinstance(r, StepStarted))
    finished = Counter(r.task_id for r in records if isinstance(r, StepFinished))
    # (a join's closing is a finished step that never started: it runs inline)
    assert set(started.values()) == set(finished.values()) == {1} and started.keys() <= finished.keys(), run_id
    return records


def _output(records: Sequence[RunRecord]) -> Any:
    ended = [r for r in records if isinstance(r, StepFinished) and r.end is not None]
    assert len(ended) == 1 and ended[0].end is not None
    return ended[0].end.data


def _finished_steps_of(records: Sequence[RunRecord], node_id: str) -> list[str]:
    node_of: dict[str, str] = {}
    for record in records:
        tasks = record.tasks if isinstance(record, TasksScheduled) else getattr(record, "next_tasks", ())
        node_of.update((task.task_id, task.node_id) for task in tasks)
    return [r.task_id for r in records if isinstance(r, StepFinished) and node_of.get(r.task_id) == node_id]


# -- an agent's runs are recorded under its name ----------------------------------------


def _answering(text: str) -> FunctionModel:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(text)])

    return FunctionModel(model)


async def test_two_agents_record_their_runs_under_their_own_names() -> None:
    store = MemoryStore()
    triage = Agent(_answering("triaged"), name="triage")
    billing = Agent(_answering("billed"), name="billing")
    await triage.run("q", store=store, run_id="t")
    await billing.run("q", store=store, run_id="b")
    assert {info.run_id: info.graph for info in await store.runs()} == {"t": "triage", "b": "billing"}


async def test_an_unnamed_agent_records_the_name_it_infers_else_the_graphs() -> None:
    store = MemoryStore()
    helper = Agent(_answering("ok"))
    await helper.run("q", store=store, run_id="inferred")
    assert helper.name == "helper"
    anonymous = Agent(_answering("ok"))
    await anonymous.run("q", store=store, run_id="not-inferred", infer_name=False)
    assert anonymous.name is None
    forked = await helper.fork(store, "inferred", 1)
    assert {info.run_id: info.graph for info in await store.runs()} == {
        "inferred": "helper",
        "not-inferred": "agent",
        forked: "helper",
    }


async def test_a_worker_tells_two_agents_runs_apart() -> None:
    store = MemoryStore()
    triage = Agent(_answering("triaged"), name="triage")
    billing = Agent(_answering("billed"), name="billing")
    made = [await triage.initialize("q", store=store), await billing.initialize("q", store=store, run_id="b-1")]
    assert made[1] == "b-1"
    with pytest.raises(RunExists):
        await billing.initialize("again", store=store, run_id="b-1")
    assert [(info.graph, info.status) for info in await store.runs()] == [
        ("triage", RunStatus.CREATED),
        ("billing", RunStatus.CREATED),
    ]
    assert sorted(await run_worker([billing, triage], store)) == sorted(made)
    codec = RecordCodec(agent_graph.get_nodes(), *agent_graph.inferred_types)
    outputs = [_output(await read_run(store, run_id, codec)).data for run_id in made]
    assert outputs == ["triaged", "billed"]
