"""Small graphs the `railyard` command's tests load as `tests.support.cli_graphs:NAME`."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import anyio
import pydantic

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.agent import Agent
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart
from railyard.agent.models.function import AgentInfo, FunctionModel
from railyard.builder import GraphBuilder, StepContext, reduce_list_append

__all__ = (
    "Approval",
    "CountDown",
    "CountState",
    "approvals",
    "counter",
    "doubles",
    "echo",
    "failing",
    "hanging",
    "not_a_graph",
)


@dataclass
class CountState:
    counter: int
    seen: list[int] = field(default_factory=list)


@dataclass
class CountDown(BaseNode[CountState, None, int]):
    async def run(self, ctx: GraphRunContext[CountState]) -> CountDown | End[int]:
        ctx.state.seen.append(ctx.state.counter)
        if ctx.state.counter <= 0:
            return End(len(ctx.state.seen))
        ctx.state.counter -= 1
        return CountDown()


counter = Graph(nodes=[CountDown], state_type=CountState, name="counter")


class Approval(pydantic.BaseModel):
    approved: bool
    by: str


@dataclass
class Review(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        answer = await ctx.wait_for("approval", Approval, prompt="Approve?")
        return End(f"approved by {answer.by}" if answer.approved else "refused")


approvals = Graph(nodes=[Review], name="approvals")


@dataclass
class Explode(BaseNode[None, None, int]):
    async def run(self, ctx: GraphRunContext) -> End[int]:
        raise ValueError("the flux capacitor is empty")


failing = Graph(nodes=[Explode], name="failing")


@dataclass
class Hang(BaseNode[None, None, int]):
    async def run(self, ctx: GraphRunContext) -> End[int]:
        if os.environ.get("CLI_GRAPHS_RELEASE"):  # set when the test resumes the interrupted run
            return End(7)
        print("Hang waits forever", file=sys.stderr, flush=True)  # the test interrupts the run once it reads this
        await anyio.sleep_forever()
        return End(0)  # pragma: no cover - never reached


@dataclass
class Warm(BaseNode[None, None, int]):
    async def run(self, ctx: GraphRunContext) -> Hang:
        return Hang()


hanging = Graph(nodes=[Warm, Hang], name="hanging")


_builder = GraphBuilder(input_type=list[int], output_type=list[int], name="doubles")


@_builder.step
async def double(ctx: StepContext[None, None, int]) -> int:
    return ctx.inputs * 2


_collect = _builder.join(reduce_list_append, initial_factory=list[int])
_builder.add(
    _builder.edge_from(_builder.start_node).map().to(double),
    _builder.edge_from(double).to(_collect),
    _builder.edge_from(_collect).to(_builder.end_node),
)
doubles = _builder.build()


def _echo_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("echo: hello")])


echo = Agent(FunctionModel(_echo_model), name="echo")

not_a_graph = 42
