"""TestModel, tool schemas and docstrings as pydantic-ai 0.0.40 has them.

The expected values here are what pydantic-ai 0.0.40 gives for the same input (checked
side by side); users snapshot TestModel's made-up values and their tools' descriptions,
so railyard must give the same ones.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from annotated_types import MinLen
from pydantic import BaseModel, Field

from railyard.agent import Agent, ModelRetry, UnexpectedModelBehavior, UserError
from railyard.agent.messages import ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models.test import TestModel, _chars, _JsonSchemaTestData
from railyard.agent.tools import Tool

pytestmark = pytest.mark.anyio

# -- made-up values --------------------------------------------------------------------------


def test_strings_are_spelled_in_letters_digits_and_punctuation() -> None:
    assert len(_chars) == 94
    values = [_JsonSchemaTestData({"type": "string"}, seed).generate() for seed in (0, 25, 26, 52, 62, 92, 93, 94, 95)]
    assert values == ["a", "z", "A", "0", "!", "}", "~", "aa", "ab"]
    assert _JsonSchemaTestData({"type": "string"}, 94 * 94).generate() == "~aa"


def test_unique_items_move_the_seed_on_for_the_rest_of_the_value() -> None:
    class Sets(BaseModel):
        first: Annotated[set[str], MinLen(3)]
        later: str
        count: int

    data = _JsonSchemaTestData(Sets.model_json_schema()).generate()
    assert data == {"first": ["a", "b", "c"], "later": "d", "count": 3}


@pytest.mark.parametrize(
    ("schema", "seed", "expected"),
    [
        pytest.param({"type": "string", "minLength": 3}, 1, "bbb", id="min-length-repeats"),
        pytest.param({"type": "string", "maxLength": 0}, 0, "", id="max-length-zero"),
        pytest.param({"type": "string", "format": "date"}, 2, "2024-01-03", id="date"),
        pytest.param({"type": "string", "format": "uuid"}, 0, "a", id="other-formats-are-plain"),
        pytest.param({"type": "integer", "minimum": 5, "maximum": 8}, 4, 6, id="range-wraps"),
        pytest.param({"type": "integer", "exclusiveMaximum": 0}, 2, -3, id="below-max"),
        pytest.param({"type": "number", "exclusiveMinimum": 1.5}, 0, 2.5, id="number"),
        pytest.param({"anyOf": [{"type": "integer"}, {"type": "string"}]}, 1, "b", id="seed-picks-the-option"),
        pytest.param({"type": "integer", "examples": [7, 8]}, 1, 8, id="seed-picks-the-example"),
        pytest.param({"enum": ["x", "y"]}, 3, "y", id="seed-picks-the-member"),
        pytest.param({"type": "integer", "const": 0}, 3, 3, id="a-falsy-const-is-not-read"),
        pytest.param({"type": "boolean"}, 3, True, id="odd-seed-is-true"),
        pytest.param({"oneOf": [{"type": "integer"}]}, 0, "a", id="one-of-is-not-read"),
    ],
)
def test_values_follow_the_seed(schema: dict[str, Any], seed: int, expected: Any) -> None:
    assert _JsonSchemaTestData(schema, seed).generate() == expected


class Tree(BaseModel):
    name: str
    children: list[Tree]
    parent: Tree | None


def test_a_recursive_schema_ends_where_pydantic_ai_would_recurse_forever() -> None:
    # railyard's own way out: an empty list, or the next option of a union
    assert _JsonSchemaTestData(Tree.model_json_schema()).generate() == {"name": "a", "children": [], "parent": None}
    with pytest.raises(UserError, match="Cannot generate test data for the JSON schema type 'weird'"):
        _JsonSchemaTestData({"type": "weird"}).generate()


def test_gen_tool_args_uses_the_models_seed() -> None:
    tool = Tool(lambda x, y: None, takes_ctx=False, name="t")
    assert TestModel(seed=1).gen_tool_args(tool.definition) == {"x": "b", "y": "b"}


# -- conversations ---------------------------------------------------------------------------


def weather_agent(model: TestModel) -> tuple[Agent[None, str], list[str]]:
    agent = Agent(model)
    calls: list[str] = []

    @agent.tool_plain
    def weather(city: str) -> str:
        calls.append(city)
        return f"sunny in {city}"

    return agent, calls


async def test_a_continued_conversation_calls_no_tools_and_answers_with_the_returns_so_far() -> None:
    agent, calls = weather_agent(TestModel())
    first = await agent.run("weather?")
    assert first.data == '{"weather":"sunny in a"}'
    again = await agent.run("and now?", message_history=first.all_messages())
    assert calls == ["a"]
    assert again.data == '{"weather":"sunny in a"}'
    assert again._new_message_index == 4  # pyright: ignore[reportPrivateUsage]
    new = again.new_messages()
    assert [type(message) for message in new] == [ModelRequest, ModelResponse]
    assert isinstance(new[1], ModelResponse) and new[1].parts == [TextPart('{"weather":"sunny in a"}')]


async def test_a_streamed_continued_conversation_knows_where_its_messages_begin() -> None:
    agent, _ = weather_agent(TestModel())
    first = await agent.run("weather?")
    async with agent.run_stream("and now?", message_history=first.all_messages()) as streamed:
        assert await streamed.get_data() == '{"weather":"sunny in a"}'
        assert streamed._new_message_index == 4  # pyright: ignore[reportPrivateUsage]


async def test_call_tools_may_name_a_tool_twice() -> None:
    agent, calls = weather_agent(TestModel(call_tools=["weather", "weather"]))
    result = await agent.run("q")
    assert calls == ["a", "a"]
    call = result.all_messages()[1]
    assert isinstance(call, ModelResponse)
    assert call.parts == [ToolCallPart("weather", {"city": "a"}), ToolCallPart("weather", {"city": "a"})]
    returns = [part for part in result.all_messages()[2].parts if isinstance(part, ToolReturnPart)]
    assert [(part.tool_name, part.content) for part in returns] == [("weather", "sunny in a")] * 2


async def test_a_retried_text_answer_gets_an_empty_response() -> None:
    agent = Agent(TestModel())

    @agent.result_validator
    def never(text: str) -> str:
        raise ModelRetry("not good enough")

    with pytest.raises(UnexpectedModelBehavior, match=r"^Received empty model response$"):
        await agent.run("q")


async def test_custom_result_args_need_a_result_tool() -> None:
    with pytest.raises(UserError, match="No result tools provided, but `custom_result_args` is set"):
        await Agent(TestModel(custom_result_args={"a": 1})).run("q")


# -- tool schemas ----------------------------------------------------------------------------


def test_missing_parameter_descriptions_are_listed_in_pydantic_ais_words() -> None:
    def half(ctx: Any, a: int, b: int, c: int) -> int:
        """Add.

        Args:
            a: the a
        """
        return a

    with pytest.raises(UserError) as exc_info:
        Tool(half, takes_ctx=True, require_parameter_descriptions=True)
    message = str(exc_info.value)
    assert message == (
        "Error generating schema for test_missing_parameter_descriptions_are_listed_in_pydantic_ais_words."
        "<locals>.half:\n  Missing parameter descriptions for b, c"
    )


# -- docstrings ------------------------------------------------------------------------------


def described(func: Any, docstring_format: Any = "auto") -> tuple[str, dict[str, str | None]]:
    definition = Tool(func, takes_ctx=False, docstring_format=docstring_format).definition
    properties = definition.parameters_json_schema["properties"]
    return definition.description, {name: field.get("description") for name, field in properties.items()}


def test_a_numpy_description_ends_at_its_first_section() -> None:
    def search(q: str, n: int = 1) -> str:
        """Search the web.

        Parameters
        ----------
        q : str
            the query,
                indented
        n : int
            how many

        Returns
        -------
        str
            the hits
        """
        return q

    assert described(search) == ("Search the web.", {"q": "the query,\n    indented", "n": "how many"})
    # read as Google style, nothing is a section
    assert described(search, "google")[0].startswith("Search the web.\n\nParameters\n----------\nq : str")


def test_a_numpy_section_without_parameters_still_ends_the_description() -> None:
    def ping(x: int) -> int:
        """Ping.

        Returns
        -------
        int
        """
        return x

    assert described(ping) == ("Ping.", {"x": None})


def test_google_parameter_descriptions_keep_their_lines() -> None:
    def tool(a: int, b: int) -> int:
        """Do it.

        Args:
            a: first line
                second line

                after a blank line
            b (int): bee

        Note:
            not part of the description.
        """
        return a

    assert described(tool) == ("Do it.", {"a": "first line\nsecond line\n\nafter a blank line", "b": "bee"})


def test_a_google_section_needs_a_blank_line_before_it() -> None:
    def tool(a: int) -> int:
        """Do it.
        Args:
            a: the a
        """
        return a

    assert described(tool) == ("Do it.\nArgs:\n    a: the a", {"a": None})


def test_a_sphinx_field_runs_on_to_the_next_field() -> None:
    def tool(a: int, b: int) -> int:
        """Do it.

        :param a: the a
          more
        :param int b: the b

        trailing text.
        :note: kept
        """
        return a

    assert described(tool) == ("Do it.\n\n:note: kept", {"a": "the a\nmore", "b": "the b\n\ntrailing text."})


class Pet(BaseModel):
    """A pet."""

    name: str = Field(description="its name")


def test_a_description_in_the_type_wins_over_the_docstring() -> None:
    def adopt(pet: Pet, note: Annotated[str, Field(description="from the hint")]) -> str:
        """Adopt.

        Args:
            pet: from the docstring
            note: from the docstring
        """
        return pet.name

    assert described(adopt)[1] == {"pet": "from the docstring", "note": "from the hint"}
