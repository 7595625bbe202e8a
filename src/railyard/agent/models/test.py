"""A model for tests that needs no network: it calls every tool once, then answers.

`TestModel` reads the tools' JSON schemas and makes up arguments for them, the same
values pydantic-ai's TestModel makes up (`'a'` for a string, `0` for an integer, the
first value of an enum, ...), so an agent
and its tools can be exercised end to end without a real model. Its answer is the tools'
returns as compact JSON, a fixed text, or a call of the result tool. Streamed, the same
answer arrives in pieces (see `TestStreamedResponse`).
"""

from __future__ import annotations

import datetime
import string
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import pydantic_core

from railyard.agent.events import ModelResponseStreamEvent
from railyard.agent.exceptions import UserError
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
from railyard.agent.models import AgentInfo, Model, ModelRequestParameters, StreamedResponse  # noqa: F401
from railyard.agent.models.function import estimate_usage
from railyard.agent.settings import ModelSettings  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

__all__ = ("TestModel", "TestStreamedResponse", "generate_args")

NO_TOOL_CALLS = "success (no tool calls)"
"""The text answer of a run that called no tools."""


class _SetupError(UserError, AssertionError):
    """A `TestModel` set up for answers the run cannot take; pydantic-ai's TestModel fails an assertion there."""


class TestModel(Model):
    """A model that calls every tool once with made-up arguments, then answers, as pydantic-ai's TestModel does.

    While the conversation (history included) has no answer yet, it is answered with one
    tool call per tool to call, with arguments made up from the tool's JSON schema (see
    `generate_args`); a continued conversation is answered at once. When the last request
    asks for retries, the retried tools are called again (function tools first, with the
    same made-up arguments); a retry that names no tool it can call gets an empty answer.
    Otherwise the answer: `custom_result_text`; or a call of a result tool (picked by
    `seed` among several) with `custom_result_args` or made-up arguments; or, when text
    may end the run, the JSON of `{tool name: return}` over the whole conversation
    (`'success (no tool calls)'` when no tool returned).

    `call_tools` is `'all'` or the names of the tools to call (in that order). `seed`
    varies the made-up values (`'b'` and `1` instead of `'a'` and `0`, ...).
    `custom_output_text` and `custom_output_args` are the later names of
    `custom_result_text` and `custom_result_args`.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        call_tools: Sequence[str] | Literal["all"] = "all",
        custom_result_text: str | None = None,
        custom_result_args: Any | None = None,
        seed: int = 0,
        *,
        custom_output_text: str | None = None,
        custom_output_args: Any | None = None,
    ) -> None:
        if isinstance(call_tools, str) and call_tools != "all":
            raise UserError(f"call_tools must be 'all' or a list of tool names, got {call_tools!r}")
        custom_result_text = _alias(custom_result_text, custom_output_text, "custom_result_text", "custom_output_text")
        custom_result_args = _alias(custom_result_args, custom_output_args, "custom_result_args", "custom_output_args")
        if custom_result_text is not None and custom_result_args is not None:
            raise UserError("Cannot set both `custom_result_text` and `custom_result_args`.")
        self.call_tools: list[str] | Literal["all"] = "all" if call_tools == "all" else list(call_tools)
        """`'all'`, or the names of the tools to call."""
        self.custom_result_text = custom_result_text
        """The text to answer with, instead of the tools' returns."""
        self.custom_result_args = custom_result_args
        """The arguments to call the result tool with, instead of generated ones."""
        self.seed = seed
        """Varies the generated argument values."""
        self.last_model_request_parameters: AgentInfo | None = None
        """What the model was told for its last request, or None before any."""

    def __repr__(self) -> str:
        return (
            f"TestModel(call_tools={self.call_tools!r}, custom_result_text={self.custom_result_text!r}, "
            f"custom_result_args={self.custom_result_args!r}, seed={self.seed!r}, "
            f"last_model_request_parameters={self.last_model_request_parameters!r})"
        )

    @property
    def custom_output_text(self) -> str | None:
        """The later name of `custom_result_text`."""
        return self.custom_result_text

    @property
    def custom_output_args(self) -> Any | None:
        """The later name of `custom_result_args`."""
        return self.custom_result_args

    @property
    def model_name(self) -> str:
        """Always `'test'`."""
        return "test"

    @property
    def system(self) -> str:
        """Always `'test'`."""
        return "test"

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """Call the tools or answer, as the conversation calls for; the usage is estimated from words.

        Raises:
            UserError: `call_tools` names a tool the agent does not have, `custom_result_text`
                is set but text may not end the run, or a schema cannot be satisfied.
        """
        self.last_model_request_parameters = info
        response = ModelResponse(parts=self._respond(messages, info), model_name=self.model_name)
        return response, estimate_usage([*messages, response])

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[StreamedResponse]:
        """Stream the answer `request` would give, in pieces (see `TestStreamedResponse`).

        Raises:
            UserError: as `request` does, on entering the block.
        """
        self.last_model_request_parameters = info
        parts = self._respond(messages, info)
        yield TestStreamedResponse(self.model_name, parts, estimate_usage(messages))

    def gen_tool_args(self, tool_def: ToolDefinition) -> Any:
        """Arguments for a call of `tool_def`, made up from its JSON schema with `seed` (see `generate_args`)."""
        return _SchemaData(tool_def.parameters_json_schema, self.seed).generate()

    def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> list[ModelResponsePart]:
        tools = self._tools_to_call(info)
        # the tools are called only while the conversation has no answer yet, history included
        if tools and not any(isinstance(message, ModelResponse) for message in messages):
            return [ToolCallPart(tool.name, self.gen_tool_args(tool)) for tool in tools]
        if not messages:
            return self._answer(info, messages)
        last = messages[-1]
        if not isinstance(last, ModelRequest):
            raise _SetupError("TestModel expects the conversation to end with a request")
        retried = {part.tool_name for part in last.parts if isinstance(part, RetryPromptPart)}
        if not retried:
            return self._answer(info, messages)
        # Retried tools are called again, function tools first. A retry of a text answer
        # (no tool name) is answered with no parts at all, as pydantic-ai's TestModel does.
        calls: list[ModelResponsePart] = [
            ToolCallPart(tool.name, self.gen_tool_args(tool)) for tool in tools if tool.name in retried
        ]
        calls += [
            ToolCallPart(tool.name, self._result_args(tool, info)) for tool in info.result_tools if tool.name in retried
        ]
        return calls

    def _tools_to_call(self, info: AgentInfo) -> list[ToolDefinition]:
        if self.call_tools == "all":
            return list(info.function_tools)
        by_name = {tool.name: tool for tool in info.function_tools}
        unknown = [name for name in self.call_tools if name not in by_name]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise UserError(f"TestModel call_tools names unknown tools: {names}. Available tools: {', '.join(by_name)}")
        return [by_name[name] for name in self.call_tools]

    def _answer(self, info: AgentInfo, messages: list[ModelMessage]) -> list[ModelResponsePart]:
        if self.custom_result_text is not None:
            if not info.allow_text_result:
                raise _SetupError("Plain response not allowed, but `custom_result_text` is set.")
            return [TextPart(self.custom_result_text)]
        if self.custom_result_args is None and (info.allow_text_result or not info.result_tools):
            # the returns of every tool called in the conversation, history included
            returns = {
                part.tool_name: part.content
                for message in messages
                if isinstance(message, ModelRequest)
                for part in message.parts
                if isinstance(part, ToolReturnPart)
            }
            return [TextPart(pydantic_core.to_json(returns).decode() if returns else NO_TOOL_CALLS)]
        if not info.result_tools:
            raise _SetupError("No result tools provided, but `custom_result_args` is set.")
        # with several result tools (a union), the seed picks the one to call
        result_tool = info.result_tools[self.seed % len(info.result_tools)]
        return [ToolCallPart(result_tool.name, self._result_args(result_tool, info))]

    def _result_args(self, tool: ToolDefinition, info: AgentInfo) -> dict[str, Any]:
        custom = self.custom_result_args
        if custom is None:
            args: Any = self.gen_tool_args(tool)
            return args  # type: ignore[no-any-return]  # an object schema gives a dict
        # the first result tool says how custom arguments are wrapped, as in pydantic-ai
        if (key := info.result_tools[0].outer_typed_dict_key) is not None:
            return {key: custom}
        args = custom if isinstance(custom, dict) else pydantic_core.to_jsonable_python(custom)
        if not isinstance(args, dict):
            raise UserError(
                f"custom_result_args must be a dict of the result tool's arguments, got {type(custom).__name__}"
            )
        return dict(args)  # pyright: ignore[reportUnknownArgumentType]


class TestStreamedResponse(StreamedResponse):
    """`TestModel`'s answer streamed: each tool call whole, text in pieces.

    A tool call arrives as one `PartStartEvent` carrying the whole call. A text part
    starts empty (`PartStartEvent` with `TextPart('')`), then grows by one
    `PartDeltaEvent` per piece of `_text_pieces(text)`: the text cut after every
    space, or, when it has no space, in two halves.

    The usage starts as the estimate for the conversation sent (no answer yet), and
    each text piece adds its own word count to the response tokens as it arrives; tool
    calls add nothing. So a finished stream's usage can differ from `request`'s: fewer
    response tokens when it calls tools, and more when a cut splits a word in two
    (`'hello'` is `'he'` + `'llo'`, two words). This is how pydantic-ai's TestModel
    counts when streaming, so usage limits trip at the same points.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, model_name: str, answer: list[ModelResponsePart], usage: Usage) -> None:
        super().__init__(model_name)
        self._answer = answer
        self._usage = usage

    async def _events(self) -> AsyncIterator[ModelResponseStreamEvent]:
        for index, part in enumerate(self._answer):
            if not isinstance(part, TextPart):
                yield self.parts.add_part(part, key=index)
                continue
            yield self.parts.add_part(TextPart(""), key=index)
            for piece in _text_pieces(part.content):
                event = self.parts.text_delta(piece, key=index)
                words = estimate_usage([ModelResponse([TextPart(piece)])]).response_tokens or 0
                self._usage = self._usage + Usage(response_tokens=words, total_tokens=words)
                yield event


def _text_pieces(text: str) -> list[str]:
    """The pieces a streamed text arrives in, joining back to `text`.

    Text with spaces is cut just after each space, so every piece but the last ends
    with exactly one space (a run of spaces gives pieces of a lone space, and a text
    ending in a space gives a last, empty piece): `'a  b'` is `'a '`, `' '`, `'b'`.
    Text without a space (a single word, compact JSON) is cut in two halves, the
    second the longer when the length is odd: `'{"get":0}'` is `'{"ge'`, `'t":0}'`;
    up to two characters (even none) it is one piece. Only the space character cuts;
    newlines and tabs stay inside pieces.
    """
    words = text.split(" ")
    if len(words) > 1:
        return [word + " " for word in words[:-1]] + [words[-1]]
    if len(text) > 2:
        half = len(text) // 2
        return [text[:half], text[half:]]
    return [text]


def _alias(old: Any, new: Any, old_name: str, new_name: str) -> Any:
    if old is not None and new is not None:
        raise UserError(f"Give `{old_name}` or `{new_name}` (the same setting), not both")
    return new if old is None else old


# -- arguments from a JSON schema ------------------------------------------------------

_chars = string.ascii_letters + string.digits + string.punctuation
"""The alphabet generated strings are spelled in, as pydantic-ai's TestModel spells them."""


def generate_args(tool: ToolDefinition, seed: int = 0) -> dict[str, Any]:
    """Arguments for `tool` that satisfy its parameters' JSON schema (required ones only).

    The values are the ones pydantic-ai's TestModel makes up for the same schema and seed.

    Raises:
        UserError: the schema has a type this cannot generate, or requires a value of
            itself (a recursive schema with no way out), or is not an object.
    """
    value = _SchemaData(tool.parameters_json_schema, seed).generate()
    if not isinstance(value, dict):
        raise UserError(f"Tool {tool.name!r}: its parameters' JSON schema is not an object")
    return value  # pyright: ignore[reportUnknownVariableType]


class _Cycle(Exception):
    """A `$ref` refers back into itself; the caller picks another way (another option, an empty list)."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


class _SchemaData:
    """Makes up a value for a JSON schema, value for value as pydantic-ai's TestModel does.

    The first choice is taken where the schema offers one (`const`, then `enum`, `examples`
    and `anyOf` picked by the seed), a string is the seed spelled in `_chars` (`'a'` for
    seed 0, ..., `'~'`, `'aa'`, `'ab'`, ...), a number is the seed moved into its bounds, a
    boolean is whether the seed is odd. Each item of an array with `uniqueItems` moves the
    seed on by one, for the rest of the value too.

    Where pydantic-ai's generator fails (a schema that refers to itself with no way out but
    through itself, a `type` list, a `$ref` outside `$defs`, an integer range of one value),
    this one finds a value when there is one and raises `UserError` when there is not.
    """

    def __init__(self, schema: dict[str, Any], seed: int = 0) -> None:
        self.schema = schema
        """The JSON schema to make a value for."""
        self.defs: dict[str, Any] = schema.get("$defs", {})
        """The schema's `$defs`, which `$ref`s point into."""
        self.seed = seed
        """The seed the next value is made with."""
        self._expanding: list[str] = []

    def generate(self) -> Any:
        """A value for the schema.

        Raises:
            UserError: the schema cannot be satisfied (see the class docstring).
        """
        try:
            return self._value(self.schema)
        except _Cycle as exc:
            raise UserError(f"Cannot generate test data for the recursive JSON schema {exc.ref!r}") from None

    def _value(self, schema: Any) -> Any:
        if schema is True:
            return self._text()
        if not isinstance(schema, dict):
            raise UserError(f"Cannot generate test data for the JSON schema {schema!r}")
        # a falsy `const` or an empty list counts as absent, as in pydantic-ai
        if const := schema.get("const"):
            return const
        for key in ("enum", "examples"):
            if choices := schema.get(key):
                return choices[self.seed % len(choices)]
        if ref := schema.get("$ref"):
            return self._follow(ref)
        if options := schema.get("anyOf"):
            return self._choice(options)
        kind = schema.get("type")
        if isinstance(kind, list) and kind:
            return self._choice([{**schema, "type": one} for one in kind])  # pyright: ignore[reportUnknownVariableType]
        match kind:
            case None:
                return self._text()
            case "object":
                return self._object(schema)
            case "string":
                return self._string(schema)
            case "integer":
                return self._integer(schema)
            case "number":
                return float(self._integer(schema))
            case "boolean":
                return bool(self.seed % 2)
            case "array":
                return self._array(schema)
            case "null":
                return None
        raise UserError(f"Cannot generate test data for the JSON schema type {kind!r}")

    def _follow(self, ref: Any) -> Any:
        """The value for what `ref` points to, unless that is being made already."""
        if not isinstance(ref, str):
            raise UserError(f"Cannot follow the JSON schema reference {ref!r}")
        if ref in self._expanding:
            raise _Cycle(ref)
        target = self._resolve(ref)
        self._expanding.append(ref)
        try:
            return self._value(target)
        finally:
            self._expanding.pop()

    def _resolve(self, ref: str) -> Any:
        """What `ref` points to: a name in `$defs`, or a JSON pointer into the schema."""
        name = ref.removeprefix("#/$defs/")
        if name != ref and name in self.defs:
            return self.defs[name]
        if not ref.startswith("#"):
            raise UserError(f"Cannot follow the JSON schema reference {ref!r}")
        target: Any = self.schema
        for escaped in ref[1:].split("/")[1:]:
            token = escaped.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or token not in target:
                raise UserError(f"The JSON schema reference {ref!r} points nowhere")
            target = target[token]
        return target

    def _choice(self, options: list[Any]) -> Any:
        """A value for the option the seed picks; the next ones if it refers back into itself."""
        start = self.seed % len(options)
        cycle: _Cycle | None = None
        for option in options[start:] + options[:start]:
            try:
                return self._value(option)
            except _Cycle as exc:
                cycle = cycle or exc
        assert cycle is not None  # every option failed by referring back
        raise cycle

    def _object(self, schema: dict[str, Any]) -> dict[str, Any]:
        required = set(schema.get("required", []))
        properties: dict[str, Any] = schema.get("properties") or {}
        value = {name: self._value(sub) for name, sub in properties.items() if name in required}
        if extra := schema.get("additionalProperties"):
            key = "additionalProperty"
            while key in value:  # a property may have that name already
                key += "_"
            value[key] = self._value(extra)
        return value

    def _string(self, schema: dict[str, Any]) -> str:
        min_length: int | None = schema.get("minLength")
        if min_length is not None:
            return self._text() * min_length
        if schema.get("maxLength") == 0:
            return ""
        if schema.get("format") == "date":
            return (datetime.date(2024, 1, 1) + datetime.timedelta(days=self.seed)).isoformat()
        return self._text()

    def _integer(self, schema: dict[str, Any]) -> Any:
        """The seed moved into the bounds (an exclusive bound is moved in by one)."""
        high = schema.get("maximum")
        if high is None and (edge := schema.get("exclusiveMaximum")) is not None:
            high = edge - 1
        low = schema.get("minimum")
        if low is None and (edge := schema.get("exclusiveMinimum")) is not None:
            low = edge + 1
        if low is not None and high is not None:
            return low + self.seed % (high - low) if high != low else low
        if low is not None:
            return low + self.seed
        if high is not None:
            return high - self.seed
        return self.seed

    def _array(self, schema: dict[str, Any]) -> list[Any]:
        unique = schema.get("uniqueItems")
        values: list[Any] = []

        def add(item: Any) -> None:
            values.append(self._value(item))
            if unique:
                self.seed += 1

        for item in schema.get("prefixItems") or []:
            add(item)
        items = schema.get("items", {})
        missing = schema.get("minItems", 0) - len(values)
        try:
            if missing > 0:
                for _ in range(missing):
                    add(items)
            elif items:
                max_items = schema.get("maxItems")
                if max_items is None or max_items > len(values):
                    add(items)
        except _Cycle:
            if missing > 0:
                raise
        return values

    def _text(self) -> str:
        """The seed spelled in `_chars`, like a spreadsheet's column names: `'a'`, ..., `'~'`, `'aa'`, ..."""
        size = len(_chars)
        head = ""
        rest = self.seed // size
        while rest > 0:
            head += _chars[(rest - 1) % size]
            rest //= size
        return head + _chars[self.seed % size]


# pydantic-ai's name for the generator, which its test suites import
_JsonSchemaTestData = _SchemaData
