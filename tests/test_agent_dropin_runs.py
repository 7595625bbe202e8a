"""pydantic-ai drop-in: results, streamed runs and the run-level errors pydantic-ai code relies on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
from typing_extensions import TypeAliasType

from railyard.agent import Agent, RunContext, UnexpectedModelBehavior, UserError, capture_run_messages
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from railyard.agent.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from railyard.agent.models.test import TestModel
from railyard.agent.result import AgentStream, StreamedRunResult

pytestmark = pytest.mark.anyio


class Cat(pydantic.BaseModel):
    name: str


class Dog(pydantic.BaseModel):
    """A dog, with its age."""

    age: int


Pet = TypeAliasType("Pet", Cat | Dog)


# -- union results --------------------------------------------------------------------------------


@pytest.mark.parametrize("result_type", [Cat | Dog, Pet], ids=["union", "type alias"])
async def test_a_union_is_one_result_tool_per_member(result_type: Any) -> None:
    model = TestModel()
    agent: Agent[None, Any] = Agent(model, result_type=result_type)
    seen: list[str | None] = []

    @agent.result_validator
    def note(ctx: RunContext[None], pet: Any) -> Any:
        seen.append(ctx.tool_name)
        return pet

    assert (await agent.run("q")).data == Cat(name="a")
    assert model.last_model_request_parameters is not None
    tools = model.last_model_request_parameters.result_tools
    assert [(tool.name, tool.description) for tool in tools] == [
        ("final_result_Cat", "Cat: The final response which ends this conversation"),
        ("final_result_Dog", "A dog, with its age."),
    ]
    assert (await agent.run("q", model=TestModel(seed=1))).data == Dog(age=1)
    assert seen == ["final_result_Cat", "final_result_Dog"]


def test_the_result_schema_says_whether_text_may_end_the_run() -> None:
    assert Agent("test")._result_schema is None
    with_text = Agent("test", result_type=str | Cat)  # type: ignore[arg-type]
    assert with_text._result_schema is not None and with_text._result_schema.allow_text_result
    structured = Agent("test", result_type=tuple[str, str])
    assert structured._result_schema is not None and not structured._result_schema.allow_text_result


# -- streamed runs ---------------------------------------------------------------------------------


async def two_steps(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    """A tool call first; then the result tool, in pieces."""
    if len(messages) == 1:
        yield {0: DeltaToolCall(name="double", json_args='{"x": 21}')}
        return
    yield {0: DeltaToolCall(name=info.result_tools[0].name)}
    yield {0: DeltaToolCall(json_args='{"response": [4')}
    yield {0: DeltaToolCall(json_args="2, 1]}")}


def streaming_agent() -> Agent[None, list[int]]:
    agent = Agent(FunctionModel(stream_function=two_steps), result_type=list[int])

    @agent.tool_plain
    def double(x: int) -> int:
        return 2 * x

    return agent


async def test_the_history_of_a_stream_leaves_out_the_answer_until_it_is_complete() -> None:
    stream_agent = streaming_agent()
    async with stream_agent.run_stream("q") as result:
        assert stream_agent.name == "stream_agent"
        kinds = [[part.part_kind for part in message.parts] for message in result.all_messages()]
        assert kinds == [["user-prompt"], ["tool-call"], ["tool-return"]]
        assert await result.get_data() == [42, 1]
        assert result.is_complete
        last = result.all_messages()[-2:]
        assert isinstance(last[0], ModelResponse) and isinstance(last[1], ModelRequest)
        assert last[1].parts == [
            ToolReturnPart("final_result", "Final result processed.", None, last[1].parts[0].timestamp)
        ]  # type: ignore[union-attr]
    assert len(result.all_messages()) == 5  # nothing more once the block exits


async def test_stream_structured_skips_a_call_without_arguments_and_validates_snapshots() -> None:
    async with streaming_agent().run_stream("q") as result:
        snapshots = [
            await result.validate_structured_result(response, allow_partial=not last)
            async for response, last in result.stream_structured(debounce_by=None)
        ]
    assert snapshots == [[4], [42, 1], [42, 1]]


async def test_a_stream_result_is_generic_over_deps_and_result() -> None:
    assert StreamedRunResult[None, str] is not None
    assert AgentStream[None, str] is not None


async def test_agent_stream_gives_responses_and_outputs() -> None:
    agent = Agent(TestModel(custom_result_text="one two"))

    @agent.result_validator
    def shout(text: str) -> str:
        return text.upper()

    responses: list[str] = []
    outputs: list[str] = []
    async with agent.iter("q") as run:
        async for node in run:
            if agent.is_model_request_node(node):
                async with node.stream(run.ctx) as stream:
                    async for response in stream.stream_responses(debounce_by=None):
                        responses.append(response.parts[0].content)  # type: ignore[union-attr]
                usage = stream.usage()
    assert responses == ["", "", "one ", "one two"]  # a start, the final result event, then each piece
    assert run.usage() == usage
    async with agent.iter("q") as run:
        async for node in run:
            if agent.is_model_request_node(node):
                async with node.stream(run.ctx) as stream:
                    outputs.extend([output async for output in stream.stream_output(debounce_by=None)])
    assert outputs == ["", "ONE ", "ONE TWO", "ONE TWO"]


async def test_a_stream_function_that_gives_nothing_is_an_error() -> None:
    async def nothing(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        for piece in ():
            yield piece

    with pytest.raises(ValueError, match=r"^Stream function must return at least one item$"):
        async with Agent(FunctionModel(stream_function=nothing)).run_stream("q"):
            pass


# -- run-level errors and captures ----------------------------------------------------------------


async def test_an_unknown_tool_with_no_tools_at_all() -> None:
    def call_nothing(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse([ToolCallPart("nope", "{}")])

    with capture_run_messages() as messages, pytest.raises(UnexpectedModelBehavior):
        await Agent(FunctionModel(call_nothing)).run("q")
    retry = messages[2].parts[0]
    assert isinstance(retry, RetryPromptPart)
    assert retry.content == "Unknown tool name: 'nope'. No tools available."


async def test_nested_captures_share_the_first_runs_messages() -> None:
    agent = Agent("test")
    with capture_run_messages() as outer:
        with capture_run_messages() as inner:
            assert inner is outer
            await agent.run("first")
        await agent.run("second")
    assert len(outer) == 2 and outer[0].parts[0].content == "first"  # type: ignore[union-attr]


async def test_override_of_the_model_alone_is_not_enough() -> None:
    agent = Agent()
    with agent.override(model="test"), pytest.raises(UserError, match=r"Even when `override\(model=...\)`"):
        await agent.run("q")


async def test_a_run_result_type_cannot_bypass_result_validators() -> None:
    agent = Agent("test")

    @agent.result_validator
    def keep(text: str) -> str:
        return text

    with pytest.raises(
        UserError, match=r"^Cannot set a custom run `result_type` when the agent has result validators$"
    ):
        await agent.run("q", result_type=int)


def test_last_run_messages_is_gone() -> None:
    with pytest.raises(AttributeError, match="use `capture_run_messages` instead"):
        Agent("test").last_run_messages


async def test_replacing_the_return_of_a_missing_result_tool() -> None:
    result = await Agent("test", result_type=int).run("q")
    result._result_tool_name = "other"
    with pytest.raises(LookupError, match=r"^No tool call found with tool name 'other'.$"):
        result.all_messages(result_tool_return_content="x")


async def test_streamed_results_cannot_replace_the_result_tool_return() -> None:
    async with Agent("test").run_stream("q") as result:
        with pytest.raises(NotImplementedError):
            result.all_messages(result_tool_return_content="x")


async def test_test_model_refuses_text_where_none_may_end_the_run_as_an_assertion() -> None:
    agent = Agent(result_type=tuple[str, str])
    with pytest.raises(AssertionError, match="Plain response not allowed"):
        await agent.run("q", model=TestModel(custom_result_text="x"))
    with pytest.raises(UserError):
        await agent.run("q", model=TestModel(custom_result_text="x"))


async def test_json_of_a_run_result() -> None:
    result = await Agent("test").run("q")
    assert json.loads(result.all_messages_json())[1]["parts"][0]["content"] == "success (no tool calls)"
    assert isinstance(ModelResponse([TextPart("x")]).parts[0], TextPart)
