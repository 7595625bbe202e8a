"""Tools an agent's model may call: their schema, read from the function, and argument checks.

A tool is a plain function. Its parameters (after the run context, when it takes one)
become a JSON schema the model sees, with each parameter's description taken from the
docstring; the arguments the model sends back are validated against the same
parameters, and a failure becomes a `RetryPromptPart` that tells the model what to fix.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, Required, get_type_hints

import anyio.to_thread
import pydantic
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

from railyard.agent._docstrings import DocstringFormat, parse_docstring
from railyard.agent.context import RunContext, callable_takes_ctx
from railyard.agent.exceptions import ModelRetry, UnexpectedModelBehavior, UserError
from railyard.agent.messages import RetryPromptPart, ToolCallPart, ToolReturnPart

__all__ = (
    "DocstringFormat",
    "RunContext",
    "Tool",
    "ToolDefinition",
    "ToolOptions",
    "ToolPrepareFunc",
    "function_schema",
)


@dataclass
class ToolDefinition:
    """What the model is told about one tool."""

    name: str
    """The name the model calls it by."""
    description: str
    """What it does: the function's docstring without its parameter section."""
    parameters_json_schema: dict[str, Any]
    """The JSON schema of its arguments."""
    outer_typed_dict_key: str | None = None
    """For a result wrapped in an object, the key it is wrapped under."""


@dataclass(frozen=True)
class _Schema:
    description: str
    json_schema: dict[str, Any]
    validator: pydantic.TypeAdapter[Any]
    single_model_param: str | None
    positional: tuple[str, ...] = ()
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])


def function_schema(func: Callable[..., Any], *, takes_ctx: bool) -> tuple[str, dict[str, Any]]:
    """Return the description and the parameters' JSON schema of `func` as a tool.

    With `takes_ctx`, the first parameter is the run context and is left out.
    """
    schema = _build_schema(func, takes_ctx)
    return schema.description, schema.json_schema


def _build_schema(
    func: Callable[..., Any], takes_ctx: bool, style: DocstringFormat = "auto", require_descriptions: bool = False
) -> _Schema:
    name = getattr(func, "__qualname__", repr(func))
    signature = inspect.signature(func)
    try:
        hints = get_type_hints(func, include_extras=True)
    except NameError as exc:
        raise UserError(f"Tool {name!r}: cannot resolve a type hint: {exc}") from exc
    params = list(signature.parameters.values())
    if takes_ctx:
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise UserError(f"Tool {name!r} takes a run context, so its first parameter must be that context")
        params = params[1:]
    description, param_docs = parse_docstring(func, style)
    if require_descriptions:
        missing = [p.name for p in params if p.name not in param_docs]
        if missing:
            raise UserError(f"Tool {name!r}: missing parameter descriptions for {', '.join(missing)}")
    fields: dict[str, Any] = {}
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(f"Tool {name!r}: parameter {param.name!r} is *args or **kwargs, which a model cannot fill")
        annotation: Any = Annotated[hints.get(param.name, Any), pydantic.Field(description=param_docs.get(param.name))]
        fields[param.name] = Required[annotation] if param.default is param.empty else NotRequired[annotation]
    positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_ONLY)
    defaults = {p.name: p.default for p in params if p.default is not p.empty}

    if len(params) == 1 and _is_model_like(hints.get(params[0].name)):
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(hints[params[0].name])
        return _Schema(description, adapter.json_schema(), adapter, params[0].name, positional)

    # A TypedDict takes any parameter name (`json`, `model_config`, `_x`), which a model class would not.
    make_typed_dict: Any = TypedDict
    arguments: Any = make_typed_dict(f"{name}_args", fields)
    arguments.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")
    validator: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(arguments)
    json_schema: dict[str, Any] = validator.json_schema()
    json_schema.pop("title", None)
    json_schema.setdefault("properties", {})
    return _Schema(description, dict(sorted(json_schema.items())), validator, None, positional, defaults)


def _is_model_like(annotation: Any) -> bool:
    if not isinstance(annotation, type):
        return False
    return issubclass(annotation, pydantic.BaseModel) or (
        hasattr(annotation, "__dataclass_fields__") or hasattr(annotation, "__total__")
    )


ToolPrepareFunc = Callable[
    [RunContext[Any], ToolDefinition], "Awaitable[ToolDefinition | None] | ToolDefinition | None"
]
"""Called before each model request with a copy of the tool's definition: return it
(changed or not) to offer the tool, or None to leave it out of that request."""


class ToolOptions(TypedDict, total=False):
    """How `@agent.tool` / `@agent.tool_plain` register a function."""

    name: str | None
    """The name the model calls it by (the function's name by default)."""
    retries: int | None
    """How many times the model may retry a failed call (the agent's `retries` by default)."""
    prepare: ToolPrepareFunc | None
    """Adjusts or withholds the tool's definition before each request."""
    docstring_format: DocstringFormat
    """The docstring style its parameter descriptions are read in (`'auto'` by default)."""
    require_parameter_descriptions: bool
    """Whether a parameter without a description in the docstring is an error."""


class Tool:
    """A function the model may call, with its schema and how often it may be retried."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        takes_ctx: bool | None = None,
        max_retries: int | None = None,
        name: str | None = None,
        description: str | None = None,
        prepare: ToolPrepareFunc | None = None,
        docstring_format: DocstringFormat = "auto",
        require_parameter_descriptions: bool = False,
    ) -> None:
        self.function = function
        """The function itself."""
        self.takes_ctx = callable_takes_ctx(function) if takes_ctx is None else takes_ctx
        """Whether its first parameter is the run context (by default: whether it is annotated so)."""
        self.max_retries = max_retries
        """How many times the model may retry a failed call; None takes the agent's `retries`."""
        self.name = name or function.__name__
        """The name the model calls it by."""
        self.prepare = prepare
        """Adjusts or withholds the tool's definition before each request, if given."""
        self.docstring_format: DocstringFormat = docstring_format
        """The docstring style its parameter descriptions are read in."""
        self.require_parameter_descriptions = require_parameter_descriptions
        """Whether a parameter without a description in the docstring is an error."""
        if max_retries is not None and max_retries < 0:
            raise UserError(f"Tool {self.name!r}: max_retries must be 0 or more, got {max_retries}")
        self._schema = _build_schema(function, self.takes_ctx, docstring_format, require_parameter_descriptions)
        self._is_async = inspect.iscoroutinefunction(function)
        self.description = self._schema.description if description is None else description
        """What the model is told it does; read from the docstring unless given."""

    def __repr__(self) -> str:
        return (
            f"Tool(function={self.function!r}, takes_ctx={self.takes_ctx!r}, max_retries={self.max_retries!r}, "
            f"name={self.name!r}, description={self.description!r}, prepare={self.prepare!r})"
        )

    def with_retries(self, max_retries: int) -> Tool:
        """A copy with `max_retries` filled in, unless the tool has its own."""
        if self.max_retries is not None:
            return self
        tool = copy.copy(self)
        tool.max_retries = max_retries
        return tool

    async def prepared_definition(self, ctx: RunContext[Any]) -> ToolDefinition | None:
        """The definition to offer for the next request, after `prepare` if there is one."""
        if self.prepare is None:
            return self.definition
        prepared = self.prepare(ctx, copy.deepcopy(self.definition))
        return await prepared if inspect.isawaitable(prepared) else prepared

    @property
    def definition(self) -> ToolDefinition:
        """What the model is told about this tool."""
        return ToolDefinition(self.name, self.description or "", self._schema.json_schema)

    def validate_args(self, call: ToolCallPart) -> dict[str, Any] | RetryPromptPart:
        """The keyword arguments to call the function with, or what to tell the model to fix."""
        args = self._validate(call)
        if isinstance(args, pydantic.ValidationError):
            return _retry_prompt(args, call)
        return args

    def _validate(self, call: ToolCallPart) -> dict[str, Any] | pydantic.ValidationError:
        try:
            if isinstance(call.args, str):
                value = self._schema.validator.validate_json(call.args or "{}")
            else:
                value = self._schema.validator.validate_python(call.args)
        except pydantic.ValidationError as exc:
            return exc
        if self._schema.single_model_param is not None:
            return {self._schema.single_model_param: value}
        return {**self._schema.defaults, **value}

    async def call(
        self,
        call: ToolCallPart,
        ctx: RunContext[Any],
        *,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> ToolReturnPart | RetryPromptPart:
        """Run the tool for the model's `call`: its return, or what the model must fix.

        A failure (arguments that do not validate, or `ModelRetry`) is reported to
        `on_failure`, which may raise to end the run; by default it raises
        `UnexpectedModelBehavior` once `ctx.retry` (the failures so far) reaches
        `max_retries`. A sync function runs in a worker thread so it cannot stall the
        event loop; any exception other than `ModelRetry` propagates unchanged.
        """
        fail = on_failure or functools.partial(self.check_retries, ctx.retry)
        args = self._validate(call)
        if isinstance(args, pydantic.ValidationError):
            fail(args)
            return _retry_prompt(args, call)
        positional: list[Any] = [args.pop(name) for name in self._schema.positional if name in args]
        if self.takes_ctx:
            ctx = dataclasses.replace(ctx, tool_name=self.name, tool_call_id=call.tool_call_id)
            positional.insert(0, ctx)
        func = functools.partial(self.function, *positional, **args)
        try:
            result = await func() if self._is_async else await anyio.to_thread.run_sync(func)
        except ModelRetry as exc:
            fail(exc)
            return RetryPromptPart(exc.message, tool_name=call.tool_name, tool_call_id=call.tool_call_id)
        return ToolReturnPart(call.tool_name, result, tool_call_id=call.tool_call_id)

    def check_retries(self, failures: int, cause: BaseException) -> None:
        """Raise `UnexpectedModelBehavior` if a failure after `failures` earlier ones is one too many."""
        limit = 1 if self.max_retries is None else self.max_retries
        if failures >= limit:
            raise UnexpectedModelBehavior(f"Tool exceeded max retries count of {limit}") from cause


def _retry_prompt(error: pydantic.ValidationError, call: ToolCallPart) -> RetryPromptPart:
    errors: list[ErrorDetails] = error.errors(include_url=False)
    return RetryPromptPart(errors, tool_name=call.tool_name, tool_call_id=call.tool_call_id)
