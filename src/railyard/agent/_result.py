"""Structured results: the tools a model calls to end a run, and checks on the result.

A `result_type` other than `str` becomes one "final result" tool per type (one for
a plain type, one per member of a union), whose parameters are the type's JSON schema.
A type that is not an object (an `int`, a `list[str]`) is wrapped in an object under
the key `response`. Result validators run on every candidate result, text or
structured, and may raise `ModelRetry` to send the model back to work.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

try:
    from typing import TypeAliasType  # type: ignore[attr-defined,unused-ignore]  # Python 3.12+
except ImportError:  # pragma: no cover - Python 3.11
    from typing_extensions import TypeAliasType

import anyio.to_thread
import pydantic
import typing_extensions
from pydantic_core import ErrorDetails

from railyard.agent.context import RunContext
from railyard.agent.exceptions import UserError
from railyard.agent.messages import RetryPromptPart, ToolCallPart
from railyard.agent.tools import ToolDefinition

__all__ = (
    "DEFAULT_RESULT_DESCRIPTION",
    "ResultSchema",
    "ResultTool",
    "ResultValidator",
    "run_validators",
)

DEFAULT_RESULT_DESCRIPTION = "The final response which ends this conversation"
"""The description of a result tool whose type has no docstring."""

_WRAP_KEY = "response"


@dataclass(frozen=True)
class ResultTool:
    """One tool that carries a structured result of one type."""

    definition: ToolDefinition
    """What the model is told about it."""
    validator: pydantic.TypeAdapter[Any]
    """Checks and builds the result from the model's arguments."""

    def validate(self, call: ToolCallPart) -> Any | RetryPromptPart:
        """The result `call` carries, or what the model must fix."""
        try:
            if isinstance(call.args, str):
                value = self.validator.validate_json(call.args or "{}")
            else:
                value = self.validator.validate_python(call.args)
        except pydantic.ValidationError as exc:
            errors: list[ErrorDetails] = exc.errors(include_url=False)
            return RetryPromptPart(errors, tool_name=call.tool_name, tool_call_id=call.tool_call_id)
        return self._unwrap(value)

    def validate_or_raise(self, call: ToolCallPart) -> Any:
        """The result `call` carries.

        Raises:
            pydantic.ValidationError: the arguments do not fit the result type.
        """
        if isinstance(call.args, str):
            return self._unwrap(self.validator.validate_json(call.args or "{}"))
        return self._unwrap(self.validator.validate_python(call.args))

    def validate_partial(self, call: ToolCallPart) -> tuple[bool, Any]:
        """`(True, result)` for the arguments so far, read leniently; `(False, None)` if they don't fit yet."""
        try:
            if isinstance(call.args, str):
                value = self.validator.validate_json(call.args or "{}", experimental_allow_partial="trailing-strings")
            else:
                value = self.validator.validate_python(call.args, experimental_allow_partial=True)
        except pydantic.ValidationError:
            return False, None
        return True, self._unwrap(value)

    def _unwrap(self, value: Any) -> Any:
        if self.definition.outer_typed_dict_key is not None:
            return getattr(value, self.definition.outer_typed_dict_key)
        return value


@dataclass(frozen=True)
class ResultSchema:
    """How a run's result may arrive: as text, through result tools, or both."""

    allow_text_result: bool
    """Whether the model's plain text may be the result (`str` is the type, or in the union)."""
    tools: dict[str, ResultTool]
    """The result tools by name."""

    @classmethod
    def build(
        cls, result_type: Any, *, tool_name: str = "final_result", description: str | None = None
    ) -> ResultSchema:
        """The schema for `result_type` (`str`, a model, a dataclass, a union, any type pydantic knows)."""
        members = _union_members(result_type)
        allow_text = str in members
        structured = [member for member in members if member is not str]
        tools: dict[str, ResultTool] = {}
        for member in structured:
            name = tool_name if len(structured) == 1 else f"{tool_name}_{_type_name(member)}"
            if name in tools:
                raise UserError(f"Result type {result_type!r}: two members would share the result tool name {name!r}")
            tools[name] = _result_tool(member, name, description, many=len(structured) > 1)
        return cls(allow_text, tools)

    @property
    def definitions(self) -> list[ToolDefinition]:
        """What the model is told about the result tools."""
        return [tool.definition for tool in self.tools.values()]


def _union_members(result_type: Any) -> list[Any]:
    while isinstance(result_type, TypeAliasType | typing_extensions.TypeAliasType):  # `type X = A | B`
        result_type = result_type.__value__
    origin = get_origin(result_type)
    if origin is Union or origin is types.UnionType:
        return list(get_args(result_type))
    return [result_type]


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__name__", None)
    if isinstance(name, str) and get_origin(tp) is None:
        return name
    return "".join(ch if ch.isalnum() else "_" for ch in repr(tp)).strip("_")


def _is_object_type(tp: Any) -> bool:
    if not isinstance(tp, type):
        return False
    return issubclass(tp, pydantic.BaseModel) or dataclasses.is_dataclass(tp) or hasattr(tp, "__total__")


def _own_docstring(tp: Any) -> str | None:
    doc = tp.__dict__.get("__doc__") if isinstance(tp, type) else None
    if not doc:
        return None
    if dataclasses.is_dataclass(tp) and doc.startswith(f"{getattr(tp, '__name__', '')}("):
        return None  # the signature dataclasses writes when a class has no docstring
    return inspect.cleandoc(doc)


def _result_tool(tp: Any, name: str, description: str | None, *, many: bool) -> ResultTool:
    if _is_object_type(tp):
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(tp)
        schema = adapter.json_schema()
        schema.pop("description", None)
        key = None
    else:
        wrapper = pydantic.create_model(_WRAP_KEY, **{_WRAP_KEY: (tp, ...)})  # type: ignore[call-overload]
        adapter = pydantic.TypeAdapter(wrapper)
        schema = wrapper.model_json_schema()
        schema.pop("title", None)
        key = _WRAP_KEY
    doc = _own_docstring(tp) if key is None else None  # a wrapped scalar's docstring is not about the result
    if doc is not None:
        text = f"{description}. {doc}" if description else doc
    else:
        text = description or DEFAULT_RESULT_DESCRIPTION
        if many:
            text = f"{_type_name(tp)}: {text}"
    return ResultTool(ToolDefinition(name, text, schema, outer_typed_dict_key=key), adapter)


@dataclass(frozen=True)
class ResultValidator:
    """A user function that checks (and may change) a result; `ModelRetry` asks the model again."""

    function: Callable[..., Any]
    """`(ctx, result)` or `(result)`, sync or async, returning the result to keep."""
    takes_ctx: bool
    """Whether it takes the run context first."""

    @classmethod
    def of(cls, function: Callable[..., Any]) -> ResultValidator:
        """Wrap `function`, telling from its parameters whether it takes the run context."""
        params = list(inspect.signature(function).parameters.values())
        if not params:
            raise UserError(f"Result validator {function.__qualname__!r} must take (result) or (ctx, result)")
        return cls(function, len(params) > 1)

    async def validate(self, result: Any, ctx: RunContext[Any]) -> Any:
        """Run the validator on `result` and return what it returns."""
        args = (ctx, result) if self.takes_ctx else (result,)
        if inspect.iscoroutinefunction(self.function):
            return await self.function(*args)
        return await anyio.to_thread.run_sync(lambda: self.function(*args))


async def run_validators(validators: Sequence[ResultValidator], result: Any, ctx: RunContext[Any]) -> Any:
    """Pass `result` through each validator in turn."""
    for validator in validators:
        result = await validator.validate(result, ctx)
    return result
