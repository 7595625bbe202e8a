"""pydantic-ai drop-in: how tools are read from functions (signatures, docstrings) and called."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pydantic
import pytest

from railyard.agent import Agent, RunContext, Tool, UserError
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from railyard.agent.models.function import AgentInfo, FunctionModel
from railyard.agent.models.test import TestModel
from railyard.agent.tools import ToolDefinition

pytestmark = pytest.mark.anyio


def definition_of(tool: Tool[Any]) -> dict[str, Any]:
    return json.loads(pydantic.TypeAdapter(ToolDefinition).dump_json(tool.definition))


# -- *args and **kwargs -------------------------------------------------------------------------


def total(first: int, *rest: int) -> int:
    return first + sum(rest)


def labelled(name: str, **labels: int) -> str:
    return name + "".join(f",{key}={value}" for key, value in sorted(labels.items()))


def test_star_args_are_a_list_parameter() -> None:
    schema = Tool(total).definition.parameters_json_schema
    assert schema["properties"]["rest"] == {"items": {"type": "integer"}, "title": "Rest", "type": "array"}
    assert schema["required"] == ["first", "rest"]
    assert schema["additionalProperties"] is False


def test_star_star_kwargs_allow_more_properties() -> None:
    schema = Tool(labelled).definition.parameters_json_schema
    assert schema["additionalProperties"] is True
    assert list(schema["properties"]) == ["name"]


async def test_star_args_and_kwargs_are_called_with_what_the_model_sent() -> None:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(
                [
                    ToolCallPart("total", {"first": 1, "rest": [2, 3]}),
                    ToolCallPart("labelled", '{"name": "n", "b": 2, "a": "1"}'),
                ]
            )
        returns = [part.content for part in messages[-1].parts]  # type: ignore[union-attr]
        return ModelResponse([TextPart(json.dumps(returns))])

    agent = Agent(FunctionModel(answer), tools=[total, labelled])
    result = await agent.run("q")
    assert json.loads(result.data) == [6, "n,a=1,b=2"]


async def test_a_kwargs_value_of_the_wrong_type_asks_the_model_again() -> None:
    tool = Tool(labelled)
    retry = tool.validate_args(ToolCallPart("labelled", {"name": "n", "x": "not a number"}))
    assert not isinstance(retry, dict)
    assert retry.content[0]["loc"] == ("x",)  # type: ignore[index]


# -- run context checks -----------------------------------------------------------------------------


def test_tool_needs_a_run_context_first() -> None:
    agent = Agent(TestModel())

    def no_context(x: int) -> int:
        return x

    with pytest.raises(UserError) as caught:
        agent.tool(no_context)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"Error generating schema for {no_context.__qualname__}:\n"
        "  First parameter of tools that take context must be annotated with RunContext[...]"
    )


def test_tool_plain_must_not_take_a_run_context() -> None:
    def with_context(ctx: RunContext[None], x: int) -> int:
        return x

    with pytest.raises(UserError, match=r"RunContext annotations can only be used with tools that take context$"):
        Agent(TestModel()).tool_plain(with_context)


def test_the_run_context_second_is_two_errors() -> None:
    def second(x: int, ctx: RunContext[None]) -> int:
        return x

    with pytest.raises(UserError) as caught:
        Tool(second, takes_ctx=True)
    assert str(caught.value).splitlines()[1:] == [
        "  First parameter of tools that take context must be annotated with RunContext[...]",
        "  RunContext annotations can only be used as the first argument",
    ]


def test_the_context_is_inferred_from_the_annotation() -> None:
    def with_context(ctx: RunContext[int], x: int) -> int:
        return x + ctx.deps

    def plain(x: int) -> int:
        return x

    assert (Tool(with_context).takes_ctx, Tool(plain).takes_ctx) == (True, False)
    agent = Agent("test", tools=[with_context, plain], deps_type=int, retries=3)
    assert {name: tool.max_retries for name, tool in agent._function_tools.items()} == {"with_context": 3, "plain": 3}


# -- descriptions from docstrings ---------------------------------------------------------------------


def documented(a: int, b: Annotated[str, pydantic.Field(description="from the field")]) -> str:
    """Join a and b.

    Args:
        a: the a.
        b: the b, from the docstring.

    Returns:
        The two, joined.
    """
    return f"{a}{b}"


def test_google_sections_after_the_description_are_left_out() -> None:
    assert Tool(documented).description == "Join a and b."


def test_a_description_in_the_annotation_wins_over_the_docstring() -> None:
    properties = Tool(documented).definition.parameters_json_schema["properties"]
    assert properties["a"]["description"] == "the a."
    assert properties["b"]["description"] == "from the field"


def test_a_docstring_of_parameters_only_has_an_empty_description() -> None:
    def parameters_only(a: int) -> int:
        """
        Args:
            a: the a.
        """
        return a

    assert Tool(parameters_only).description == ""


def test_a_returns_section_alone_is_left_out() -> None:
    def returns_only() -> str:
        """Say hi.

        Returns:
            A greeting.
        """
        return "hi"

    assert Tool(returns_only).description == "Say hi."


class Point(pydantic.BaseModel):
    x: int


class Described(pydantic.BaseModel):
    """A point with a story."""

    x: int


def test_a_single_model_parameter_takes_its_description_from_the_model() -> None:
    def undocumented(point: Point) -> int:
        return point.x

    def documented_model(point: Described) -> int:
        return point.x

    assert definition_of(Tool(undocumented))["description"] is None
    assert Tool(documented_model).description == "A point with a story."
    assert "description" not in Tool(documented_model).definition.parameters_json_schema


def test_a_function_without_docstring_has_an_empty_description() -> None:
    def bare(x: int) -> int:
        return x

    assert Tool(bare).description == ""


# -- Tool subclasses --------------------------------------------------------------------------


class Secret(Tool[int]):
    """A tool only runs with deps 42 can see... not."""

    def __init__(self) -> None:
        super().__init__(self.reveal, takes_ctx=False)

    def reveal(self, x: int) -> str:
        return f"secret {x}"

    async def prepare_tool_def(self, ctx: RunContext[int]) -> ToolDefinition | None:
        if ctx.deps == 42:
            return None
        return await super().prepare_tool_def(ctx)


async def test_a_tool_subclass_can_withhold_itself_per_run() -> None:
    agent = Agent("test", tools=[Secret()], deps_type=int)
    assert (await agent.run("q", deps=1)).data == '{"reveal":"secret 0"}'
    assert (await agent.run("q", deps=42)).data == "success (no tool calls)"


def test_a_tool_whose_function_is_its_own_method_has_a_repr() -> None:
    assert repr(Secret()).startswith("Secret(function='Secret.reveal', takes_ctx=False")
