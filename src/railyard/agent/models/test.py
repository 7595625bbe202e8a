"""A model for tests that needs no network: it calls every tool once, then answers.

`TestModel` reads the tools' JSON schemas and makes up arguments that satisfy them
(`'a'` for a string, `0` for an integer, the first value of an enum, ...), so an agent
and its tools can be exercised end to end without a real model. Its answer is the tools'
returns as compact JSON, a fixed text, or a call of the result tool. Streamed, the same
answer arrives in pieces (see `TestStreamedResponse`).
"""

from __future__ import annotations

import datetime
import math
import string
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
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
    UserPromptPart,
)
from railyard.agent.models import AgentInfo, Model, StreamedResponse
from railyard.agent.models.function import estimate_usage
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

__all__ = ("TestModel", "TestStreamedResponse", "generate_args")

NO_TOOL_CALLS = "success (no tool calls)"
"""The text answer of a run that called no tools."""


class TestModel(Model):
    """A model that calls every tool once with made-up arguments, then answers.

    The first request of a run (the one with the user's prompt) is answered with one
    tool call per tool to call, with arguments generated from the tool's JSON schema.
    A tool that asked for a retry is called again with the same arguments. Then the
    answer: a call of the first result tool with `custom_result_args` if set (and the
    run has result tools); else, when text may end the run, `custom_result_text` or the
    JSON of `{tool name: return}` (`'success (no tool calls)'` when no tool was called);
    else a call of the first result tool with generated arguments.

    `call_tools` is `'all'` or the names of the tools to call (in that order). `seed`
    varies the generated values (`'b'` and `1` instead of `'a'` and `0`, ...).
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

    def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> list[ModelResponsePart]:
        if messages and not isinstance(messages[-1], ModelRequest):
            raise UserError("TestModel expects the conversation to end with a request")
        run = _current_run(messages)
        if not any(isinstance(message, ModelResponse) for message in run):
            tools = self._tools_to_call(info)
            if tools:
                return [ToolCallPart(tool.name, generate_args(tool, self.seed)) for tool in tools]
            return self._answer(info, {})

        retried = _retried_tool_names(run[-1])
        function_tools = {tool.name: tool for tool in info.function_tools}
        result_tools = {tool.name: tool for tool in info.result_tools}
        calls: list[ModelResponsePart] = []
        for name in retried:
            if name in function_tools:
                args = _last_args(run, name) or generate_args(function_tools[name], self.seed)
                calls.append(ToolCallPart(name, args))
            elif name in result_tools:
                calls.append(ToolCallPart(name, self._result_args(result_tools[name])))
        if calls:
            return calls

        returns = {
            part.tool_name: part.content
            for message in run
            if isinstance(message, ModelRequest)
            for part in message.parts
            if isinstance(part, ToolReturnPart)
        }
        return self._answer(info, returns)

    def _tools_to_call(self, info: AgentInfo) -> list[ToolDefinition]:
        if self.call_tools == "all":
            return list(info.function_tools)
        by_name = {tool.name: tool for tool in info.function_tools}
        unknown = [name for name in self.call_tools if name not in by_name]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise UserError(f"TestModel call_tools names unknown tools: {names}. Available tools: {', '.join(by_name)}")
        return [by_name[name] for name in dict.fromkeys(self.call_tools)]

    def _answer(self, info: AgentInfo, returns: dict[str, Any]) -> list[ModelResponsePart]:
        if self.custom_result_args is not None and info.result_tools:
            return [ToolCallPart(info.result_tools[0].name, self._result_args(info.result_tools[0]))]
        if self.custom_result_text is not None and not info.allow_text_result:
            raise UserError("Plain response not allowed, but `custom_result_text` is set.")
        if info.allow_text_result or not info.result_tools:
            if self.custom_result_text is not None:
                text = self.custom_result_text
            elif returns:
                text = pydantic_core.to_json(returns).decode()
            else:
                text = NO_TOOL_CALLS
            return [TextPart(text)]
        return [ToolCallPart(info.result_tools[0].name, self._result_args(info.result_tools[0]))]

    def _result_args(self, tool: ToolDefinition) -> dict[str, Any]:
        custom = self.custom_result_args
        if custom is None:
            return generate_args(tool, self.seed)
        if tool.outer_typed_dict_key is not None:
            return {tool.outer_typed_dict_key: custom}
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


def _current_run(messages: list[ModelMessage]) -> list[ModelMessage]:
    """The messages of the run in progress: from the last request with a user prompt."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, ModelRequest) and any(isinstance(part, UserPromptPart) for part in message.parts):
            return messages[index:]
    return messages


def _retried_tool_names(request: ModelMessage) -> list[str]:
    if not isinstance(request, ModelRequest):
        return []
    names = [part.tool_name for part in request.parts if isinstance(part, RetryPromptPart) and part.tool_name]
    return list(dict.fromkeys(names))


def _last_args(run: list[ModelMessage], tool_name: str) -> dict[str, Any] | None:
    for message in reversed(run):
        if isinstance(message, ModelResponse):
            for part in reversed(message.parts):
                if isinstance(part, ToolCallPart) and part.tool_name == tool_name:
                    try:
                        return dict(part.args_as_dict())
                    except ValueError:
                        return None
    return None


# -- arguments from a JSON schema ------------------------------------------------------

_LETTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits
_BASE_DATE = datetime.date(2024, 1, 1)
_BASE_UUID = 0x0123456789ABCDEF0123456789ABCDEF
_FIXED_FORMATS = {
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "ipvanyaddress": "192.0.2.1",
    "ipv4network": "192.0.2.0/24",
    "ipv6network": "2001:db8::/32",
    "ipvanynetwork": "192.0.2.0/24",
    "ipv4interface": "192.0.2.1/24",
    "ipv6interface": "2001:db8::1/32",
    "ipvanyinterface": "192.0.2.1/24",
    "hostname": "example.com",
}


def generate_args(tool: ToolDefinition, seed: int = 0) -> dict[str, Any]:
    """Arguments for `tool` that satisfy its parameters' JSON schema (required ones only).

    Raises:
        UserError: the schema has a type this cannot generate, or requires a value of
            itself (a recursive schema with no way out), or is not an object.
    """
    value = _SchemaData(tool.parameters_json_schema, seed).generate()
    if not isinstance(value, dict):
        raise UserError(f"Tool {tool.name!r}: its parameters' JSON schema is not an object")
    return value


class _Cycle(Exception):
    """A `$ref` refers back into itself; the caller picks another way (an empty list, null)."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


class _SchemaData:
    """Makes up a value for a JSON schema: `'a'`, `0`, `0.0`, `False`, `None`, first choices."""

    def __init__(self, root: dict[str, Any], seed: int) -> None:
        self.root = root
        self.seed = seed
        self._refs: list[str] = []

    def generate(self) -> Any:
        try:
            return self._value(self.root, self.seed)
        except _Cycle as exc:
            raise UserError(f"Cannot generate test data for the recursive JSON schema {exc.ref!r}") from None

    def _value(self, schema: Any, seed: int) -> Any:
        if schema is True:
            return _text(seed)
        if not isinstance(schema, dict):
            raise UserError(f"Cannot generate test data for the JSON schema {schema!r}")
        if "$ref" in schema:
            return self._follow(schema, seed)
        if "const" in schema:
            return schema["const"]
        examples = schema.get("examples")
        if isinstance(examples, list) and examples:
            return examples[0]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[seed % len(enum)]
        if "allOf" in schema:
            return self._value(_merge(schema, [self._resolve(sub) for sub in schema["allOf"]]), seed)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._choice(schema[key], seed)
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._choice([{**schema, "type": one} for one in kind], seed)  # pyright: ignore[reportUnknownVariableType]
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                return _text(seed)
        match kind:
            case "string":
                return _string(schema, seed)
            case "integer":
                return _integer(schema, seed)
            case "number":
                return _number(schema, seed)
            case "boolean":
                return seed % 2 == 1
            case "null":
                return None
            case "array":
                return self._array(schema, seed)
            case "object":
                return self._object(schema, seed)
        raise UserError(f"Cannot generate test data for the JSON schema type {kind!r}")

    def _follow(self, schema: dict[str, Any], seed: int) -> Any:
        """The value for a `$ref` (with any keys beside it), unless it is one being expanded."""
        ref = schema["$ref"]
        if ref in self._refs:
            raise _Cycle(ref)
        target = self._resolve(schema)
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        self._refs.append(ref)
        try:
            return self._value({**target, **siblings} if isinstance(target, dict) else target, seed)
        finally:
            self._refs.pop()

    def _resolve(self, schema: Any) -> Any:
        """`schema`, or what its `$ref` points to (a JSON pointer into the root schema)."""
        if not isinstance(schema, dict) or "$ref" not in schema:
            return schema
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UserError(f"Cannot follow the JSON schema reference {ref!r}")
        target: Any = self.root
        for escaped in ref[1:].split("/")[1:]:
            token = escaped.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or token not in target:
                raise UserError(f"The JSON schema reference {ref!r} points nowhere")
            target = target[token]
        return target

    def _choice(self, options: list[Any], seed: int) -> Any:
        """A value for the first option that is not null (the next if it refers back into itself), else null."""
        nullable = [option for option in options if isinstance(option, dict) and option.get("type") == "null"]
        others = [option for option in options if option not in nullable]
        if not others:
            return None
        cycle: _Cycle | None = None
        for option in others:
            try:
                return self._value(option, seed)
            except _Cycle as exc:
                cycle = exc
        if nullable or cycle is None:
            return None
        raise cycle

    def _array(self, schema: dict[str, Any], seed: int) -> list[Any]:
        prefix = schema.get("prefixItems", [])
        items = schema.get("items")
        count = max(schema.get("minItems", 0), len(prefix), 1 if items is not None else 0)
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        unique = schema.get("uniqueItems", False)
        values: list[Any] = []
        try:
            for index in range(count):
                item = prefix[index] if index < len(prefix) else items
                if item is None or item is False:
                    break
                values.append(self._value(item, seed + index if unique else seed))
        except _Cycle:
            return []
        return values

    def _object(self, schema: dict[str, Any], seed: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        value = {name: self._value(properties.get(name, True), seed) for name in schema.get("required", [])}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            value["additionalProperty"] = self._value(extra, seed)
        return value


def _merge(schema: dict[str, Any], parts: list[Any]) -> dict[str, Any]:
    """One schema for `allOf`: the parts' keys, their properties and required names together."""
    merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
    for part in parts:
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _text(seed: int) -> str:
    """`'a'` for seed 0, then `'b'`, ... `'z'`, `'A'`, ... `'9'`, `'ba'`, ..."""
    seed = abs(seed)
    letters = _LETTERS[seed % len(_LETTERS)]
    seed //= len(_LETTERS)
    while seed:
        letters = _LETTERS[seed % len(_LETTERS)] + letters
        seed //= len(_LETTERS)
    return letters


def _string(schema: dict[str, Any], seed: int) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return (_BASE_DATE + datetime.timedelta(days=seed)).isoformat()
    if fmt == "date-time":
        return f"{(_BASE_DATE + datetime.timedelta(days=seed)).isoformat()}T00:00:00Z"
    if fmt == "time":
        return (datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=seed % 86400)).time().isoformat()
    if fmt == "duration":
        return f"P{abs(seed)}D"
    if isinstance(fmt, str) and fmt.startswith("uuid"):
        version = int(fmt[4:]) if fmt[4:] in ("1", "3", "4", "5") else 4
        return str(uuid.UUID(int=(_BASE_UUID + seed) % 2**128, version=version))
    if fmt == "email":
        return f"{_text(seed)}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{_text(seed)}"
    if fmt in _FIXED_FORMATS:
        return _FIXED_FORMATS[fmt]
    text = _text(seed)
    min_length = schema.get("minLength", 0)
    if len(text) < min_length:
        text = (text * min_length)[:min_length]
    if "maxLength" in schema:
        text = text[: schema["maxLength"]]
    return text


def _integer(schema: dict[str, Any], seed: int) -> int:
    low = _int_bound(schema, "minimum", "exclusiveMinimum", math.ceil, 1)
    high = _int_bound(schema, "maximum", "exclusiveMaximum", math.floor, -1)
    value = seed
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0 and value % step:
        value += step - value % step
        if high is not None and value > high:
            value -= step
    return value


def _int_bound(
    schema: dict[str, Any], inclusive: str, exclusive: str, rounding: Callable[[float], int], step: int
) -> int | None:
    """The lowest (`step=1`) or highest (`step=-1`) integer the schema's bounds allow, if bounded."""
    bounds: list[int] = []
    if _is_number(schema.get(inclusive)):
        bounds.append(rounding(schema[inclusive]))
    if _is_number(schema.get(exclusive)):
        edge: float = schema[exclusive]
        bounds.append(rounding(edge) + step if rounding(edge) == edge else rounding(edge))
    if not bounds:
        return None
    return max(bounds) if step == 1 else min(bounds)


def _number(schema: dict[str, Any], seed: int) -> float:
    low, low_open = _float_bound(schema, "minimum", "exclusiveMinimum", 1)
    high, high_open = _float_bound(schema, "maximum", "exclusiveMaximum", -1)
    value = float(seed)
    if low is not None and _beyond(value, low, low_open, 1):
        value = low + 1 if low_open else low
    if high is not None and _beyond(value, high, high_open, -1):
        value = high - 1 if high_open else high
        if low is not None and _beyond(value, low, low_open, 1):
            value = (low + high) / 2  # a narrow interval: its middle
    return value


def _beyond(value: float, bound: float, is_open: bool, direction: int) -> bool:
    """Whether `value` breaks a lower (`direction=1`) or upper (`direction=-1`) bound."""
    return (bound - value) * direction > 0 or (is_open and value == bound)


def _float_bound(schema: dict[str, Any], inclusive: str, exclusive: str, step: int) -> tuple[float | None, bool]:
    """The tighter of the schema's inclusive and exclusive bound, and whether it is exclusive."""
    bounds = [(float(schema[key]), key == exclusive) for key in (inclusive, exclusive) if _is_number(schema.get(key))]
    if not bounds:
        return None, False
    # the tighter bound; on a tie the exclusive one
    return max(bounds, key=lambda bound: (bound[0] * step, bound[1]))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
