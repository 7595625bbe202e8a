"""Agent tools: the schema the model sees, read from signatures and docstrings; argument checks."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Literal

import pydantic
import pytest

from railyard.agent.context import RunContext
from railyard.agent.exceptions import ModelRetry, UnexpectedModelBehavior, UserError
from railyard.agent.messages import RetryPromptPart, ToolCallPart, ToolReturnPart
from railyard.agent.tools import Tool, ToolDefinition, function_schema
from railyard.agent.usage import Usage


def get_capital(ctx: Any, country: str, max_len: int = 10) -> str:
    """Get the capital of a country.

    Args:
        country: The country name, e.g. France.
        max_len: Maximum length of the answer.
    """
    return country[:max_len]


def test_google_docstring_schema_leaves_out_the_context_and_defaults() -> None:
    tool = Tool(get_capital, takes_ctx=True)
    assert tool.definition == ToolDefinition(
        name="get_capital",
        description="Get the capital of a country.",
        parameters_json_schema={
            "additionalProperties": False,
            "properties": {
                "country": {"description": "The country name, e.g. France.", "title": "Country", "type": "string"},
                "max_len": {"description": "Maximum length of the answer.", "title": "Max Len", "type": "integer"},
            },
            "required": ["country"],
            "type": "object",
        },
    )
    assert list(tool.definition.parameters_json_schema) == ["additionalProperties", "properties", "required", "type"]


def sphinx(note: str | None = None, kind: Literal["x", "y"] = "x", xs: list[str] | None = None, r: float = 1.0) -> None:
    """Add two numbers.

    Longer description line.

    :param note: a note
    :param kind: the kind,
        on two lines
    :returns: nothing
    """


def numpy_style(q: str, limit: int = 3) -> None:
    """Search.

    Parameters
    ----------
    q : str
        the query
    limit : int
        how many

    Returns
    -------
    None
    """


def test_sphinx_docstring_keeps_the_rest_of_the_text() -> None:
    description, schema = function_schema(sphinx, takes_ctx=False)
    assert description == "Add two numbers.\n\nLonger description line."
    assert schema["properties"] == {
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "a note", "title": "Note"},
        "kind": {"description": "the kind,\non two lines", "enum": ["x", "y"], "title": "Kind", "type": "string"},
        "xs": {"anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}], "title": "Xs"},
        "r": {"title": "R", "type": "number"},
    }
    assert "required" not in schema


def test_numpy_docstring() -> None:
    # the description ends where the first section begins, as pydantic-ai reads it
    description, schema = function_schema(numpy_style, takes_ctx=False)
    assert description == "Search."
    assert schema["properties"]["q"]["description"] == "the query"
    assert schema["properties"]["limit"]["description"] == "how many"
    assert schema["required"] == ["q"]


def test_no_docstring_and_no_parameters() -> None:
    def ping() -> str:
        return "pong"

    assert Tool(ping, takes_ctx=False).definition == ToolDefinition(
        "ping", "", {"additionalProperties": False, "properties": {}, "type": "object"}
    )


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


@dataclass
class Box:
    w: int


def test_a_single_model_parameter_is_the_schema() -> None:
    def plot(point: Point) -> str:
        return f"{point.x},{point.y}"

    tool = Tool(plot, takes_ctx=False, name="renamed", description="Plot it.")
    assert tool.definition == ToolDefinition(
        "renamed",
        "Plot it.",
        {
            "properties": {
                "x": {"title": "X", "type": "integer"},
                "y": {"default": 0, "title": "Y", "type": "integer"},
            },
            "required": ["x"],
            "title": "Point",
            "type": "object",
        },
    )
    assert tool.validate_args(ToolCallPart("renamed", '{"x": 3}')) == {"point": Point(x=3, y=0)}

    def pack(box: Box) -> int:
        return box.w

    assert Tool(pack, takes_ctx=False).validate_args(ToolCallPart("pack", {"w": 2})) == {"box": Box(w=2)}


def test_valid_arguments_come_back_as_keywords_with_defaults() -> None:
    tool = Tool(get_capital, takes_ctx=True)
    assert tool.validate_args(ToolCallPart("get_capital", {"country": "France"})) == {
        "country": "France",
        "max_len": 10,
    }
    assert tool.validate_args(ToolCallPart("get_capital", '{"country": "Peru", "max_len": "4"}')) == {
        "country": "Peru",
        "max_len": 4,
    }


def test_invalid_arguments_become_a_retry_prompt() -> None:
    tool = Tool(get_capital, takes_ctx=True)
    retry = tool.validate_args(ToolCallPart("get_capital", {"country": 123, "extra": 1}, "c1"))
    assert isinstance(retry, RetryPromptPart)
    assert (retry.tool_name, retry.tool_call_id) == ("get_capital", "c1")
    assert retry.content == [
        {"type": "string_type", "loc": ("country",), "msg": "Input should be a valid string", "input": 123},
        {"type": "extra_forbidden", "loc": ("extra",), "msg": "Extra inputs are not permitted", "input": 1},
    ]
    assert retry.model_response().startswith('2 validation errors: [\n  {\n    "type": "string_type"')

    broken = tool.validate_args(ToolCallPart("get_capital", '{"country": "Fra', "c2"))
    assert isinstance(broken, RetryPromptPart)
    assert broken.content == [
        {
            "type": "json_invalid",
            "loc": (),
            "msg": "Invalid JSON: EOF while parsing a string at line 1 column 16",
            "input": '{"country": "Fra',
            "ctx": {"error": "EOF while parsing a string at line 1 column 16"},
        }
    ]
    text = broken.model_response()
    assert json.loads(text[len("1 validation errors: ") : -len("\n\nFix the errors and try again.")]) == [
        {"type": "json_invalid", "loc": [], "msg": broken.content[0]["msg"], "input": '{"country": "Fra'}
    ]

    missing = tool.validate_args(ToolCallPart("get_capital", {}))
    assert isinstance(missing, RetryPromptPart)
    assert missing.content == [{"type": "missing", "loc": ("country",), "msg": "Field required", "input": {}}]


def test_bad_tool_definitions_are_named() -> None:
    # `*args` is accepted (as pydantic-ai accepts it): see test_agent_dropin_tools.py
    def no_ctx() -> None:
        return None

    with pytest.raises(UserError, match="takes a run context"):
        Tool(no_ctx, takes_ctx=True)
    with pytest.raises(UserError, match="max_retries must be 0 or more, got -1"):
        Tool(get_capital, takes_ctx=True, max_retries=-1)


def run_context(retry: int = 0) -> RunContext[str]:
    return RunContext(deps="DEPS", model=None, usage=Usage(), prompt="q", retry=retry)


@pytest.mark.anyio
async def test_a_tool_with_context_gets_its_name_call_id_and_deps() -> None:
    seen: list[RunContext[str]] = []

    async def lookup(ctx: RunContext[str], key: str) -> dict[str, str]:
        seen.append(ctx)
        return {key: ctx.deps}

    tool = Tool(lookup, takes_ctx=True)
    ctx = run_context()
    part = await tool.call(ToolCallPart("lookup", {"key": "k"}, "c9"), ctx)
    assert isinstance(part, ToolReturnPart)
    assert (part.tool_name, part.content, part.tool_call_id) == ("lookup", {"k": "DEPS"}, "c9")
    assert (seen[0].tool_name, seen[0].tool_call_id, seen[0].usage) == ("lookup", "c9", ctx.usage)
    assert seen[0].usage is ctx.usage
    assert ctx.tool_name is None


@pytest.mark.anyio
async def test_a_sync_tool_runs_off_the_event_loop_thread() -> None:
    threads: list[int] = []

    def where() -> str:
        threads.append(threading.get_ident())
        return "here"

    part = await Tool(where, takes_ctx=False).call(ToolCallPart("where", "{}"), run_context())
    assert isinstance(part, ToolReturnPart) and part.content == "here"
    assert threads != [threading.get_ident()]


def grumpy(country: str) -> str:
    raise ModelRetry(f"Unknown country {country}, try again")


@pytest.mark.anyio
async def test_model_retry_becomes_a_retry_prompt_until_the_limit() -> None:
    tool = Tool(grumpy, takes_ctx=False, max_retries=2)
    call = ToolCallPart("grumpy", {"country": "Narnia"}, "c5")
    for retry in (0, 1):
        part = await tool.call(call, run_context(retry))
        assert isinstance(part, RetryPromptPart)
        assert (part.content, part.tool_name, part.tool_call_id) == (
            "Unknown country Narnia, try again",
            "grumpy",
            "c5",
        )
    with pytest.raises(UnexpectedModelBehavior, match=r"^Tool exceeded max retries count of 2$") as raised:
        await tool.call(call, run_context(2))
    assert isinstance(raised.value.__cause__, ModelRetry)


@pytest.mark.anyio
async def test_invalid_arguments_count_against_the_retries_too() -> None:
    tool = Tool(grumpy, takes_ctx=False)
    assert isinstance(await tool.call(ToolCallPart("grumpy", {}), run_context(0)), RetryPromptPart)
    with pytest.raises(UnexpectedModelBehavior, match="max retries count of 1"):
        await tool.call(ToolCallPart("grumpy", {}), run_context(1))


@pytest.mark.anyio
async def test_other_exceptions_propagate_unchanged() -> None:
    def broken() -> None:
        raise ValueError("kaboom")

    with pytest.raises(ValueError, match="kaboom"):
        await Tool(broken, takes_ctx=False).call(ToolCallPart("broken", {}), run_context())


def test_tool_reads_takes_ctx_from_the_annotation_and_retries_from_the_agent() -> None:
    from railyard.agent import Agent
    from railyard.agent.models.test import TestModel

    def with_ctx(ctx: RunContext[None], x: int) -> int:
        return x

    def plain(x: int) -> int:
        return x

    assert (Tool(with_ctx).takes_ctx, Tool(plain).takes_ctx) == (True, False)
    assert Tool(plain).max_retries is None
    agent = Agent(TestModel(), retries=4, tools=[Tool(with_ctx), Tool(plain, name="p", max_retries=2)])
    assert [(t.name, t.max_retries) for t in agent._tools.values()] == [("with_ctx", 4), ("p", 2)]


def test_docstring_format_and_required_parameter_descriptions() -> None:
    def numpy_doc(a: int) -> int:
        """Numpy style.

        Parameters
        ----------
        a : int
            the a
        """
        return a

    numpy_props = Tool(numpy_doc, docstring_format="numpy").definition.parameters_json_schema["properties"]
    assert numpy_props == {"a": {"description": "the a", "title": "A", "type": "integer"}}
    google_props = Tool(numpy_doc, docstring_format="google").definition.parameters_json_schema["properties"]
    assert google_props == {"a": {"title": "A", "type": "integer"}}

    def half_documented(x: int, y: str) -> int:
        """Do it.

        Args:
            x: the x
        """
        return x

    with pytest.raises(
        UserError, match=r"^Error generating schema for .*half_documented:\n  Missing parameter descriptions for y$"
    ):
        Tool(half_documented, require_parameter_descriptions=True)
    assert Tool(half_documented).definition.description == "Do it."


@pytest.mark.anyio
async def test_prepare_can_change_or_withhold_a_tool_per_request() -> None:
    from railyard.agent import Agent
    from railyard.agent.models.test import TestModel

    seen: list[tuple[int, str | None]] = []

    async def only_for_admins(ctx: RunContext[int], definition: ToolDefinition) -> ToolDefinition | None:
        seen.append((ctx.deps, ctx.tool_name))
        if ctx.deps < 2:
            return None
        definition.description = "changed"
        definition.parameters_json_schema["properties"]["x"]["description"] = "mutated copy"
        return definition

    model = TestModel()
    agent = Agent(model, deps_type=int)

    @agent.tool(prepare=only_for_admins)
    def admin(ctx: RunContext[int], x: int) -> int:
        return x

    def keep(ctx: RunContext[int], definition: ToolDefinition) -> ToolDefinition:
        return definition

    @agent.tool_plain(prepare=keep)
    def always(y: str) -> str:
        return y

    assert (await agent.run("q", deps=1)).data == '{"always":"a"}'
    assert (await agent.run("q", deps=2)).data == '{"admin":0,"always":"a"}'
    assert seen == [(1, "admin"), (1, "admin"), (2, "admin"), (2, "admin")]
    info = model.last_model_request_parameters
    assert info is not None and [t.description for t in info.function_tools] == ["changed", ""]
    assert "description" not in agent._tools["admin"].definition.parameters_json_schema["properties"]["x"]
