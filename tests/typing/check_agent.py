"""The agent API's types, checked by mypy (strict)."""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from railyard.agent import Agent, AgentRunResult, RunContext
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel


class City(BaseModel):
    name: str


def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("Paris")])


text_agent = Agent(FunctionModel(answer))
city_agent = Agent(FunctionModel(answer), result_type=City, deps_type=int)


@city_agent.tool
def population(ctx: RunContext[int], city: str) -> int:
    assert_type(ctx.run_id, str | None)
    return ctx.deps


async def check() -> None:
    assert_type(await text_agent.run("q"), AgentRunResult[str])
    result = await city_agent.run("q", deps=3)
    assert_type(result, AgentRunResult[City])
    assert_type(result.data, City)
    assert_type(result.output, City)
    async with city_agent.iter("q", deps=1) as run:
        async for _node in run:
            pass
        if run.result is not None:
            assert_type(run.result.data, City)


@city_agent.tool(name="area", retries=2, docstring_format="google")
def area(ctx: RunContext[int], city: str) -> float:
    return 1.0


@text_agent.tool_plain(require_parameter_descriptions=False)
def shout(text: str) -> str:
    return text.upper()


assert_type(shout("x"), str)  # the decorators give the function back as it was
