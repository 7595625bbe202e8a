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
from typing import Annotated, Any, Concatenate, Generic, NotRequired, Required, TypeAlias, get_type_hints, overload

import anyio.to_thread
import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from typing_extensions import ParamSpec, TypedDict, TypeVar

from railyard.agent._docstrings import DocstringFormat, parse_docstring
from railyard.agent.context import RunContext, callable_takes_ctx, is_run_context_annotation
from railyard.agent.exceptions import ModelRetry, UnexpectedModelBehavior, UserError
from railyard.agent.messages import RetryPromptPart, ToolCallPart, ToolReturnPart

__all__ = (
    "A",
    "AgentDepsT",
    "DocstringFormat",
    "ModelRetry",
    "ObjectJsonSchema",
    "RunContext",
    "SystemPromptFunc",
    "Tool",
    "ToolDefinition",
    "ToolFuncContext",
    "ToolFuncEither",
    "ToolFuncPlain",
    "ToolOptions",
    "ToolParams",
    "ToolPrepareFunc",
    "UnexpectedModelBehavior",
    "function_schema",
)

AgentDepsT = TypeVar("AgentDepsT", default=None, contravariant=True)
"""The type of the dependencies a tool's run context carries."""
A = TypeVar("A")
"""A type variable for generic tool helpers."""
ToolParams = ParamSpec("ToolParams", default=...)
"""The parameters of a tool function (after the run context, for one that takes it)."""

ObjectJsonSchema: TypeAlias = dict[str, Any]
"""A JSON schema of an object (a tool's parameters)."""

SystemPromptFunc: TypeAlias = (
    Callable[[RunContext[AgentDepsT]], str]
    | Callable[[RunContext[AgentDepsT]], Awaitable[str]]
    | Callable[[], str]
    | Callable[[], Awaitable[str]]
)
"""A system prompt function: it takes the run context or nothing, and may be async."""
ToolFuncContext: TypeAlias = Callable[Concatenate[RunContext[AgentDepsT], ToolParams], Any]
"""A tool function whose first parameter is the run context."""
ToolFuncPlain: TypeAlias = Callable[ToolParams, Any]
"""A tool function that takes no run context."""
ToolFuncEither: TypeAlias = ToolFuncContext[AgentDepsT, ToolParams] | ToolFuncPlain[ToolParams]
"""Either kind of tool function."""


@dataclass
class ToolDefinition:
    """What the model is told about one tool."""

    name: str
    """The name the model calls it by."""
    description: str | None
    """What it does: the function's docstring without its parameter section (None when nothing describes it)."""
    parameters_json_schema: dict[str, Any]
    """The JSON schema of its arguments."""
    outer_typed_dict_key: str | None = None
    """For a result wrapped in an object, the key it is wrapped under."""


@dataclass(frozen=True)
class _Schema:
    description: str | None
    json_schema: dict[str, Any]
    validator: pydantic.TypeAdapter[Any]
    single_model_param: str | None
    positional: tuple[str, ...] = ()
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    var_positional: str | None = None
    """The name of the `*args` parameter, whose list of values is spread into the call."""
    var_keyword: pydantic.TypeAdapter[dict[str, Any]] | None = None
    """For a function with `**kwargs`: checks the arguments that are not named parameters."""


def function_schema(func: Callable[..., Any], *, takes_ctx: bool) -> tuple[str, dict[str, Any]]:
    """Return the description and the parameters' JSON schema of `func` as a tool.

    With `takes_ctx`, the first parameter is the run context and is left out.
    """
    schema = _build_schema(func, takes_ctx)
    return schema.description or "", schema.json_schema


_CTX_FIRST = "First parameter of tools that take context must be annotated with RunContext[...]"
_CTX_NOT_TAKEN = "RunContext annotations can only be used with tools that take context"
_CTX_NOT_FIRST = "RunContext annotations can only be used as the first argument"


def _check_parameters(
    name: str,
    params: list[inspect.Parameter],
    hints: dict[str, Any],
    takes_ctx: bool,
    undocumented: list[str] | None = None,
) -> list[inspect.Parameter]:
    """The parameters the model fills: all but the run context.

    Raises:
        UserError: the run context is missing, unannotated as such where it is expected,
            or annotated where it is not expected; or `undocumented` names parameters
            that must have a description and have none. All the problems are listed.
    """
    errors: list[str] = []
    if undocumented:
        errors.append(f"Missing parameter descriptions for {', '.join(undocumented)}")
    if takes_ctx and not params:
        errors.append(f"{_CTX_FIRST} (the tool takes a run context, but has no parameters)")
    for index, param in enumerate(params):
        annotated = param.annotation is not param.empty
        is_ctx = annotated and is_run_context_annotation(hints.get(param.name, param.annotation))
        if takes_ctx and index == 0:
            if annotated and not is_ctx and hints.get(param.name) is not Any:  # `Any` may hold the context
                errors.append(_CTX_FIRST)
        elif is_ctx:
            errors.append(_CTX_NOT_TAKEN if not takes_ctx else _CTX_NOT_FIRST)
    if errors:
        details = "\n  ".join(errors)
        raise UserError(f"Error generating schema for {name}:\n  {details}")
    return params[1:] if takes_ctx else params


def _build_schema(
    func: Callable[..., Any], takes_ctx: bool, style: DocstringFormat = "auto", require_descriptions: bool = False
) -> _Schema:
    name = getattr(func, "__qualname__", None) or repr(func)
    signature = inspect.signature(func)
    try:
        hints = get_type_hints(func, include_extras=True)
    except NameError as exc:
        raise UserError(f"Tool {name!r}: cannot resolve a type hint: {exc}") from exc
    description, param_docs = parse_docstring(func, style)
    all_params = list(signature.parameters.values())
    undocumented: list[str] = []
    if require_descriptions:  # the run context needs no description
        filled = all_params[1:] if takes_ctx else all_params
        undocumented = [p.name for p in filled if p.name not in param_docs]
    params = _check_parameters(name, all_params, hints, takes_ctx, undocumented)
    fields: dict[str, Any] = {}
    var_positional: str | None = None
    var_keyword: pydantic.TypeAdapter[dict[str, Any]] | None = None
    for param in params:
        hint: Any = hints.get(param.name, Any)
        if param.kind is param.VAR_KEYWORD:
            var_keyword = pydantic.TypeAdapter(dict[str, hint])
            continue
        if param.kind is param.VAR_POSITIONAL:
            hint = list[hint]
            var_positional = param.name
        annotation: Any = hint
        doc = param_docs.get(param.name)
        if doc is not None and FieldInfo.from_annotation(hint).description is None:
            annotation = Annotated[hint, pydantic.Field(description=doc)]  # a description in the hint wins
        required = param.default is param.empty
        fields[param.name] = Required[annotation] if required else NotRequired[annotation]
    # with `*args`, every parameter before it is passed by position too, so the spread values follow them
    before_star = var_positional is not None
    positional = tuple(
        p.name for p in params if p.kind is p.POSITIONAL_ONLY or (before_star and p.kind is p.POSITIONAL_OR_KEYWORD)
    )
    defaults = {p.name: p.default for p in params if p.default is not p.empty}

    if (
        len(fields) == 1
        and var_keyword is None
        and var_positional is None
        and _is_model_like(hints.get(params[0].name))
    ):
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(hints[params[0].name])
        json_schema = adapter.json_schema()
        if not description:  # the model's own docstring describes the tool
            description = json_schema.pop("description", None)
        return _Schema(description, json_schema, adapter, params[0].name, positional)

    # A TypedDict takes any parameter name (`json`, `model_config`, `_x`), which a model class would not.
    make_typed_dict: Any = TypedDict
    arguments: Any = make_typed_dict(f"{name}_args", fields)
    arguments.__pydantic_config__ = pydantic.ConfigDict(extra="allow" if var_keyword is not None else "forbid")
    validator: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(arguments)
    json_schema = validator.json_schema()
    json_schema.pop("title", None)
    json_schema.setdefault("properties", {})
    json_schema["additionalProperties"] = var_keyword is not None
    return _Schema(
        description,
        dict(sorted(json_schema.items())),
        validator,
        None,
        positional,
        defaults,
        var_positional,
        var_keyword,
    )


def _is_model_like(annotation: Any) -> bool:
    if not isinstance(annotation, type):
        return False
    return issubclass(annotation, pydantic.BaseModel) or (
        hasattr(annotation, "__dataclass_fields__") or hasattr(annotation, "__total__")
    )


ToolPrepareFunc: TypeAlias = Callable[
    [RunContext[AgentDepsT], ToolDefinition], Awaitable[ToolDefinition | None] | ToolDefinition | None
]
"""Called before each model request with a copy of the tool's definition: return it
(changed or not) to offer the tool, or None to leave it out of that request. Sync or async.

`ToolPrepareFunc[int]` takes a `RunContext[int]`; a tool's deps type is inferred from it."""


class ToolOptions(TypedDict, total=False):
    """How `@agent.tool` / `@agent.tool_plain` register a function."""

    name: str | None
    """The name the model calls it by (the function's name by default)."""
    retries: int | None
    """How many times the model may retry a failed call (the agent's `retries` by default)."""
    prepare: ToolPrepareFunc[Any] | None
    """Adjusts or withholds the tool's definition before each request."""
    docstring_format: DocstringFormat
    """The docstring style its parameter descriptions are read in (`'auto'` by default)."""
    require_parameter_descriptions: bool
    """Whether a parameter without a description in the docstring is an error."""


class Tool(Generic[AgentDepsT]):
    """A function the model may call, with its schema and how often it may be retried.

    Generic over the deps type of the run context it takes (`Tool[int]`), which type
    checkers infer from the function's `RunContext[...]` annotation and from `prepare`'s
    (`Tool[None]` when neither says). A subclass may override `prepare_tool_def` to
    change or withhold its definition per request.
    """

    # The first overload reads the deps type from the function's `RunContext[...]`; with one
    # union parameter instead, mypy gives up on it (`Tool[None]`) when the function would fit
    # either side of the union.
    @overload
    def __init__(
        self,
        function: ToolFuncContext[AgentDepsT, ...],
        *,
        takes_ctx: bool | None = None,
        max_retries: int | None = None,
        name: str | None = None,
        description: str | None = None,
        prepare: ToolPrepareFunc[AgentDepsT] | None = None,
        docstring_format: DocstringFormat = "auto",
        require_parameter_descriptions: bool = False,
    ) -> None: ...
    @overload
    def __init__(
        self,
        function: ToolFuncPlain[...],
        *,
        takes_ctx: bool | None = None,
        max_retries: int | None = None,
        name: str | None = None,
        description: str | None = None,
        prepare: ToolPrepareFunc[AgentDepsT] | None = None,
        docstring_format: DocstringFormat = "auto",
        require_parameter_descriptions: bool = False,
    ) -> None: ...
    def __init__(
        self,
        function: ToolFuncEither[AgentDepsT],
        *,
        takes_ctx: bool | None = None,
        max_retries: int | None = None,
        name: str | None = None,
        description: str | None = None,
        prepare: ToolPrepareFunc[AgentDepsT] | None = None,
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
        function: object = self.function
        if getattr(function, "__self__", None) is self:  # a method of this tool: its repr would show the tool again
            function = getattr(function, "__qualname__", "method")
        return (
            f"{type(self).__name__}(function={function!r}, takes_ctx={self.takes_ctx!r}, "
            f"max_retries={self.max_retries!r}, "
            f"name={self.name!r}, description={self.description!r}, prepare={self.prepare!r})"
        )

    def with_retries(self, max_retries: int) -> Tool[AgentDepsT]:
        """A copy with `max_retries` filled in, unless the tool has its own."""
        if self.max_retries is not None:
            return self
        tool = copy.copy(self)
        tool.max_retries = max_retries
        return tool

    async def prepare_tool_def(self, ctx: RunContext[AgentDepsT]) -> ToolDefinition | None:
        """The definition to offer for the next request (None withholds the tool), after `prepare` if there is one."""
        if self.prepare is None:
            return self.definition
        prepared = self.prepare(ctx, copy.deepcopy(self.definition))
        return await prepared if inspect.isawaitable(prepared) else prepared

    prepared_definition = prepare_tool_def

    @property
    def prepares(self) -> bool:
        """Whether the definition may change per request: a `prepare` function, or an overridden `prepare_tool_def`."""
        return self.prepare is not None or type(self).prepare_tool_def is not Tool.prepare_tool_def

    @property
    def definition(self) -> ToolDefinition:
        """What the model is told about this tool."""
        return ToolDefinition(self.name, self.description, self._schema.json_schema)

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
        if self._schema.var_keyword is not None:
            extra = {key: item for key, item in value.items() if key not in self._schema.json_schema["properties"]}
            try:
                value.update(self._schema.var_keyword.validate_python(extra))
            except pydantic.ValidationError as exc:
                return exc
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
        if self._schema.var_positional is not None:
            positional.extend(args.pop(self._schema.var_positional, ()))
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
