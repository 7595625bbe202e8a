"""The agent decorators' and tools' types, checked by mypy (strict).

A correct use must type-check and keep its type; a wrong use carries a
`# type: ignore[code]`, which `warn_unused_ignores` turns into a failure the day
the error is no longer reported. The wrong uses sit in functions nobody calls, as
registering them would fail at runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import assert_type

from railyard.agent import Agent, AgentRunResult, RunContext, Tool
from railyard.agent.streaming import StreamedRunResult
from railyard.agent.tools import ToolDefinition


@dataclass
class Shop:
    currency: str


shop_agent = Agent(deps_type=Shop, result_type=float)
assert_type(shop_agent, Agent[Shop, float])
assert_type(Agent(), Agent[None, str])


# -- tool: the run context's deps must be the agent's -------------------------------------


@shop_agent.tool
def price(ctx: RunContext[Shop], item: str, count: int = 1) -> str:
    assert_type(ctx.deps, Shop)
    return f"{count} {item} in {ctx.deps.currency}"


@shop_agent.tool
async def stock(ctx: RunContext[Shop], item: str) -> int:
    return len(item)


def only_in_euros(ctx: RunContext[Shop], definition: ToolDefinition) -> ToolDefinition | None:
    return definition if ctx.deps.currency == "EUR" else None


async def only_in_euros_async(ctx: RunContext[Shop], definition: ToolDefinition) -> ToolDefinition | None:
    return only_in_euros(ctx, definition)


@shop_agent.tool(name="discount", retries=2, prepare=only_in_euros_async, docstring_format="google")
async def discount(ctx: RunContext[Shop], item: str) -> float:
    return 0.1


@shop_agent.tool(prepare=only_in_euros)  # a sync `prepare` is accepted too
def tax(ctx: RunContext[Shop], item: str) -> float:
    return 0.2


async def call_tools(ctx: RunContext[Shop]) -> None:
    """The functions come back with their own parameters (names and defaults too) and return types."""
    assert_type(price(ctx, "pen"), str)
    assert_type(price(ctx, item="pen", count=2), str)
    assert_type(await stock(ctx, "pen"), int)
    assert_type(await discount(ctx, "pen"), float)
    assert_type(tax(ctx, item="pen"), float)
    price(ctx, 3)  # type: ignore[arg-type]
    price(ctx, "pen", colour="red")  # type: ignore[call-arg]


def prepare_for_ints(ctx: RunContext[int], definition: ToolDefinition) -> ToolDefinition | None:
    return definition


def wrong_tools() -> None:
    @shop_agent.tool  # type: ignore[arg-type]  # the agent's deps are `Shop`, not `int`
    def other_deps(ctx: RunContext[int], item: str) -> str:
        return item

    @shop_agent.tool  # type: ignore[arg-type]  # `tool` needs the run context; this is `tool_plain`'s
    def no_context(item: str) -> str:
        return item

    @shop_agent.tool(retries=1)  # type: ignore[arg-type]
    async def other_deps_with_options(ctx: RunContext[int], item: str) -> str:
        return item

    @shop_agent.tool(prepare=prepare_for_ints)  # type: ignore[arg-type]  # `prepare` takes the agent's deps too
    def prepared_for_ints(ctx: RunContext[Shop], item: str) -> str:
        return item

    shop_agent.tool(retries="2")  # type: ignore[call-overload]
    shop_agent.tool(colour="red")  # type: ignore[call-overload]


# -- tool_plain -----------------------------------------------------------------------------


@shop_agent.tool_plain
def shout(text: str) -> str:
    return text.upper()


@shop_agent.tool_plain(name="whisper", prepare=only_in_euros_async)
async def whisper(text: str, *, times: int = 1) -> list[str]:
    return [text.lower()] * times


async def call_plain_tools() -> None:
    assert_type(shout("x"), str)
    assert_type(await whisper("x", times=2), list[str])
    whisper("x", 2)  # type: ignore[call-arg, unused-coroutine]  # `times` is keyword-only


def wrong_plain_tools() -> None:
    @shop_agent.tool_plain(prepare=prepare_for_ints)  # type: ignore[arg-type]
    def prepared_for_ints(text: str) -> str:
        return text


# -- system prompts and instructions: four shapes, each kept --------------------------------


@shop_agent.system_prompt
def prompt_ctx(ctx: RunContext[Shop]) -> str:
    return f"Prices are in {ctx.deps.currency}."


@shop_agent.system_prompt
async def prompt_ctx_async(ctx: RunContext[Shop]) -> str:
    return "Be brief."


@shop_agent.system_prompt
def prompt_plain() -> str:
    return "Be kind."


@shop_agent.system_prompt
async def prompt_plain_async() -> str:
    return "Be quick."


@shop_agent.system_prompt(dynamic=True)
def prompt_dynamic(ctx: RunContext[Shop]) -> str:
    return ctx.deps.currency


@shop_agent.instructions
async def instructions_ctx_async(ctx: RunContext[Shop]) -> str:
    return ctx.deps.currency


@shop_agent.instructions
def instructions_plain() -> str:
    return "Answer in one line."


assert_type(prompt_ctx, Callable[[RunContext[Shop]], str])
assert_type(prompt_ctx_async, Callable[[RunContext[Shop]], Awaitable[str]])
assert_type(prompt_plain, Callable[[], str])
assert_type(prompt_plain_async, Callable[[], Awaitable[str]])
assert_type(instructions_ctx_async, Callable[[RunContext[Shop]], Awaitable[str]])
assert_type(instructions_plain, Callable[[], str])


def wrong_prompts() -> None:
    @shop_agent.system_prompt  # type: ignore[arg-type]
    def other_deps(ctx: RunContext[int]) -> str:
        return ""

    @shop_agent.system_prompt  # type: ignore[arg-type]  # a prompt is text
    def not_text() -> int:
        return 1

    @shop_agent.system_prompt(dynamic=True)  # type: ignore[arg-type]
    def dynamic_other_deps(ctx: RunContext[int]) -> str:
        return ""

    @shop_agent.instructions  # type: ignore[arg-type]
    def instructions_other_deps(ctx: RunContext[int]) -> str:
        return ""


# -- result validators: they take and return the agent's result type ------------------------


@shop_agent.result_validator
def positive(result: float) -> float:
    return result


@shop_agent.result_validator
async def within_budget(ctx: RunContext[Shop], result: float) -> float:
    return result


@shop_agent.output_validator
def rounded(ctx: RunContext[Shop], result: float) -> float:
    return round(result, 2)


assert_type(positive, Callable[[float], float])
assert_type(within_budget, Callable[[RunContext[Shop], float], Awaitable[float]])
assert_type(rounded, Callable[[RunContext[Shop], float], float])


def wrong_validators() -> None:
    @shop_agent.result_validator  # type: ignore[arg-type]  # the result is a float
    def text(result: str) -> str:
        return result

    @shop_agent.result_validator  # type: ignore[arg-type]
    async def other_deps(ctx: RunContext[int], result: float) -> float:
        return result


# -- Tool(...) and Agent(tools=[...]): the deps type is inferred ----------------------------


def lookup(ctx: RunContext[int], key: str) -> str:
    return key


def echo(text: str) -> str:
    return text


async def prepare_for_str(ctx: RunContext[str], definition: ToolDefinition) -> ToolDefinition | None:
    return definition


assert_type(Tool(lookup), Tool[int])
assert_type(Tool(lookup, takes_ctx=True, max_retries=2), Tool[int])
assert_type(Tool(echo), Tool[None])
assert_type(Tool(echo, prepare=prepare_for_str), Tool[str])

assert_type(Agent(None, tools=[Tool(lookup)], deps_type=int), Agent[int, str])
assert_type(Agent(None, tools=[lookup, echo, Tool(lookup)], deps_type=int), Agent[int, str])
assert_type(Agent(None, tools=[echo]), Agent[None, str])
assert_type(Agent(None, tools=[Tool(lookup)]), Agent[int, str])  # the tools tell the deps type
str_agent = Agent[str, str](None, tools=[Tool(echo, prepare=prepare_for_str)], deps_type=str)
int_tools = [Tool(lookup), Tool(echo, prepare=prepare_for_ints)]
assert_type(int_tools, list[Tool[int]])


def wrong_tool_lists() -> None:
    Agent(None, tools=int_tools, deps_type=str)  # type: ignore[arg-type]


# -- runs: deps and result types ------------------------------------------------------------


async def runs() -> None:
    assert_type(await shop_agent.run("q", deps=Shop("EUR")), AgentRunResult[float])
    assert_type(await shop_agent.run("q", deps=Shop("EUR"), result_type=int), AgentRunResult[int])
    assert_type(shop_agent.run_sync("q", deps=Shop("EUR"), output_type=bytes), AgentRunResult[bytes])
    async with shop_agent.run_stream("q", deps=Shop("EUR")) as stream:
        assert_type(stream, StreamedRunResult[Shop, float])
    async with shop_agent.iter("q", deps=Shop("EUR"), result_type=int) as run:
        if run.result is not None:
            assert_type(run.result.data, int)
    with shop_agent.override(deps=Shop("USD")):
        pass
    await shop_agent.run("q", deps=3)  # type: ignore[call-overload]
    with shop_agent.override(deps=3):  # type: ignore[arg-type]
        pass
