"""Agent runs at the edges: concurrent tool failures, retry counting, odd responses and odd tools.

Each case was checked side by side against pydantic-ai 0.0.40; the expected values are
what it does.
"""

from __future__ import annotations

import dataclasses
import threading

import pydantic
import pytest
from pydantic import BaseModel

from railyard.agent import (
    Agent,
    ModelRetry,
    RunContext,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    capture_run_messages,
)
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from railyard.agent.models import AgentInfo, Model
from railyard.agent.models.function import FunctionModel
from railyard.agent.usage import Usage, UsageLimits

pytestmark = pytest.mark.anyio


def script(*responses: list[ModelResponsePart]) -> FunctionModel:
    answers = [ModelResponse(parts=parts) for parts in responses]

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return answers.pop(0) if answers else ModelResponse(parts=[TextPart("done")])

    return FunctionModel(answer)


def last_request(messages: list[ModelMessage]) -> ModelRequest:
    request = [m for m in messages if isinstance(m, ModelRequest)][-1]
    return request


async def test_an_exception_in_one_of_several_tools_comes_out_unwrapped() -> None:
    agent = Agent(script([ToolCallPart("ok", {}), ToolCallPart("boom", {})]))

    @agent.tool_plain
    async def ok() -> str:
        return "fine"

    @agent.tool_plain
    async def boom() -> str:
        raise ValueError("kaboom")

    with pytest.raises(ValueError, match=r"^kaboom$") as caught:
        await agent.run("q")
    assert not isinstance(caught.value, BaseExceptionGroup)
    assert caught.value.__context__ is None  # no group left in the chain either

    flaky = Agent(script(*[[ToolCallPart("ok", {}), ToolCallPart("bad", {})]] * 2))
    flaky.tool_plain(ok)

    @flaky.tool_plain
    async def bad() -> str:
        raise ModelRetry("no")

    with pytest.raises(UnexpectedModelBehavior, match=r"^Tool exceeded max retries count of 1$") as retried:
        await flaky.run("q")
    assert isinstance(retried.value.__cause__, ModelRetry)


async def test_a_success_resets_a_tools_retry_count() -> None:
    seen: list[int] = []
    agent = Agent(script(*[[ToolCallPart("flaky", {"n": n})] for n in (1, 2, 3, 4)]))

    @agent.tool
    def flaky(ctx: RunContext[None], n: int) -> str:
        seen.append(ctx.retry)
        if n % 2:
            raise ModelRetry(f"bad {n}")
        return "ok"

    assert (await agent.run("q")).data == "done"
    assert seen == [0, 1, 0, 1]


async def test_failing_calls_of_one_tool_in_one_response_add_up() -> None:
    agent = Agent(script([ToolCallPart("bad", {}, "c1"), ToolCallPart("bad", {}, "c2")]))

    @agent.tool_plain
    def bad(x: int) -> int:
        return x

    with pytest.raises(UnexpectedModelBehavior, match=r"^Tool exceeded max retries count of 1$") as caught:
        await agent.run("q")
    assert isinstance(caught.value.__cause__, pydantic.ValidationError)  # what was wrong with the arguments


async def test_tools_with_positional_only_and_reserved_parameter_names() -> None:
    agent = Agent(
        script(
            [
                ToolCallPart("po", {"x": 1}),
                ToolCallPart("names", {"json": "j", "model_config": 2, "_private": "p"}),
            ]
        )
    )

    @agent.tool_plain
    def po(x: int, /, y: int = 5) -> int:
        return x + y

    @agent.tool_plain
    def names(json: str, model_config: int, _private: str) -> str:
        return f"{json}{model_config}{_private}"

    result = await agent.run("q")
    returns = [(p.tool_name, p.content) for p in last_request(result.all_messages()[:-1]).parts]
    assert returns == [("po", 6), ("names", "j2p")]
    schema = agent._tools["names"].definition.parameters_json_schema
    assert list(schema["properties"]) == ["json", "model_config", "_private"]
    assert schema["required"] == ["json", "model_config", "_private"]


async def test_empty_text_is_no_answer() -> None:
    with pytest.raises(UnexpectedModelBehavior, match=r"^Received empty model response$"):
        await Agent(script([TextPart("")])).run("q")
    assert (await Agent(script([TextPart(""), TextPart("a")])).run("q")).data == "a"
    with pytest.raises(UnexpectedModelBehavior, match=r"^Received empty model response$"):
        await Agent(script([]), result_type=int).run("q")


class City(BaseModel):
    """A city."""

    name: str


async def test_an_unknown_tool_beside_a_final_result_is_still_a_retry() -> None:
    agent = Agent(script([ToolCallPart("final_result", {"name": "R"}), ToolCallPart("nope", {})]), result_type=City)
    result = await agent.run("q")
    assert result.data == City(name="R")
    assert [type(p).__name__ for p in last_request(result.all_messages()).parts] == [
        "ToolReturnPart",
        "RetryPromptPart",
    ]
    two_unknown = Agent(
        script([ToolCallPart("nope", {}), ToolCallPart("nope2", {}), ToolCallPart("final_result", {"name": "R"})]),
        result_type=City,
    )
    with pytest.raises(UnexpectedModelBehavior, match=r"^Exceeded maximum retries \(1\) for result validation$"):
        await two_unknown.run("q")


async def test_reply_parts_come_in_result_unknown_function_order() -> None:
    def t(x: int) -> int:
        return x

    with capture_run_messages() as messages:
        agent2 = Agent(
            script(
                [ToolCallPart("t", {"x": 1}, "a"), ToolCallPart("nope", {}), ToolCallPart("final_result", {})],
                [ToolCallPart("final_result", {"name": "ok"})],
            ),
            result_type=City,
            retries=3,
        )
        agent2.tool_plain(t)
        await agent2.run("q")
    reply = messages[2]
    assert isinstance(reply, ModelRequest)
    assert [(type(p).__name__, p.tool_name) for p in reply.parts] == [
        ("RetryPromptPart", "final_result"),
        ("RetryPromptPart", None),
        ("ToolReturnPart", "t"),
    ]


class LoopBound:
    """Something that works only in the event loop it was first used in, like an HTTP client."""

    def __init__(self) -> None:
        self.loop: object = None

    async def use(self) -> str:
        import asyncio

        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        if self.loop is not loop or loop.is_closed():
            raise RuntimeError("Event loop is closed")
        return "ok"


def test_run_sync_keeps_one_event_loop_per_thread() -> None:
    bound = LoopBound()
    agent = Agent(script([ToolCallPart("use", {})], [ToolCallPart("use", {})]), deps_type=LoopBound)

    @agent.tool
    async def use(ctx: RunContext[LoopBound]) -> str:
        return await ctx.deps.use()

    assert agent.run_sync("one", deps=bound).data == "done"
    assert agent.run_sync("two", deps=bound).data == "done"
    elsewhere: list[str] = []
    thread = threading.Thread(target=lambda: elsewhere.append(Agent(script()).run_sync("q").data))
    thread.start()
    thread.join()
    assert elsewhere == ["done"]


class Silent(Model):
    """A custom model that leaves `requests` at 0 in the usage it reports."""

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        self.calls += 1
        return ModelResponse(parts=[ToolCallPart("again", {})]), Usage(request_tokens=1)

    @property
    def model_name(self) -> str:
        return "silent"

    @property
    def system(self) -> str:
        return "custom"


async def test_the_agent_counts_requests_whatever_the_model_reports() -> None:
    model = Silent()
    agent = Agent(model)

    @agent.tool_plain
    def again() -> str:
        return "more"

    with pytest.raises(UsageLimitExceeded, match=r"^The next request would exceed the request_limit of 2$"):
        await agent.run("q", usage_limits=UsageLimits(request_limit=2))
    assert model.calls == 2


async def test_token_limits_stop_before_the_response_is_recorded() -> None:
    agent = Agent(script([ToolCallPart("t", {"x": 1})], [ToolCallPart("t", {"x": 1})]))

    @agent.tool_plain
    def t(x: int) -> int:
        return x

    with (
        capture_run_messages() as messages,
        pytest.raises(UsageLimitExceeded, match=r"^Exceeded the request_tokens_limit of 55 \(request_tokens=103\)$"),
    ):
        await agent.run("q", usage_limits=UsageLimits(request_tokens_limit=55))
    assert [type(m).__name__ for m in messages] == ["ModelRequest", "ModelResponse", "ModelRequest"]


async def test_result_tool_descriptions_combine_the_given_text_and_the_docstring() -> None:
    @dataclasses.dataclass
    class Plain:
        name: str

    seen: list[list[str]] = []

    def record(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append([tool.description for tool in info.result_tools])
        return ModelResponse(parts=[ToolCallPart(info.result_tools[0].name, {"name": "x"})])

    for result_type in (City, Plain, City | Plain):
        agent = Agent(FunctionModel(record), result_type=result_type, result_tool_description="Custom")
        await agent.run("q")
    agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[ToolCallPart("final_result", {"response": 1})])))
    await agent.run("q", result_type=int)
    assert seen == [["Custom. A city."], ["Custom"], ["Custom. A city.", "Plain: Custom"]]


async def test_result_validators_see_the_result_tool_and_may_take_extra_defaulted_parameters() -> None:
    agent = Agent(script([ToolCallPart("final_result", {"name": "x"}, "call-1")]), result_type=City)
    seen: list[tuple[str | None, str | None, str]] = []

    @agent.result_validator
    def check(ctx: RunContext[None], city: City, suffix: str = "!") -> City:
        seen.append((ctx.tool_name, ctx.tool_call_id, suffix))
        return City(name=city.name + suffix)

    assert (await agent.run("q")).data == City(name="x!")
    assert seen == [("final_result", "call-1", "!")]


async def test_unexpected_model_behavior_shows_the_body() -> None:
    error = UnexpectedModelBehavior("bad answer", '{"a": 1}')
    assert (str(error), error.body, repr(error)) == (
        'bad answer, body:\n{\n  "a": 1\n}',
        '{"a": 1}',
        "UnexpectedModelBehavior('bad answer')",
    )
    assert str(UnexpectedModelBehavior("plain", "not json")) == "plain, body:\nnot json"


async def test_retry_prompts_for_result_validation_are_sent_back() -> None:
    agent = Agent(
        script([ToolCallPart("final_result", {"nam": 1}, "a")], [ToolCallPart("final_result", {"name": "y"})]),
        result_type=City,
    )
    result = await agent.run("q")
    retry = result.all_messages()[2]
    assert isinstance(retry, ModelRequest) and isinstance(retry.parts[0], RetryPromptPart)
    assert retry.parts[0].tool_call_id == "a"
    assert isinstance(result.all_messages()[-1], ModelRequest)
    final = result.all_messages()[-1].parts[0]  # type: ignore[union-attr]
    assert isinstance(final, ToolReturnPart) and final.content == "Final result processed."
