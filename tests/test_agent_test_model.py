"""TestModel: calls every tool once with arguments made up from their schemas, then answers."""

from __future__ import annotations

import datetime
import enum
import pathlib
from typing import Any, Literal

import pydantic
import pytest
from pydantic import BaseModel, TypeAdapter

from railyard.agent import Agent, ModelRetry, RunContext, UnexpectedModelBehavior, UserError
from railyard.agent.events import (
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPartDelta,
)
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import estimate_usage
from railyard.agent.models.test import TestModel, TestStreamedResponse, generate_args
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

pytestmark = pytest.mark.anyio


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    """An object schema with `props` (all required unless `required` says otherwise)."""
    return {"type": "object", "properties": props, "required": list(props) if required is None else required}


GET_CAPITAL = ToolDefinition(
    "get_capital",
    "Get the capital of a country.",
    {
        "additionalProperties": False,
        "properties": {
            "country": {"description": "The country name.", "title": "Country", "type": "string"},
            "max_len": {"description": "Maximum length.", "title": "Max Len", "type": "integer"},
        },
        "required": ["country"],
        "type": "object",
    },
)
GET_WEATHER = ToolDefinition(
    "get_weather", "", obj(city={"type": "string"}, kind={"enum": ["sunny", "rain"], "type": "string"})
)
TOOLS = [GET_CAPITAL, GET_WEATHER]


class City(BaseModel):
    """Information about a city."""

    name: str
    pop: int
    tags: list[str]
    kind: Literal["big", "small"]
    note: str | None = None


FINAL_CITY = ToolDefinition("final_result", "Information about a city.", TypeAdapter(City).json_schema())
FINAL_INT = ToolDefinition("final_result", "", obj(response={"title": "Response", "type": "integer"}), "response")


def info(
    tools: list[ToolDefinition] | None = None, *, text: bool = True, results: list[ToolDefinition] | None = None
) -> AgentInfo:
    return AgentInfo(
        function_tools=tools or [], allow_text_result=text, result_tools=results or [], model_settings=None
    )


def ask(prompt: str = "q") -> ModelRequest:
    return ModelRequest([UserPromptPart(prompt)])


async def answer(model: TestModel, messages: list[ModelMessage], agent_info: AgentInfo) -> ModelResponse:
    response, usage = await model.request(messages, agent_info)
    assert response.model_name == "test"
    assert usage == estimate_usage([*messages, response])
    return response


# -- the model on its own --------------------------------------------------------------------


async def test_names_repr_and_the_last_request_parameters() -> None:
    model = TestModel()
    assert (model.model_name, model.system) == ("test", "test")
    assert repr(model) == (
        "TestModel(call_tools='all', custom_result_text=None, custom_result_args=None, seed=0, "
        "last_model_request_parameters=None)"
    )
    agent_info = info([GET_CAPITAL])
    await model.request([ask()], agent_info)
    assert model.last_model_request_parameters is agent_info
    assert repr(model).endswith(f"seed=0, last_model_request_parameters={agent_info!r})")
    assert repr(TestModel(["a"], "hi", None, 3)).startswith(
        "TestModel(call_tools=['a'], custom_result_text='hi', custom_result_args=None, seed=3, "
    )


def test_the_newer_keyword_names_are_aliases() -> None:
    model = TestModel(custom_output_text="Paris")
    assert (model.custom_result_text, model.custom_output_text) == ("Paris", "Paris")
    model = TestModel(custom_output_args={"a": 1})
    assert (model.custom_result_args, model.custom_output_args) == ({"a": 1}, {"a": 1})
    with pytest.raises(UserError, match="`custom_result_text` or `custom_output_text`"):
        TestModel(custom_result_text="a", custom_output_text="b")
    with pytest.raises(UserError, match="`custom_result_args` or `custom_output_args`"):
        TestModel(custom_result_args={}, custom_output_args={})
    with pytest.raises(UserError, match="Cannot set both `custom_result_text` and `custom_result_args`"):
        TestModel(custom_result_text="a", custom_output_args={})
    with pytest.raises(UserError, match="call_tools must be 'all' or a list of tool names, got 'get_weather'"):
        TestModel(call_tools="get_weather")


async def test_the_first_request_calls_every_tool_in_order() -> None:
    response = await answer(TestModel(), [ask()], info(TOOLS))
    assert response.parts == [
        ToolCallPart("get_capital", {"country": "a"}, tool_call_id=None),
        ToolCallPart("get_weather", {"city": "a", "kind": "sunny"}, tool_call_id=None),
    ]


async def test_after_the_returns_it_answers_with_them_as_compact_json() -> None:
    call = ModelResponse([ToolCallPart("get_capital", {"country": "a"}), ToolCallPart("get_weather", {"city": "a"})])
    returns = ModelRequest([ToolReturnPart("get_capital", "capital of a"), ToolReturnPart("get_weather", {"temp": 20})])
    response = await answer(TestModel(), [ask(), call, returns], info(TOOLS))
    assert response.parts == [TextPart('{"get_capital":"capital of a","get_weather":{"temp":20}}')]


async def test_without_tools_it_answers_at_once() -> None:
    response = await answer(TestModel(), [ask()], info())
    assert response.parts == [TextPart("success (no tool calls)")]
    response = await answer(TestModel(custom_result_text="Paris"), [ask()], info())
    assert response.parts == [TextPart("Paris")]
    response = await answer(TestModel(call_tools=[]), [ask()], info(TOOLS))
    assert response.parts == [TextPart("success (no tool calls)")]


async def test_a_retried_tool_is_called_again_with_generated_args() -> None:
    # the arguments are made up again (the same ones, for the same seed), not copied from the call
    call = ModelResponse([ToolCallPart("get_capital", {"country": "x"}), ToolCallPart("get_weather", {"city": "x"})])
    retry = ModelRequest([ToolReturnPart("get_capital", "X"), RetryPromptPart("again", tool_name="get_weather")])
    messages: list[ModelMessage] = [ask(), call, retry]
    response = await answer(TestModel(), messages, info(TOOLS))
    assert response.parts == [ToolCallPart("get_weather", {"city": "a", "kind": "sunny"})]
    # once it returns, the answer has every return of the run
    messages += [response, ModelRequest([ToolReturnPart("get_weather", "sunny")])]
    response = await answer(TestModel(), messages, info(TOOLS))
    assert response.parts == [TextPart('{"get_capital":"X","get_weather":"sunny"}')]


async def test_a_retry_prompt_without_a_known_tool_gets_an_empty_answer() -> None:
    # as pydantic-ai's TestModel: a retry it cannot call a tool for is answered with no parts
    call = ModelResponse([ToolCallPart("get_capital", {"country": "a"})])
    for retry in (RetryPromptPart("Unknown tool name"), RetryPromptPart("x", tool_name="nope")):
        response = await answer(TestModel(), [ask(), call, ModelRequest([retry])], info(TOOLS))
        assert response.parts == []


async def test_call_tools_picks_the_tools_in_its_order() -> None:
    response = await answer(TestModel(call_tools=["get_weather"]), [ask()], info(TOOLS))
    assert [part.tool_name for part in response.parts if isinstance(part, ToolCallPart)] == ["get_weather"]
    response = await answer(TestModel(call_tools=["get_weather", "get_capital", "get_weather"]), [ask()], info(TOOLS))
    assert [part.tool_name for part in response.parts if isinstance(part, ToolCallPart)] == [
        "get_weather",
        "get_capital",
        "get_weather",
    ]
    with pytest.raises(
        UserError, match=r"call_tools names unknown tools: 'nope'\. Available tools: get_capital, get_weather$"
    ):
        await TestModel(call_tools=["nope", "get_capital"]).request([ask()], info(TOOLS))


async def test_a_continued_conversation_is_answered_without_calling_the_tools() -> None:
    # as pydantic-ai's TestModel: tools are called only while no answer is in the conversation,
    # and the answer has the returns of the whole conversation (the latest return of each tool)
    first_run: list[ModelMessage] = [
        ask("q"),
        ModelResponse([ToolCallPart("get_capital", {"country": "a"})]),
        ModelRequest([ToolReturnPart("get_capital", "old")]),
        ModelResponse([TextPart('{"get_capital":"old"}')]),
    ]
    response = await answer(TestModel(), [*first_run, ask("again")], info([GET_CAPITAL]))
    assert response.parts == [TextPart('{"get_capital":"old"}')]
    returned = [*first_run, ask("again"), ModelRequest([ToolReturnPart("get_capital", "new")])]
    response = await answer(TestModel(), returned, info([GET_CAPITAL]))
    assert response.parts == [TextPart('{"get_capital":"new"}')]


async def test_the_conversation_must_end_with_a_request() -> None:
    with pytest.raises(UserError, match="end with a request"):
        await TestModel().request([ask(), ModelResponse([TextPart("x")])], info())
    response = await answer(TestModel(), [], info([GET_CAPITAL]))
    assert response.parts == [ToolCallPart("get_capital", {"country": "a"})]


# -- result tools ----------------------------------------------------------------------------


async def test_a_structured_result_calls_the_first_result_tool_after_the_tools() -> None:
    other = ToolDefinition("final_result_B", "", obj(z={"type": "boolean"}))
    agent_info = info([GET_CAPITAL], text=False, results=[FINAL_CITY, other])
    messages: list[ModelMessage] = [ask()]
    response = await answer(TestModel(), messages, agent_info)
    assert response.parts == [ToolCallPart("get_capital", {"country": "a"})]
    messages += [response, ModelRequest([ToolReturnPart("get_capital", "capital of a")])]
    response = await answer(TestModel(), messages, agent_info)
    assert response.parts == [ToolCallPart("final_result", {"name": "a", "pop": 0, "tags": ["a"], "kind": "big"})]
    call = response.parts[0]
    assert isinstance(call, ToolCallPart)
    assert City.model_validate(call.args_as_dict()) == City(name="a", pop=0, tags=["a"], kind="big")


async def test_a_wrapped_result_is_generated_under_its_key() -> None:
    response = await answer(TestModel(), [ask()], info(text=False, results=[FINAL_INT]))
    assert response.parts == [ToolCallPart("final_result", {"response": 0})]
    wrapped_list = ToolDefinition(
        "final_result", "", obj(response=TypeAdapter(list[str]).json_schema()), outer_typed_dict_key="response"
    )
    response = await answer(TestModel(), [ask()], info(text=False, results=[wrapped_list]))
    assert response.parts == [ToolCallPart("final_result", {"response": ["a"]})]


async def test_custom_result_args_go_to_the_result_tool() -> None:
    city = {"name": "P", "pop": 1, "tags": [], "kind": "big"}
    response = await answer(TestModel(custom_result_args=city), [ask()], info(text=False, results=[FINAL_CITY]))
    assert response.parts == [ToolCallPart("final_result", city)]
    # a model instance is turned into its fields
    model = TestModel(custom_output_args=City(name="P", pop=1, tags=[], kind="big"))
    response = await answer(model, [ask()], info(text=False, results=[FINAL_CITY]))
    assert response.parts == [ToolCallPart("final_result", {**city, "note": None})]
    # under the wrapper key, whatever it is
    response = await answer(TestModel(custom_result_args=5), [ask()], info(text=False, results=[FINAL_INT]))
    assert response.parts == [ToolCallPart("final_result", {"response": 5})]
    # preferred over text when both are possible, an error when there is no result tool
    response = await answer(TestModel(custom_result_args=city), [ask()], info(results=[FINAL_CITY]))
    assert response.parts == [ToolCallPart("final_result", city)]
    with pytest.raises(UserError, match=r"^No result tools provided, but `custom_result_args` is set\.$"):
        await answer(TestModel(custom_result_args=city), [ask()], info())
    with pytest.raises(UserError, match="custom_result_args must be a dict of the result tool's arguments, got list"):
        await TestModel(custom_result_args=[1]).request([ask()], info(text=False, results=[FINAL_CITY]))


async def test_text_is_preferred_when_text_is_allowed() -> None:
    response = await answer(TestModel(), [ask()], info(results=[FINAL_CITY]))
    assert response.parts == [TextPart("success (no tool calls)")]


async def test_custom_result_text_needs_text_to_be_allowed() -> None:
    with pytest.raises(UserError) as exc_info:
        await TestModel(custom_result_text="Paris").request([ask()], info(text=False, results=[FINAL_CITY]))
    assert str(exc_info.value) == "Plain response not allowed, but `custom_result_text` is set."


async def test_a_retried_result_tool_is_called_again() -> None:
    messages: list[ModelMessage] = [
        ask(),
        ModelResponse([ToolCallPart("final_result", {"name": "a"})]),
        ModelRequest([RetryPromptPart("bad", tool_name="final_result")]),
    ]
    agent_info = info([GET_CAPITAL], text=False, results=[FINAL_CITY])
    response = await answer(TestModel(), messages, agent_info)
    assert response.parts == [ToolCallPart("final_result", {"name": "a", "pop": 0, "tags": ["a"], "kind": "big"})]
    response = await answer(TestModel(custom_result_args={"name": "Q"}), messages, agent_info)
    assert response.parts == [ToolCallPart("final_result", {"name": "Q"})]


class Inner(BaseModel):
    x: int
    label: str = "d"


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Outer(BaseModel):
    """A model with nested models, so its schema has `$defs`."""

    inner: Inner
    inners: list[Inner]
    maybe: Inner | None
    colour: Colour
    optional: int = 3


async def test_a_result_schema_with_defs() -> None:
    schema = TypeAdapter(Outer).json_schema()
    assert set(schema["$defs"]) == {"Colour", "Inner"}
    final = ToolDefinition("final_result", "A model.", schema)
    response = await answer(TestModel(), [ask()], info(text=False, results=[final]))
    args = {"inner": {"x": 0}, "inners": [{"x": 0}], "maybe": {"x": 0}, "colour": "red"}
    assert response.parts == [ToolCallPart("final_result", args)]
    assert Outer.model_validate(args) == Outer(
        inner=Inner(x=0), inners=[Inner(x=0)], maybe=Inner(x=0), colour=Colour.RED
    )


# -- arguments from JSON schemas ------------------------------------------------------------


def args_for(schema: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    return generate_args(ToolDefinition("t", "", schema), seed)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (obj(a={"type": "string"}, b={"type": "string"}, c={"type": "integer"}), {"a": "a", "b": "a", "c": 0}),
        (obj(f={"type": "number"}, b={"type": "boolean"}, n={"type": "null"}), {"f": 0.0, "b": False, "n": None}),
        (obj([], a={"type": "string"}), {}),
        (obj(["a"], a={"type": "string"}, b={"type": "integer"}), {"a": "a"}),
        ({"type": "object", "properties": {}}, {}),
        (obj(l={"type": "array", "items": {"type": "integer"}}), {"l": [0]}),
        (obj(l={"type": "array", "items": {"type": "array", "items": {"type": "string"}}}), {"l": [["a"]]}),
        (obj(l={"type": "array"}), {"l": []}),
        (
            obj(e={"enum": ["big", "small"]}, k={"const": "K"}, t={"const": 5, "type": "integer"}),
            {"e": "big", "k": "K", "t": 5},
        ),
        (obj(u={"anyOf": [{"type": "integer"}, {"type": "string"}]}), {"u": 0}),
        (obj(u={"anyOf": [{"type": "null"}, {"type": "integer"}]}), {"u": None}),
        (obj(u={"oneOf": [{"type": "null"}, {"type": "object"}]}), {"u": "a"}),  # `oneOf` is not read
        (obj(u={"anyOf": [{"type": "null"}]}), {"u": None}),
        (obj(u={"type": ["null", "integer"]}, v={"type": ["string", "null"]}), {"u": None, "v": "a"}),
        (obj(a={"allOf": [{"type": "integer"}]}), {"a": "a"}),  # nor `allOf`
        (obj(a={}, b={"title": "B"}), {"a": "a", "b": "a"}),
        ({"type": "object", "required": ["a"]}, {}),  # only required properties that are described
        (obj(o=obj(p=obj(q={"type": "integer"}))), {"o": {"p": {"q": 0}}}),
        (obj(a={"items": {"type": "integer"}}, b={"properties": {}}), {"a": "a", "b": "a"}),  # no type: a string
        (
            {**obj(a={"$ref": "#/$defs/X"}), "$defs": {"X": obj(q={"type": "boolean"})}},
            {"a": {"q": False}},
        ),
        (
            {**obj(a={"$ref": "#/definitions/X", "description": "d"}), "definitions": {"X": {"type": "integer"}}},
            {"a": 0},
        ),
        (obj(d={"type": "object", "additionalProperties": {"type": "integer"}}), {"d": {"additionalProperty": 0}}),
        (obj(d={"type": "object", "additionalProperties": False}), {"d": {}}),
        (obj(a={"type": "string", "examples": ["zz"]}), {"a": "zz"}),
        (
            obj(
                d={"type": "string", "format": "date"},
                dt={"type": "string", "format": "date-time"},
                t={"type": "string", "format": "time"},
                du={"type": "string", "format": "duration"},
                u={"type": "string", "format": "uuid"},
                e={"type": "string", "format": "email"},
                url={"type": "string", "format": "uri", "minLength": 1},
                ip={"type": "string", "format": "ipv4"},
                b={"type": "string", "format": "binary"},
            ),
            {
                "d": "2024-01-01",
                # only a date is made for its format (as pydantic-ai does), the rest are plain strings
                "dt": "a",
                "t": "a",
                "du": "a",
                "u": "a",
                "e": "a",
                "url": "a",
                "ip": "a",
                "b": "a",
            },
        ),
        (
            obj(
                i={"type": "integer", "minimum": 5},
                j={"type": "integer", "exclusiveMinimum": 5},
                k={"type": "integer", "maximum": -3},
                m={"type": "integer", "multipleOf": 7, "minimum": 1},
                f={"type": "number", "exclusiveMinimum": 1.5},
                g={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
                h={"type": "number", "exclusiveMaximum": 0},
            ),
            # bounds move the seed, exclusive ones by one more; `multipleOf` is not read
            {"i": 5, "j": 6, "k": -3, "m": 1, "f": 2.5, "g": 1.0, "h": -1.0},
        ),
        (
            obj(
                s={"type": "string", "minLength": 3},
                t={"type": "string", "maxLength": 0},
                l={"type": "array", "items": {"type": "string"}, "minItems": 2},
                n={"type": "array", "items": {"type": "string"}, "maxItems": 0},
                u={"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
                p={"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
            ),
            # unique items move the seed on by one each, for the rest of the value too
            {"s": "aaa", "t": "", "l": ["a", "a"], "n": [], "u": [0, 1, 2], "p": [3, "d"]},
        ),
    ],
)
def test_generated_arguments(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert args_for(schema) == expected


def test_the_seed_varies_the_values() -> None:
    schema = obj(
        s={"type": "string"},
        i={"type": "integer"},
        f={"type": "number"},
        b={"type": "boolean"},
        e={"enum": ["x", "y", "z"]},
        d={"type": "string", "format": "date"},
    )
    assert args_for(schema, 1) == {"s": "b", "i": 1, "f": 1.0, "b": True, "e": "y", "d": "2024-01-02"}
    assert args_for(schema, 26) == {"s": "A", "i": 26, "f": 26.0, "b": False, "e": "z", "d": "2024-01-27"}
    # strings are spelled in letters, digits, then punctuation, then two characters
    assert [args_for(schema, seed)["s"] for seed in (52, 62, 93, 94, 95, 94 * 94)] == ["0", "!", "~", "aa", "ab", "~aa"]


class Node(BaseModel):
    name: str
    children: list[Node]
    parent: Node | None


def test_recursive_schemas_end_in_an_empty_list_or_null() -> None:
    assert args_for(TypeAdapter(Node).json_schema()) == {"name": "a", "children": [], "parent": None}
    looped = {**obj(a={"$ref": "#/$defs/A"}), "$defs": {"A": obj(a={"$ref": "#/$defs/A"})}}
    with pytest.raises(UserError, match="recursive JSON schema '#/\\$defs/A'"):
        args_for(looped)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (obj(a={"type": "weird"}), "JSON schema type 'weird'"),
        (obj(a={"$ref": "#/$defs/Missing"}), "reference '#/\\$defs/Missing' points nowhere"),
        (obj(a={"$ref": "https://example.com/schema"}), "Cannot follow the JSON schema reference"),
        (obj(a=False), "Cannot generate test data for the JSON schema False"),
        ({"type": "string"}, "Tool 't': its parameters' JSON schema is not an object"),
    ],
)
def test_schemas_it_cannot_satisfy(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        args_for(schema)


class Everything(BaseModel):
    """Types whose made-up values validate: pydantic-ai's values for others (a UUID, a URL) do not."""

    when: datetime.date
    path: pathlib.Path
    positive: pydantic.PositiveInt
    negative: pydantic.NegativeFloat
    raw: bytes
    secret: pydantic.SecretStr
    frozen: frozenset[str]
    triple: tuple[int, str, bool]
    mapping: dict[str, Inner]
    literal: Literal[3, 4]
    anything: Any
    outer: Outer
    tree: Node


@pytest.mark.parametrize("seed", [0, 1, 7, 61, 1000])
def test_generated_arguments_validate(seed: int) -> None:
    adapter = TypeAdapter(Everything)
    adapter.validate_python(args_for(adapter.json_schema(), seed))


# -- runs of an agent ----------------------------------------------------------------------------


async def test_an_agent_without_tools_succeeds_with_no_tool_calls() -> None:
    result = await Agent(TestModel()).run("hello")
    assert result.data == "success (no tool calls)"
    assert result.usage() == Usage(requests=1, request_tokens=51, response_tokens=4, total_tokens=55)
    assert [type(message) for message in result.all_messages()] == [ModelRequest, ModelResponse]


def test_run_sync_with_a_system_prompt() -> None:
    agent = Agent(TestModel(), system_prompt="Be brief.")
    result = agent.run_sync("What is the capital of France?")
    assert result.data == "success (no tool calls)"
    assert result.usage() == Usage(requests=1, request_tokens=59, response_tokens=4, total_tokens=63)
    first = result.all_messages()[0]
    assert isinstance(first, ModelRequest) and isinstance(first.parts[0], SystemPromptPart)


def weather_agent(model: TestModel) -> Agent[str]:
    agent: Agent[str] = Agent(model, system_prompt=())

    @agent.tool
    def get_capital(ctx: RunContext[str], country: str, max_len: int = 10) -> str:
        """Get the capital of a country.

        Args:
            country: The country name.
            max_len: The longest answer.
        """
        assert ctx.tool_name == "get_capital"
        return f"capital of {country}"

    @agent.tool_plain
    def get_weather(city: str) -> dict[str, Any]:
        """Get the weather in a city."""
        return {"temp": 20, "city": city}

    return agent


async def test_an_agent_calls_each_tool_once_then_answers_with_their_returns() -> None:
    model = TestModel()
    result = await weather_agent(model).run("What is the weather in the capital of France?", deps="d")
    assert result.data == '{"get_capital":"capital of a","get_weather":{"temp":20,"city":"a"}}'
    assert result.usage() == Usage(requests=2, request_tokens=127, response_tokens=32, total_tokens=159)
    messages = result.all_messages()
    assert len(messages) == 4
    assert isinstance(messages[1], ModelResponse)
    assert messages[1].parts == [
        ToolCallPart("get_capital", {"country": "a"}),
        ToolCallPart("get_weather", {"city": "a"}),
    ]
    assert isinstance(messages[2], ModelRequest)
    assert [(part.tool_name, part.content) for part in messages[2].parts if isinstance(part, ToolReturnPart)] == [
        ("get_capital", "capital of a"),
        ("get_weather", {"temp": 20, "city": "a"}),
    ]
    assert model.last_model_request_parameters is not None
    assert [tool.name for tool in model.last_model_request_parameters.function_tools] == ["get_capital", "get_weather"]
    assert model.last_model_request_parameters.allow_text_result


async def test_call_tools_limits_which_tools_run() -> None:
    result = await weather_agent(TestModel(call_tools=["get_weather"])).run("q", deps="d")
    assert result.data == '{"get_weather":{"temp":20,"city":"a"}}'
    assert result.usage() == Usage(requests=2, request_tokens=108, response_tokens=18, total_tokens=126)
    with pytest.raises(UserError, match="call_tools names unknown tools: 'nope'"):
        await weather_agent(TestModel(call_tools=["nope"])).run("q", deps="d")


async def test_custom_result_text_answers_after_the_tools() -> None:
    result = await weather_agent(TestModel(call_tools=["get_capital"], custom_result_text="Paris")).run("q", deps="d")
    assert result.data == "Paris"
    assert result.usage() == Usage(requests=2, request_tokens=105, response_tokens=11, total_tokens=116)
    result = await Agent(TestModel(custom_output_text="Paris")).run("q")
    assert result.data == "Paris"
    assert result.usage() == Usage(requests=1, request_tokens=51, response_tokens=1, total_tokens=52)


async def test_a_tool_that_asks_for_a_retry_is_called_again_with_the_same_args() -> None:
    agent = Agent(TestModel(), retries=1)
    calls: list[int] = []

    @agent.tool_plain
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ModelRetry("again")
        return x

    result = await agent.run("q")
    assert result.data == '{"flaky":0}'
    assert calls == [0, 0]
    assert result.usage() == Usage(requests=3, request_tokens=170, response_tokens=23, total_tokens=193)
    assert [type(part) for message in result.all_messages() for part in message.parts] == [
        UserPromptPart,
        ToolCallPart,
        RetryPromptPart,
        ToolCallPart,
        ToolReturnPart,
        TextPart,
    ]


async def test_only_the_retried_tool_is_called_again_and_the_answer_has_every_return() -> None:
    agent = Agent(TestModel())
    count = {"b": 0}

    @agent.tool_plain
    def ta(x: int) -> str:
        return f"A{x}"

    @agent.tool_plain
    def tb(y: str) -> str:
        count["b"] += 1
        if count["b"] == 1:
            raise ModelRetry("again")
        return f"B{count['b']}"

    result = await agent.run("q")
    assert result.data == '{"ta":"A0","tb":"B2"}'
    assert result.usage() == Usage(requests=3, request_tokens=172, response_tokens=43, total_tokens=215)
    retry_call = result.all_messages()[3]
    assert isinstance(retry_call, ModelResponse) and retry_call.parts == [ToolCallPart("tb", {"y": "a"})]

    # a later run of the same conversation answers with those returns, calling no tool (as pydantic-ai)
    again = await agent.run("again", message_history=result.all_messages())
    assert again.data == '{"ta":"A0","tb":"B2"}'
    assert count["b"] == 2


async def test_a_tool_that_always_retries_exhausts_its_retries() -> None:
    agent = Agent(TestModel(), retries=2)

    @agent.tool_plain
    def bad(x: int) -> int:
        raise ModelRetry("no")

    with pytest.raises(UnexpectedModelBehavior, match="Tool exceeded max retries count of 2"):
        await agent.run("q")


# -- streaming -------------------------------------------------------------------------------
# The expected events and usage figures are what pydantic-ai 0.0.40's TestModel streams
# for the same conversations.

WEATHER_RETURNS: list[ModelMessage] = [
    ask(),
    ModelResponse(
        [ToolCallPart("get_capital", {"country": "a"}), ToolCallPart("get_weather", {"city": "a", "kind": "sunny"})]
    ),
    ModelRequest([ToolReturnPart("get_capital", "Paris"), ToolReturnPart("get_weather", "sunny and warm")]),
]


async def stream(
    model: TestModel, messages: list[ModelMessage], agent_info: AgentInfo, stop_after: int | None = None
) -> tuple[list[ModelResponseStreamEvent], ModelResponse, Usage]:
    """The events (the first `stop_after` only, if given), then what `get()` and `usage()` give."""
    events: list[ModelResponseStreamEvent] = []
    async with model.request_stream(messages, agent_info) as response:
        assert isinstance(response, TestStreamedResponse)
        async for event in response:
            events.append(event)
            if stop_after is not None and len(events) == stop_after:
                break
        return events, response.get(), response.usage()


def text_deltas(*pieces: str) -> list[ModelResponseStreamEvent]:
    return [PartStartEvent(0, TextPart("")), *(PartDeltaEvent(0, TextPartDelta(piece)) for piece in pieces)]


async def test_streamed_tool_calls_start_whole() -> None:
    model = TestModel()
    events, response, usage = await stream(model, [ask()], info(TOOLS))
    calls = [
        ToolCallPart("get_capital", {"country": "a"}),
        ToolCallPart("get_weather", {"city": "a", "kind": "sunny"}),
    ]
    assert events == [PartStartEvent(0, calls[0]), PartStartEvent(1, calls[1])]
    assert response.parts == calls
    assert response.parts == (await model.request([ask()], info(TOOLS)))[0].parts
    # streamed tool calls add no response tokens (a request counts 12 for these calls)
    assert usage == Usage(requests=1, request_tokens=51, response_tokens=0, total_tokens=51)


async def test_a_streamed_text_answer_arrives_cut_after_each_space() -> None:
    model = TestModel()
    events, response, usage = await stream(model, WEATHER_RETURNS, info(TOOLS))
    assert events == text_deltas('{"get_capital":"Paris","get_weather":"sunny ', "and ", 'warm"}')
    whole, whole_usage = await model.request(WEATHER_RETURNS, info(TOOLS))
    assert response.parts == whole.parts == [TextPart('{"get_capital":"Paris","get_weather":"sunny and warm"}')]
    assert (response.model_name, whole.model_name) == ("test", "test")
    assert usage == whole_usage == Usage(requests=1, request_tokens=55, response_tokens=20, total_tokens=75)


async def test_a_streamed_text_without_spaces_arrives_in_two_halves() -> None:
    model = TestModel(custom_result_text='{"get":0}')
    events, response, usage = await stream(model, [ask()], info())
    assert events == text_deltas('{"ge', 't":0}')
    assert response.parts == [TextPart('{"get":0}')]
    # each piece counts its own words: '{', 'ge' and 't', '0}' (a request counts 3)
    assert usage == Usage(requests=1, request_tokens=51, response_tokens=4, total_tokens=55)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", [""]),
        ("a", ["a"]),
        ("ab", ["ab"]),
        ("abc", ["a", "bc"]),
        ("hello", ["he", "llo"]),
        ("supercalifragilistic", ["supercalif", "ragilistic"]),
        ("hello world", ["hello ", "world"]),
        ("Paris is the capital", ["Paris ", "is ", "the ", "capital"]),
        ("supercalifragilistic word", ["supercalifragilistic ", "word"]),
        ("a  b   c", ["a ", " ", "b ", " ", " ", "c"]),
        (" lead", [" ", "lead"]),
        ("trail ", ["trail ", ""]),
        ("  ", [" ", " ", ""]),
        ("x\ny\n z", ["x\ny\n ", "z"]),
        ("ab\tcd", ["ab", "\tcd"]),
        ("héllo", ["hé", "llo"]),
    ],
)
async def test_how_streamed_text_is_cut(text: str, pieces: list[str]) -> None:
    events, response, _ = await stream(TestModel(custom_result_text=text), [ask()], info())
    assert events == text_deltas(*pieces)
    assert response.parts == [TextPart(text)]


@pytest.mark.parametrize(
    ("text", "response_tokens"),
    [("", 0), ("hello", 2), ("hello world", 2), ("a  b   c", 6), ("trail ", 1), ("hello, world. yes", 5)],
)
async def test_streamed_text_counts_the_words_of_each_piece(text: str, response_tokens: int) -> None:
    _, _, usage = await stream(TestModel(custom_result_text=text), [ask()], info())
    assert usage == Usage(
        requests=1, request_tokens=51, response_tokens=response_tokens, total_tokens=51 + response_tokens
    )


async def test_a_streamed_structured_result_is_one_call_of_the_result_tool() -> None:
    model = TestModel()
    agent_info = info(text=False, results=[FINAL_CITY])
    events, response, usage = await stream(model, [ask()], agent_info)
    call = ToolCallPart("final_result", {"name": "a", "pop": 0, "tags": ["a"], "kind": "big"})
    assert events == [PartStartEvent(0, call)]
    assert response.parts == [call] == (await model.request([ask()], agent_info))[0].parts
    assert response.model_name == "test"
    assert usage == Usage(requests=1, request_tokens=51, response_tokens=0, total_tokens=51)


async def test_a_streamed_request_records_its_parameters_and_fails_on_entering() -> None:
    model = TestModel()
    agent_info = info([GET_CAPITAL])
    async with model.request_stream([ask()], agent_info) as response:
        assert model.last_model_request_parameters is agent_info
        # nothing has arrived yet; the usage is that of the conversation sent
        assert response.get().parts == []
        assert response.usage() == Usage(requests=1, request_tokens=51, response_tokens=0, total_tokens=51)
    model = TestModel(custom_result_text="x")
    with pytest.raises(UserError, match="Plain response not allowed, but `custom_result_text` is set"):
        async with model.request_stream([ask()], info(text=False, results=[FINAL_INT])):
            pytest.fail("the block should not run")


async def test_a_stream_drained_early_gives_what_arrived() -> None:
    events, response, usage = await stream(TestModel(), WEATHER_RETURNS, info(TOOLS), stop_after=3)
    assert events == text_deltas('{"get_capital":"Paris","get_weather":"sunny ', "and ")
    assert response.parts == [TextPart('{"get_capital":"Paris","get_weather":"sunny and ')]
    assert response.model_name == "test"
    assert usage == Usage(requests=1, request_tokens=55, response_tokens=18, total_tokens=73)

    events, response, usage = await stream(TestModel(), WEATHER_RETURNS, info(TOOLS), stop_after=1)
    assert response.parts == [TextPart("")]
    assert usage == Usage(requests=1, request_tokens=55, response_tokens=12, total_tokens=67)

    events, response, usage = await stream(TestModel(), [ask()], info(TOOLS), stop_after=1)
    assert response.parts == [ToolCallPart("get_capital", {"country": "a"})]
    assert usage == Usage(requests=1, request_tokens=51, response_tokens=0, total_tokens=51)
