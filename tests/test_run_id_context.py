"""`ctx.run_id` on every context: the durable run's id inside steps and tools, `None` in memory, kept on resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anyio.lowlevel
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, v0
from railyard.agent import Agent, ModelRequestNode, RunContext
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.builder import GraphBuilder, ReducerContext, StepContext
from railyard.durable import DurablePersistence
from railyard.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


class Crash(BaseException):
    """The process dies here (like SIGKILL: nothing after it runs)."""


@dataclass
class Seen:
    """What the steps of a run saw: `(where, ctx.run_id, ctx.step_id)` for each call."""

    calls: list[tuple[str, str | None, str]] = field(default_factory=list[tuple[str, str | None, str]])
    crash_on: int | None = None

    def run_ids(self, where: str | None = None) -> list[str | None]:
        return [run_id for name, run_id, _ in self.calls if where is None or name == where]


# -- the node API -----------------------------------------------------------------------


@dataclass
class Count(BaseNode[None, Seen, int]):
    n: int = 0

    async def run(self, ctx: GraphRunContext[None, Seen]) -> Count | End[int]:
        ctx.deps.calls.append((f"count {self.n}", ctx.run_id, ctx.step_id))
        return Count(self.n + 1) if self.n < 2 else End(self.n)


count_graph = Graph(nodes=[Count])


async def test_a_node_sees_none_in_memory() -> None:
    seen = Seen()
    async with count_graph.iter(Count(), deps=seen) as run:
        async for _node in run:
            pass
        assert run.run_id is None and run.ctx.run_id is None
    assert seen.run_ids() == [None, None, None]


@pytest.mark.parametrize(
    "spelling", [pytest.param("store", id="store="), pytest.param("persistence", id="persistence=")]
)
async def test_a_node_sees_the_durable_runs_id(tmp_path: Path, spelling: str) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    seen = Seen()
    if spelling == "store":
        result = await count_graph.run(Count(), deps=seen, store=store, run_id="r1")
    else:
        result = await count_graph.run(Count(), deps=seen, persistence=DurablePersistence(store, "r1"))
    assert result.output == 2
    assert seen.run_ids() == ["r1", "r1", "r1"]


async def test_a_node_sees_a_generated_run_id(tmp_path: Path) -> None:
    seen = Seen()
    async with count_graph.iter(Count(), deps=seen, store=SqliteStore(tmp_path / "runs.db")) as run:
        async for _node in run:
            pass
        assert run.run_id is not None and run.ctx.run_id == run.run_id
    assert seen.run_ids() == [run.run_id] * 3


async def test_a_resumed_node_run_sees_the_same_run_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    first = Seen()
    async with count_graph.iter(Count(), deps=first, store=store, run_id="r1") as run:
        await run.next()  # one step, then the process goes away
    assert first.run_ids() == ["r1"]

    second = Seen()
    result = await count_graph.resume(store, "r1", deps=second)
    assert result.output == 2
    assert second.run_ids() == ["r1", "r1"]
    # (run_id, step_id) names each step once across the interrupted run and its resumption
    steps = [(run_id, step_id) for _, run_id, step_id in first.calls + second.calls]
    assert len(set(steps)) == 3


async def test_a_forked_node_run_sees_its_own_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    await count_graph.run(Count(), deps=Seen(), store=store, run_id="r1")
    branch = await count_graph.fork(store, "r1", at_step=1, new_run_id="r2")
    seen = Seen()
    await count_graph.resume(store, branch, deps=seen)
    assert seen.run_ids() == ["r2", "r2"]


@dataclass
class OldCount(v0.BaseNode[None, Seen, int]):
    async def run(self, ctx: v0.GraphRunContext[None, Seen]) -> End[int]:
        ctx.deps.calls.append(("old", ctx.run_id, ctx.step_id))
        return End(0)


async def test_a_v0_node_sees_the_run_id_too(tmp_path: Path) -> None:
    graph = v0.Graph(nodes=[OldCount])
    in_memory, durable = Seen(), Seen()
    await graph.run(OldCount(), deps=in_memory)
    await graph.run(OldCount(), deps=durable, store=SqliteStore(tmp_path / "runs.db"), run_id="r1")
    assert (in_memory.run_ids(), durable.run_ids()) == ([None], ["r1"])


def test_a_context_is_still_made_with_state_and_deps_alone() -> None:
    assert GraphRunContext(state=None, deps=1).run_id is None
    assert v0.GraphRunContext(None, 1).run_id is None
    assert StepContext(state=None, deps=None, inputs=1).run_id is None


# -- the builder API ----------------------------------------------------------------------


@dataclass
class Report(BaseNode[None, Seen, int]):
    total: int

    async def run(self, ctx: GraphRunContext[None, Seen]) -> End[int]:
        ctx.deps.calls.append(("node", ctx.run_id, ctx.step_id))
        return End(self.total)


def builder_graph():  # type: ignore[no-untyped-def]
    g = GraphBuilder(deps_type=Seen, input_type=list[int], output_type=int)

    @g.step
    async def square(ctx: StepContext[None, Seen, int]) -> int:
        await anyio.lowlevel.checkpoint()
        if ctx.inputs == ctx.deps.crash_on:
            raise Crash
        ctx.deps.calls.append(("square", ctx.run_id, ctx.step_id))
        return ctx.inputs * ctx.inputs

    def add(ctx: ReducerContext[int], current: int, inputs: int) -> int:
        ctx.deps.calls.append(("add", ctx.run_id, ""))
        return current + inputs

    def passed_on(ctx: StepContext[None, Seen, int]) -> int:
        ctx.deps.calls.append(("transform", ctx.run_id, ctx.step_id))
        return ctx.inputs

    @g.step
    async def report(ctx: StepContext[None, Seen, int]) -> Report:
        ctx.deps.calls.append(("report", ctx.run_id, ctx.step_id))
        return Report(ctx.inputs)

    total = g.join(add, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).map(max_concurrency=1).to(square),
        g.edge_from(square).to(total),
        g.edge_from(total).transform(passed_on).to(report),
        g.edge_from(report).to(Report),
        g.node(Report),
    )
    return g.build()


ITEMS = [1, 2, 3, 4]
WHERE = ["square"] * 4 + ["add"] * 4 + ["transform", "report", "node"]


async def test_a_builder_step_sees_none_in_memory() -> None:
    seen = Seen()
    assert await builder_graph().run(inputs=ITEMS, deps=seen) == 30
    assert sorted(name for name, _, _ in seen.calls) == sorted(WHERE)
    assert seen.run_ids() == [None] * len(WHERE)


async def test_a_builder_step_sees_the_durable_runs_id(tmp_path: Path) -> None:
    seen = Seen()
    store = SqliteStore(tmp_path / "runs.db")
    async with builder_graph().iter(inputs=ITEMS, deps=seen, store=store, run_id="r1") as run:
        async for _batch in run:
            pass
        assert run.run_id == "r1"
    assert seen.run_ids() == ["r1"] * len(WHERE)


async def test_a_resumed_builder_run_sees_the_same_run_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    graph = builder_graph()
    first = Seen(crash_on=3)
    with pytest.raises(Crash):
        await graph.run(inputs=ITEMS, deps=first, store=store, run_id="r1")
    assert first.run_ids("square") == ["r1", "r1"]

    second = Seen()
    assert await graph.resume(store, "r1", deps=second) == 30
    for where in ("square", "transform", "report", "node"):
        assert second.run_ids(where) and set(second.run_ids(where)) == {"r1"}, where


async def test_a_join_replayed_on_resume_sees_the_same_run_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    graph = builder_graph()
    with pytest.raises(Crash):
        await graph.run(inputs=ITEMS, deps=Seen(crash_on=3), store=store, run_id="r1")
    second = Seen()
    await graph.resume(store, "r1", deps=second)
    assert set(second.run_ids("add")) == {"r1"}


# -- the agent ------------------------------------------------------------------------------


def two_notes(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = sum(isinstance(part, ToolReturnPart) for message in messages for part in message.parts)
    if returns < 2:
        return ModelResponse(parts=[ToolCallPart("note", {}, f"c{returns + 1}")])
    return ModelResponse(parts=[TextPart("done")])


def note_agent() -> Agent[Seen, str]:
    agent = Agent(FunctionModel(two_notes), deps_type=Seen)

    @agent.system_prompt
    def prompt(ctx: RunContext[Seen]) -> str:
        ctx.deps.calls.append(("prompt", ctx.run_id, ""))
        return "Take notes."

    @agent.tool
    def note(ctx: RunContext[Seen]) -> str:
        ctx.deps.calls.append(("tool", ctx.run_id, ctx.tool_call_id or ""))
        return "noted"

    return agent


async def test_an_agents_tools_see_none_in_memory() -> None:
    seen = Seen()
    assert (await note_agent().run("go", deps=seen)).data == "done"
    assert seen.calls == [("prompt", None, ""), ("tool", None, "c1"), ("tool", None, "c2")]


async def test_an_agents_tools_see_the_durable_runs_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    seen = Seen()
    await note_agent().run("go", deps=seen, store=store, run_id="r1")
    assert seen.run_ids() == ["r1", "r1", "r1"]

    made_up = Seen()
    async with note_agent().iter("go", deps=made_up, store=store) as run:
        async for _node in run:
            pass
    assert run.run_id not in (None, "r1") and made_up.run_ids() == [run.run_id] * 3


async def test_a_resumed_agent_run_sees_the_same_run_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    agent = note_agent()
    first = Seen()
    async with agent.iter("go", deps=first, store=store, run_id="r1") as run:
        async for node in run:
            if isinstance(node, ModelRequestNode) and run.usage().requests == 1:
                break  # the first tool has run; the next request is stored, not sent
    assert first.calls == [("prompt", "r1", ""), ("tool", "r1", "c1")]

    second = Seen()
    assert (await agent.resume(store, "r1", deps=second)).data == "done"
    assert second.calls == [("tool", "r1", "c2")]
