"""Structured results, result validators, system prompts, instructions and run options."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel, Field

from railyard.agent import Agent, ModelRetry, RunContext, UnexpectedModelBehavior, UserError, UserPromptNode
from railyard.agent._graph import CallToolsNode, FinalResult, ModelRequestNode
from railyard.agent.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.agent.tools import ToolDefinition
from railyard.nodes import End

pytestmark = pytest.mark.anyio


class CityInfo(BaseModel):
    """Information about a city."""

    city: str
    country: str = Field(description="The country")
    population: int | None = None


@dataclass
class DC:
    name: str
    n: int = 1


class Script:
    """A FunctionModel function that answers from a list, recording what it was told."""

    def __init__(self, *answers: ModelResponse) -> None:
        self.answers = list(answers)
        self.infos: list[AgentInfo] = []
        self.messages: list[list[ModelMessage]] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.infos.append(info)
        self.messages.append(list(messages))
        return self.answers.pop(0)


def call(name: str, args: dict[str, object] | str, tool_call_id: str | None = None) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id)])


def text(content: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(content)])


async def test_a_model_result_becomes_the_final_result_tool() -> None:
    script = Script(call("final_result", {"city": "Paris", "country": "France"}, "r2"))
    agent = Agent(FunctionModel(script), result_type=CityInfo)
    async with agent.iter("Tell me about Paris") as run:
        nodes = [node async for node in run]
    assert script.infos[0] == AgentInfo(
        function_tools=[],
        allow_text_result=False,
        result_tools=[
            ToolDefinition(
                name="final_result",
                description="Information about a city.",
                parameters_json_schema={
                    "properties": {
                        "city": {"title": "City", "type": "string"},
                        "country": {"description": "The country", "title": "Country", "type": "string"},
                        "population": {
                            "anyOf": [{"type": "integer"}, {"type": "null"}],
                            "default": None,
                            "title": "Population",
                        },
                    },
                    "required": ["city", "country"],
                    "title": "CityInfo",
                    "type": "object",
                },
            )
        ],
        model_settings=None,
    )
    assert repr(nodes[-1]) == (
        "End(data=FinalResult(data=CityInfo(city='Paris', country='France', population=None), "
        "tool_name='final_result', tool_call_id='r2'))"
    )
    assert run.result is not None
    assert run.result.output == CityInfo(city="Paris", country="France")
    last = run.result.all_messages()[-1]
    assert isinstance(last, ModelRequest)
    assert [(p.tool_name, p.content, p.tool_call_id) for p in last.parts if isinstance(p, ToolReturnPart)] == [
        ("final_result", "Final result processed.", "r2")
    ]


async def test_dataclass_and_wrapped_scalar_results() -> None:
    dc_script = Script(call("final_result", '{"name": "x"}'))
    agent = Agent(FunctionModel(dc_script), output_type=DC)
    assert (await agent.run("q")).data == DC("x")
    definition = dc_script.infos[0].result_tools[0]
    assert definition.description == "The final response which ends this conversation"
    assert definition.parameters_json_schema == {
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "n": {"default": 1, "title": "N", "type": "integer"},
        },
        "required": ["name"],
        "title": "DC",
        "type": "object",
    }

    int_script = Script(call("final_result", {"response": 42}))
    result = await Agent(FunctionModel(int_script)).run("q", result_type=int)
    assert result.data == 42
    definition = int_script.infos[0].result_tools[0]
    assert definition.outer_typed_dict_key == "response"
    assert definition.parameters_json_schema == {
        "properties": {"response": {"title": "Response", "type": "integer"}},
        "required": ["response"],
        "type": "object",
    }


async def test_a_union_gives_one_tool_per_member_and_str_allows_text() -> None:
    script = Script(call("final_result_DC", {"name": "d"}))
    agent = Agent(FunctionModel(script), result_type=CityInfo | DC)
    assert (await agent.run("q")).data == DC("d")
    info = script.infos[0]
    assert not info.allow_text_result
    assert [(t.name, t.description) for t in info.result_tools] == [
        ("final_result_CityInfo", "Information about a city."),
        ("final_result_DC", "DC: The final response which ends this conversation"),
    ]

    script = Script(text("plain"))
    result = await Agent(FunctionModel(script), result_type=str | CityInfo).run("q")
    assert result.data == "plain"
    assert script.infos[0].allow_text_result
    assert [t.name for t in script.infos[0].result_tools] == ["final_result"]


async def test_invalid_result_arguments_and_plain_text_are_sent_back() -> None:
    script = Script(
        call("final_result", {"city": "Paris"}, "r1"),
        text("Paris, France"),
        call("final_result", {"city": "Paris", "country": "France"}, "r3"),
    )
    agent = Agent(FunctionModel(script), result_type=CityInfo, retries=2)
    result = await agent.run("q")
    assert result.data.country == "France"
    first_retry = script.messages[1][-1]
    assert isinstance(first_retry, ModelRequest)
    part = first_retry.parts[0]
    assert isinstance(part, RetryPromptPart)
    assert (part.tool_name, part.tool_call_id) == ("final_result", "r1")
    assert part.content == [
        {"type": "missing", "loc": ("country",), "msg": "Field required", "input": {"city": "Paris"}}
    ]
    second_retry = script.messages[2][-1]
    assert isinstance(second_retry, ModelRequest)
    assert second_retry.parts[0] == RetryPromptPart(
        "Plain text responses are not permitted, please call one of the functions instead.",
        timestamp=second_retry.parts[0].timestamp,  # type: ignore[union-attr]
    )


async def test_result_retries_run_out_with_a_clear_error() -> None:
    agent = Agent(FunctionModel(Script(text("a"), text("b"))), result_type=CityInfo)
    with pytest.raises(UnexpectedModelBehavior, match=r"^Exceeded maximum retries \(1\) for result validation$"):
        await agent.run("q")
    agent = Agent(FunctionModel(Script(text("a"))), result_type=CityInfo, retries=3, result_retries=0)
    with pytest.raises(UnexpectedModelBehavior, match=r"^Exceeded maximum retries \(0\) for result validation$"):
        await agent.run("q")
    # an unknown tool counts against the result retries
    agent = Agent(FunctionModel(Script(call("nope", {}), call("nope", {}))), output_retries=1)
    with pytest.raises(UnexpectedModelBehavior, match=r"^Exceeded maximum retries \(1\) for result validation$"):
        await agent.run("q")


async def test_result_validators_can_change_or_reject_a_result() -> None:
    script = Script(text("paris"), text("Paris"))
    agent = Agent(FunctionModel(script), retries=2)
    seen: list[tuple[str, int]] = []

    @agent.result_validator
    def must_be_capitalised(ctx: RunContext[None], data: str) -> str:
        seen.append((data, ctx.retry))
        if not data[0].isupper():
            raise ModelRetry("Capitalise the name")
        return data + "!"

    @agent.output_validator
    async def shout(data: str) -> str:
        return data.upper()

    result = await agent.run("q")
    assert result.data == "PARIS!"
    assert seen == [("paris", 0), ("Paris", 1)]
    retry = script.messages[1][-1]
    assert isinstance(retry, ModelRequest) and isinstance(retry.parts[0], RetryPromptPart)
    assert retry.parts[0].model_response() == "Capitalise the name\n\nFix the errors and try again."

    structured = Script(
        call("final_result", {"city": "x", "country": "y"}, "c1"),
        call("final_result", {"city": "Rome", "country": "Italy"}),
    )
    agent2 = Agent(FunctionModel(structured), result_type=CityInfo)

    @agent2.result_validator
    def real_city(city: CityInfo) -> CityInfo:
        if len(city.city) < 2:
            raise ModelRetry("Not a city")
        return city

    assert (await agent2.run("q")).data.city == "Rome"
    retry = structured.messages[1][-1]
    assert isinstance(retry, ModelRequest)
    assert [(p.content, p.tool_name, p.tool_call_id) for p in retry.parts if isinstance(p, RetryPromptPart)] == [
        ("Not a city", "final_result", "c1")
    ]
    with pytest.raises(UserError, match=r"must take \(result\) or \(ctx, result\)$"):
        agent2.result_validator(lambda: None)


def both_tools(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(
        parts=[
            ToolCallPart("record", {"x": 1}),
            ToolCallPart("final_result", {"city": "Paris", "country": "France"}, "r1"),
            ToolCallPart("record", {"x": 2}),
        ]
    )


@pytest.mark.parametrize("strategy", ["early", "exhaustive"])
async def test_end_strategy_decides_whether_other_tools_run(strategy: str) -> None:
    calls: list[int] = []
    agent = Agent(FunctionModel(both_tools), result_type=CityInfo, end_strategy=strategy)  # type: ignore[arg-type]

    @agent.tool_plain
    def record(x: int) -> int:
        calls.append(x)
        return x

    result = await agent.run("q")
    last = result.all_messages()[-1]
    assert isinstance(last, ModelRequest)
    returned = [(p.tool_name, p.content) for p in last.parts if isinstance(p, ToolReturnPart)]
    if strategy == "early":
        assert calls == []
        skipped = "Tool not executed - a final result was already processed."
        assert returned == [("record", skipped), ("final_result", "Final result processed."), ("record", skipped)]
    else:
        assert sorted(calls) == [1, 2]
        assert returned == [("final_result", "Final result processed."), ("record", 1), ("record", 2)]


async def test_system_prompt_functions_and_dynamic_refresh() -> None:
    script = Script(text("one"), text("two"))
    agent = Agent(FunctionModel(script), system_prompt="static", deps_type=str)
    counter = iter(range(10))

    @agent.system_prompt
    def with_deps(ctx: RunContext[str]) -> str:
        return f"deps={ctx.deps} prompt={ctx.prompt}"

    @agent.system_prompt(dynamic=True)
    async def fresh() -> str:
        return f"call {next(counter)}"

    first = await agent.run("hi", deps="D")
    request = first.all_messages()[0]
    assert isinstance(request, ModelRequest)
    assert [(p.content, p.dynamic_ref) for p in request.parts if isinstance(p, SystemPromptPart)] == [
        ("static", None),
        ("deps=D prompt=hi", None),
        ("call 0", "test_system_prompt_functions_and_dynamic_refresh.<locals>.fresh"),
    ]
    second = await agent.run("again", deps="E", message_history=first.all_messages())
    sent = script.messages[1][0]
    assert isinstance(sent, ModelRequest)
    assert [p.content for p in sent.parts if isinstance(p, SystemPromptPart)] == [
        "static",
        "deps=D prompt=hi",
        "call 1",
    ]
    assert len(second.new_messages()) == 2


async def test_instructions_go_with_every_request_but_not_into_history() -> None:
    script = Script(call("noop", {}), text("done"))
    agent = Agent(FunctionModel(script), instructions="Answer in French.")

    @agent.instructions
    def more(ctx: RunContext[None]) -> str:
        return f"step {ctx.run_step}"

    @agent.tool_plain
    def noop() -> str:
        return "ok"

    result = await agent.run("q")
    assert [info.instructions for info in script.infos] == [
        "Answer in French.\n\nstep 1",
        "Answer in French.\n\nstep 2",
    ]
    assert "French" not in result.all_messages_json().decode()


async def test_run_options_model_settings_override_and_name() -> None:
    script = Script(text("a"), text("b"), text("c"))
    my_agent = Agent(FunctionModel(script), model_settings={"temperature": 0.0, "max_tokens": 5})
    await my_agent.run("q", model_settings={"temperature": 1.0})
    assert script.infos[0].model_settings == {"temperature": 1.0, "max_tokens": 5}
    assert my_agent.name == "my_agent"

    other = Script(text("from override"))
    with my_agent.override(model=FunctionModel(other)):
        assert (await my_agent.run("q")).data == "from override"
    assert (await my_agent.run("q", model=FunctionModel(Script(text("per run"))))).data == "per run"
    assert repr(my_agent).startswith("Agent(model=FunctionModel(function=")


async def test_driving_by_hand_starts_at_the_user_prompt_node() -> None:
    agent = Agent(FunctionModel(Script(text("Paris"))))
    async with agent.iter("q") as run:
        assert isinstance(run.next_node, UserPromptNode)
        assert repr(run) == (
            "<AgentRun result=<run not finished> usage=Usage(requests=0, request_tokens=None, "
            "response_tokens=None, total_tokens=None, details=None)>"
        )
        node = run.next_node
        kinds = []
        while not isinstance(node, End):
            node = await run.next(node)
            kinds.append(type(node))
            assert Agent.is_end_node(node) == (type(node) is End)
        assert kinds == [ModelRequestNode, CallToolsNode, End]
        assert repr(run).startswith("<AgentRun result=FinalResult(data='Paris', tool_name=None, tool_call_id=None) ")
    assert node.data == FinalResult("Paris")


async def test_all_messages_can_replace_the_result_tool_return() -> None:
    agent = Agent(FunctionModel(Script(call("final_result", {"city": "a", "country": "b"}))), result_type=CityInfo)
    result = await agent.run("q")
    messages = result.all_messages(result_tool_return_content="thanks")
    last = messages[-1]
    assert isinstance(last, ModelRequest) and isinstance(last.parts[0], ToolReturnPart)
    assert last.parts[0].content == "thanks"
    assert ModelMessagesTypeAdapter.validate_json(result.new_messages_json()) == result.new_messages()
    text_result = await Agent(FunctionModel(Script(text("x")))).run("q")
    with pytest.raises(ValueError, match="when the return type is `str`"):
        text_result.all_messages(result_tool_return_content="x")


class Town(BaseModel):
    name: str
    pop: int


async def test_test_model_fills_a_structured_result_like_pydantic_ai() -> None:
    agent = Agent("test", result_type=Town)
    got: list[str] = []

    @agent.tool_plain
    def get(x: str) -> str:
        got.append(x)
        return "got " + x

    result = await agent.run("q")
    # the same figures pydantic-ai 0.0.40 gives for this agent
    assert (result.data, got) == (Town(name="a", pop=0), ["a"])
    assert (result.usage().requests, result.usage().request_tokens, result.usage().response_tokens) == (2, 104, 16)
    last = result.all_messages()[-1]
    assert isinstance(last, ModelRequest) and isinstance(last.parts[0], ToolReturnPart)
    assert (last.parts[0].tool_name, last.parts[0].content) == ("final_result", "Final result processed.")


def test_the_agent_graph_draws_like_any_graph() -> None:
    from railyard.agent._graph import agent_graph

    assert agent_graph.mermaid_code(start_node=UserPromptNode) == (
        "---\ntitle: agent\n---\nstateDiagram-v2\n"
        "  [*] --> UserPromptNode\n"
        "  UserPromptNode --> ModelRequestNode\n"
        "  ModelRequestNode --> CallToolsNode\n"
        "  CallToolsNode --> ModelRequestNode\n"
        "  CallToolsNode --> [*]"
    )


async def test_run_sync_inside_a_running_loop_says_what_to_do() -> None:
    agent = Agent(FunctionModel(Script(text("x"))))
    with pytest.raises(RuntimeError, match=r"^Agent\.run_sync\(\) cannot be called from a running event loop"):
        agent.run_sync("q")


async def test_capture_run_messages_keeps_the_first_runs_conversation_when_it_fails() -> None:
    from railyard.agent import capture_run_messages

    agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[])))
    with capture_run_messages() as messages:
        with pytest.raises(UnexpectedModelBehavior, match="Received empty model response"):
            await agent.run("first")
        with pytest.raises(UnexpectedModelBehavior):
            await agent.run("second")
    assert [type(m).__name__ for m in messages] == ["ModelRequest", "ModelResponse"]
    first = messages[0]
    assert isinstance(first, ModelRequest) and first.parts[0].content == "first"  # type: ignore[union-attr]
    ok = await Agent(FunctionModel(Script(text("x")))).run("outside")
    assert len(messages) == 2 and len(ok.all_messages()) == 2
