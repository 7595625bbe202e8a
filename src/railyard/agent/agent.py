"""`Agent`: a model, prompts, tools and a result type; each run is a railyard graph run.

```python
agent = Agent(model, system_prompt="Be brief.")

@agent.tool_plain
def get_capital(country: str) -> str:
    ...

async with agent.iter("What is the capital of France?") as run:
    async for node in run:
        print(node)
print(run.result.data)
```
"""

from __future__ import annotations

import contextlib
import inspect
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, ClassVar, Concatenate, Generic, TypeGuard, overload

from typing_extensions import TypeVar

from railyard._introspect import infer_name
from railyard._sync import refuse_running_loop
from railyard.agent._arguments import check_durable, new_state, pick
from railyard.agent._capture import capture_run_messages, take_capture_list
from railyard.agent._graph import (
    AgentDeps,
    AgentState,
    CallToolsNode,
    EndStrategy,
    FinalResult,
    ModelRequestNode,
    UserPromptNode,
    agent_graph,
    named_agent_graph,
)
from railyard.agent._prompts import PromptFunction
from railyard.agent._result import ResultSchema, ResultValidator
from railyard.agent._run import AgentRun, AgentRunResult, finish, stream_result
from railyard.agent._thread_loop import thread_loop
from railyard.agent.content import UserContent
from railyard.agent.exceptions import UserError
from railyard.agent.messages import ModelMessage
from railyard.agent.models import KnownModelName, Model, infer_model
from railyard.agent.models.instrumented import InstrumentationSettings, InstrumentedModel
from railyard.agent.settings import ModelSettings, merge_model_settings
from railyard.agent.streaming import StreamedRunResult
from railyard.agent.tools import (  # with names pydantic-ai's module offers too
    DocstringFormat,
    RunContext,
    SystemPromptFunc,
    Tool,
    ToolFuncContext,
    ToolFuncEither,
    ToolFuncPlain,
    ToolOptions,
    ToolParams,
    ToolPrepareFunc,
)
from railyard.agent.usage import Usage, UsageLimits
from railyard.graph import Graph
from railyard.nodes import End
from railyard.persistence import BaseStatePersistence
from railyard.store import RunStore

__all__ = ("Agent", "AgentRun", "AgentRunResult", "EndStrategy", "capture_run_messages")

AgentDepsT = TypeVar("AgentDepsT", default=None)
ResultDataT = TypeVar("ResultDataT", default=str)
RunResultDataT = TypeVar("RunResultDataT")
"""The result type of one run, when it is not the agent's."""
T = TypeVar("T")
S = TypeVar("S")
NoneType = type(None)
_NONE_TYPE: Any = type(None)
ToolReturnT = TypeVar("ToolReturnT")
"""A decorated tool's return type (a coroutine, for an async tool)."""


class Agent(Generic[AgentDepsT, ResultDataT]):
    """A model with prompts, tools and a result type, ready to run on user prompts.

    `result_type` (alias `output_type`) is `str` for a text answer; a pydantic model,
    dataclass or other type makes the model answer through a result tool whose
    arguments are validated into that type.
    """

    _instrument_default: ClassVar[InstrumentationSettings | bool] = False

    @staticmethod
    def instrument_all(instrument: InstrumentationSettings | bool = True) -> None:
        """Instrument every agent whose own `instrument` is None (pydantic-ai's process-wide switch)."""
        Agent._instrument_default = instrument

    def __init__(
        self,
        model: Model | KnownModelName | None = None,
        *,
        result_type: type[ResultDataT] = str,  # type: ignore[assignment]  # the TypeVar defaults to str
        output_type: type[ResultDataT] | None = None,
        system_prompt: str | Sequence[str] = (),
        instructions: str | None = None,
        deps_type: type[AgentDepsT] = _NONE_TYPE,
        name: str | None = None,
        model_settings: ModelSettings | None = None,
        retries: int = 1,
        result_tool_name: str = "final_result",
        result_tool_description: str | None = None,
        result_retries: int | None = None,
        output_retries: int | None = None,
        tools: Sequence[Tool[AgentDepsT] | ToolFuncEither[AgentDepsT, ...]] = (),
        end_strategy: EndStrategy = "early",
        defer_model_check: bool = False,
        instrument: InstrumentationSettings | bool | None = None,
    ) -> None:
        self.model: Model | KnownModelName | None = model if defer_model_check or model is None else infer_model(model)
        """The model runs talk to, unless a run names another."""
        self.name = name
        """The agent's name (inferred from the variable holding it on the first run, if unset)."""
        self.deps_type = deps_type
        """The type of the dependencies runs are given."""
        self.model_settings = model_settings
        """Settings sent with every request; a run's own settings are merged over them."""
        self.end_strategy: EndStrategy = end_strategy
        """What happens to the other tool calls of the response that carries the final result."""
        self.result_type: Any = pick(result_type, output_type, "result_type", "output_type", str)
        """The type of the runs' results."""
        self._result_tool_name = result_tool_name
        self._result_tool_description = result_tool_description
        self._result_schemas: dict[Any, ResultSchema] = {}
        self._schema_for(self.result_type)
        self._max_result_retries = pick(result_retries, output_retries, "result_retries", "output_retries", None)
        if self._max_result_retries is None:
            self._max_result_retries = retries
        self._system_prompts = (system_prompt,) if isinstance(system_prompt, str) else tuple(system_prompt)
        self._system_prompt_functions: list[PromptFunction] = []
        self._instructions = instructions
        self._instruction_functions: list[PromptFunction] = []
        self._result_validators: list[ResultValidator] = []
        self._default_retries = retries
        self._tools: dict[str, Tool[Any]] = {}
        self._override_model: Model | None = None
        self._override_deps: tuple[Any] | None = None
        self.instrument = instrument
        """OpenTelemetry spans for each model request: settings, True (the defaults), False, or None
        (as `Agent.instrument_all()` says)."""
        self._run_graph = named_agent_graph(name)
        for tool in tools:
            self._add_tool(tool if isinstance(tool, Tool) else Tool(tool))

    @property
    def _result_schema(self) -> ResultSchema | None:
        """The schema of the agent's result type, or None for plain text (pydantic-ai's name, which its tests read)."""
        schema = self._schema_for(self.result_type)
        return schema if schema.tools else None

    @property
    def _function_tools(self) -> dict[str, Tool[Any]]:
        """The registered tools by name (pydantic-ai's name for them, which its tests read)."""
        return self._tools

    # -- registration ------------------------------------------------------------------

    def _add_tool(self, tool: Tool[Any]) -> None:
        tool = tool.with_retries(self._default_retries)
        if tool.name in self._tools:
            raise UserError(f"Tool name conflicts with existing tool: {tool.name!r}")
        if tool.name in self._schema_for(self.result_type).tools:
            raise UserError(f"Tool name conflicts with result schema name: {tool.name!r}")
        self._tools[tool.name] = tool

    # The decorators give the function back with its own parameters and return type (a
    # `Callable`, not the `def`), so a call to it still type-checks as a call to the function.
    @overload
    def tool(
        self, func: Callable[Concatenate[RunContext[AgentDepsT], ToolParams], ToolReturnT], /
    ) -> Callable[Concatenate[RunContext[AgentDepsT], ToolParams], ToolReturnT]: ...
    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        prepare: ToolPrepareFunc[AgentDepsT] | None = None,
        docstring_format: DocstringFormat = "auto",
        require_parameter_descriptions: bool = False,
    ) -> Callable[
        [Callable[Concatenate[RunContext[AgentDepsT], ToolParams], ToolReturnT]],
        Callable[Concatenate[RunContext[AgentDepsT], ToolParams], ToolReturnT],
    ]: ...
    def tool(
        self,
        func: ToolFuncContext[AgentDepsT, ...] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        prepare: ToolPrepareFunc[AgentDepsT] | None = None,
        docstring_format: DocstringFormat = "auto",
        require_parameter_descriptions: bool = False,
    ) -> Any:
        """Register a tool whose first parameter is the `RunContext`; bare (`@agent.tool`) or with options.

        Options: `name`, `retries`, `prepare(ctx, definition)` (runs before each request and
        may change the definition or return None to withhold the tool), `docstring_format`
        and `require_parameter_descriptions`. Type checkers check that the function's
        `RunContext[...]` (and `prepare`'s) carries the agent's deps type.
        """
        options = ToolOptions(
            name=name,
            retries=retries,
            prepare=prepare,
            docstring_format=docstring_format,
            require_parameter_descriptions=require_parameter_descriptions,
        )
        return self._decorate(func, True, options)

    @overload
    def tool_plain(self, func: Callable[ToolParams, ToolReturnT], /) -> Callable[ToolParams, ToolReturnT]: ...
    @overload
    def tool_plain(
        self,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        prepare: ToolPrepareFunc[AgentDepsT] | None = None,
        docstring_format: DocstringFormat = "auto",
        require_parameter_descriptions: bool = False,
    ) -> Callable[[Callable[ToolParams, ToolReturnT]], Callable[ToolParams, ToolReturnT]]: ...
    def tool_plain(
        self,
        func: ToolFuncPlain[...] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        prepare: ToolPrepareFunc[AgentDepsT] | None = None,
        docstring_format: DocstringFormat = "auto",
        require_parameter_descriptions: bool = False,
    ) -> Any:
        """Register a tool that takes no run context (options as for `tool`)."""
        options = ToolOptions(
            name=name,
            retries=retries,
            prepare=prepare,
            docstring_format=docstring_format,
            require_parameter_descriptions=require_parameter_descriptions,
        )
        return self._decorate(func, False, options)

    def _decorate(
        self, func: ToolFuncEither[AgentDepsT, ...] | None, takes_ctx: bool, options: ToolOptions
    ) -> ToolFuncEither[AgentDepsT, ...] | Callable[[ToolFuncEither[AgentDepsT, ...]], ToolFuncEither[AgentDepsT, ...]]:
        def register(f: ToolFuncEither[AgentDepsT, ...]) -> ToolFuncEither[AgentDepsT, ...]:
            self._add_tool(
                Tool(
                    f,
                    takes_ctx=takes_ctx,
                    max_retries=options.get("retries"),
                    name=options.get("name"),
                    prepare=options.get("prepare"),
                    docstring_format=options.get("docstring_format", "auto"),
                    require_parameter_descriptions=options.get("require_parameter_descriptions", False),
                )
            )
            return f

        return register if func is None else register(func)

    # Each of the four shapes a prompt function may have is given back as that shape, so the
    # decorated function keeps its type (pydantic-ai's overloads).
    @overload
    def system_prompt(
        self, func: Callable[[RunContext[AgentDepsT]], str], /
    ) -> Callable[[RunContext[AgentDepsT]], str]: ...
    @overload
    def system_prompt(
        self, func: Callable[[RunContext[AgentDepsT]], Awaitable[str]], /
    ) -> Callable[[RunContext[AgentDepsT]], Awaitable[str]]: ...
    @overload
    def system_prompt(self, func: Callable[[], str], /) -> Callable[[], str]: ...
    @overload
    def system_prompt(self, func: Callable[[], Awaitable[str]], /) -> Callable[[], Awaitable[str]]: ...
    @overload
    def system_prompt(
        self, /, *, dynamic: bool = False
    ) -> Callable[[SystemPromptFunc[AgentDepsT]], SystemPromptFunc[AgentDepsT]]: ...
    def system_prompt(
        self, func: SystemPromptFunc[AgentDepsT] | None = None, /, *, dynamic: bool = False
    ) -> SystemPromptFunc[AgentDepsT] | Callable[[SystemPromptFunc[AgentDepsT]], SystemPromptFunc[AgentDepsT]]:
        """Register a function (taking the `RunContext` or nothing, sync or async) that returns a system prompt.

        It runs when a run starts a new conversation; with `dynamic=True` it also runs again
        when a run continues a conversation it wrote to, replacing its earlier text.
        """

        def register(f: SystemPromptFunc[AgentDepsT]) -> SystemPromptFunc[AgentDepsT]:
            self._system_prompt_functions.append(PromptFunction.of(f, dynamic=dynamic))
            return f

        return register if func is None else register(func)

    @overload
    def instructions(
        self, func: Callable[[RunContext[AgentDepsT]], str], /
    ) -> Callable[[RunContext[AgentDepsT]], str]: ...
    @overload
    def instructions(
        self, func: Callable[[RunContext[AgentDepsT]], Awaitable[str]], /
    ) -> Callable[[RunContext[AgentDepsT]], Awaitable[str]]: ...
    @overload
    def instructions(self, func: Callable[[], str], /) -> Callable[[], str]: ...
    @overload
    def instructions(self, func: Callable[[], Awaitable[str]], /) -> Callable[[], Awaitable[str]]: ...
    def instructions(self, func: SystemPromptFunc[AgentDepsT], /) -> SystemPromptFunc[AgentDepsT]:
        """Register a function (taking the `RunContext` or nothing, sync or async) whose text is sent as instructions.

        Instructions go with every request, after the agent's static `instructions`, and
        are never stored in the conversation.
        """
        self._instruction_functions.append(PromptFunction.of(func))
        return func

    @overload
    def result_validator(
        self, func: Callable[[RunContext[AgentDepsT], ResultDataT], ResultDataT], /
    ) -> Callable[[RunContext[AgentDepsT], ResultDataT], ResultDataT]: ...
    @overload
    def result_validator(
        self, func: Callable[[RunContext[AgentDepsT], ResultDataT], Awaitable[ResultDataT]], /
    ) -> Callable[[RunContext[AgentDepsT], ResultDataT], Awaitable[ResultDataT]]: ...
    @overload
    def result_validator(
        self, func: Callable[[ResultDataT], ResultDataT], /
    ) -> Callable[[ResultDataT], ResultDataT]: ...
    @overload
    def result_validator(
        self, func: Callable[[ResultDataT], Awaitable[ResultDataT]], /
    ) -> Callable[[ResultDataT], Awaitable[ResultDataT]]: ...
    def result_validator(self, func: Callable[..., Any], /) -> Callable[..., Any]:
        """Register a check `(ctx, result)` or `(result)`, sync or async, that returns the result to keep.

        Raising `ModelRetry` sends its message to the model, which tries again (counting
        against the result retries).
        """
        self._result_validators.append(ResultValidator.of(func))
        return func

    output_validator = result_validator

    # -- running -----------------------------------------------------------------------

    # `iter`, `run`, `run_sync` and `run_stream` are overloaded so that a run given a
    # `result_type` (or its other spelling, `output_type`) is typed with that result type.
    @overload
    def iter(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: None = None,
        output_type: None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AbstractAsyncContextManager[AgentRun[AgentDepsT, ResultDataT]]: ...
    @overload
    def iter(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[RunResultDataT] | None = None,
        output_type: type[RunResultDataT] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AbstractAsyncContextManager[AgentRun[AgentDepsT, RunResultDataT]]: ...
    @asynccontextmanager
    async def iter(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[Any] | None = None,
        output_type: type[Any] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AsyncIterator[AgentRun[AgentDepsT, Any]]:
        """Start a run and give its `AgentRun`, to iterate over or drive with `next()`.

        With a `store`, the run is durable: recorded there as run `run_id` (a new id if none
        is given: see `AgentRun.run_id`) before its first step, so `resume(store, run_id)`
        carries it on in any process. `persistence=` is pydantic-graph's spelling of the same.

        Raises:
            TypeError: both `persistence` and `store` were given, or `run_id` without `store`.
            RunExists: `store` already holds a run `run_id`.
        """
        check_durable(persistence, store, run_id, "Agent.iter()")
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        history = take_capture_list()
        if history is None:
            history = []
        state = new_state(user_prompt, history, message_history, usage)
        result_type = pick(result_type, output_type, "result_type", "output_type", None)
        agent_deps = self._agent_deps(result_type, model, deps, model_settings, usage_limits)
        async with self._graph().iter(
            UserPromptNode(user_prompt),
            state=state,
            deps=agent_deps,
            persistence=persistence,
            infer_name=False,
            store=store,
            run_id=run_id,
        ) as graph_run:
            agent_deps.run_id = graph_run.run_id  # known once the run is entered (a store may make it up)
            yield AgentRun(graph_run)

    @asynccontextmanager
    async def iter_from_persistence(
        self,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]],
        *,
        result_type: Any = None,
        output_type: Any = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
    ) -> AsyncIterator[AgentRun[AgentDepsT, ResultDataT]]:
        """Carry on a stored run from its next node, with this agent's model and tools.

        The conversation, usage and retry counts come from the store; the model, tools
        and result type from this agent (or the arguments), so pass the same result type
        the run started with if it was not the agent's.
        """
        result_type = pick(result_type, output_type, "result_type", "output_type", None)
        agent_deps = self._agent_deps(result_type, model, deps, model_settings, usage_limits)
        async with self._graph().iter_from_persistence(persistence, deps=agent_deps, infer_name=False) as graph_run:
            agent_deps.run_id = graph_run.run_id
            yield AgentRun(graph_run)

    @asynccontextmanager
    async def iter_resume(
        self,
        store: RunStore,
        run_id: str,
        *,
        result_type: Any = None,
        output_type: Any = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
    ) -> AsyncIterator[AgentRun[AgentDepsT, ResultDataT]]:
        """Take up stored run `run_id` where it stopped, as an `AgentRun` to iterate or drive.

        What comes from the store and what from this agent is as for `iter_from_persistence`.

        Raises:
            RunNotFound: the store has no such run.
            RunEnded: the run has ended.
            RunLocked: another driver is advancing the run.
        """
        result_type = pick(result_type, output_type, "result_type", "output_type", None)
        agent_deps = self._agent_deps(result_type, model, deps, model_settings, usage_limits)
        async with self._graph().iter_resume(store, run_id, deps=agent_deps) as graph_run:
            agent_deps.run_id = graph_run.run_id
            yield AgentRun(graph_run)

    async def resume(
        self,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | RunStore,
        run_id: str | None = None,
        *,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        usage_limits: UsageLimits | None = None,
    ) -> AgentRunResult[ResultDataT]:
        """Carry a stored run on to its end: `resume(store, run_id)`, or `resume(persistence)`.

        Raises:
            TypeError: a persistence was given with a `run_id`, or a store without one.
            RunNotFound: the store has no such run.
            RunEnded: the run has already ended.
            RunLocked: another driver is advancing the run.
            GraphVersionError: the run was stored by an agent graph this railyard cannot resume
                (its state or nodes changed in ways the run needs); nothing is stored.
        """
        if isinstance(persistence, BaseStatePersistence):
            if run_id is not None:
                raise TypeError(
                    "Agent.resume() takes a store and a run id, or a persistence alone; got a persistence and "
                    f"run_id={run_id!r}. Use resume(store, run_id) or resume(persistence)."
                )
            context = self.iter_from_persistence(persistence, model=model, deps=deps, usage_limits=usage_limits)
        else:
            if run_id is None or not hasattr(persistence, "read"):
                raise TypeError(f"Agent.resume({persistence!r}) needs a store and a run id: resume(store, run_id).")
            context = self.iter_resume(persistence, run_id, model=model, deps=deps, usage_limits=usage_limits)
        async with context as run:
            return await finish(run)

    async def initialize(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        store: RunStore,
        run_id: str | None = None,
        message_history: list[ModelMessage] | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
    ) -> str:
        """Create durable run `run_id` (a new id if none is given) without running it; return its id.

        The run is recorded under the agent's name, for a worker (`run_worker([agent], store)`) or
        `resume(store, run_id)` to carry on with the model and deps given then (neither is stored).

        Raises:
            RunExists: `store` already holds a run `run_id`.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        state = new_state(user_prompt, [], message_history, usage)
        created = await self._graph().initialize(UserPromptNode(user_prompt), store=store, run_id=run_id, state=state)
        assert created is not None, "a run given a store has an id"
        return created

    async def fork(self, store: RunStore, run_id: str, at_step: int, *, new_run_id: str | None = None) -> str:
        """Start a new run from step `at_step` of stored run `run_id` (0 = its start); return its id.

        Step 1 builds the first request; then each model request, and each round of tool calls,
        is a step. The new run starts from the conversation, usage and next node recorded after
        that step, under its own id; the old run is not changed. Resume it with `resume(store, id)`.

        Raises:
            ValueError: the run has no such step, or that step ended it.
            RunNotFound: the store has no run `run_id`.
            RunExists: `new_run_id` is taken.
        """
        return await self._graph().fork(store, run_id, at_step, new_run_id=new_run_id)

    @overload
    async def run(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: None = None,
        output_type: None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AgentRunResult[ResultDataT]: ...
    @overload
    async def run(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[RunResultDataT] | None = None,
        output_type: type[RunResultDataT] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AgentRunResult[RunResultDataT]: ...
    async def run(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[Any] | None = None,
        output_type: type[Any] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AgentRunResult[Any]:
        """Run to the end and return the result; `store`, `run_id` and `persistence` are as for `iter`.

        Raises:
            TypeError: both `persistence` and `store` were given, or `run_id` without `store`.
            RunExists: `store` already holds a run `run_id`.
        """
        check_durable(persistence, store, run_id, "Agent.run()")
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        async with self.iter(
            user_prompt,
            result_type=result_type,
            output_type=output_type,
            message_history=message_history,
            model=model,
            deps=deps,
            model_settings=model_settings,
            usage_limits=usage_limits,
            usage=usage,
            infer_name=False,
            persistence=persistence,
            store=store,
            run_id=run_id,
        ) as run:
            return await finish(run)

    @overload
    def run_sync(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: None = None,
        output_type: None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AgentRunResult[ResultDataT]: ...
    @overload
    def run_sync(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[RunResultDataT] | None = None,
        output_type: type[RunResultDataT] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AgentRunResult[RunResultDataT]: ...
    def run_sync(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[Any] | None = None,
        output_type: type[Any] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> AgentRunResult[Any]:
        """`run`, from synchronous code (it starts an event loop).

        Raises:
            RuntimeError: called while an event loop is running in this thread; use
                `await agent.run(...)` there instead.
            TypeError: both `persistence` and `store` were given, or `run_id` without `store`.
            RunExists: `store` already holds a run `run_id`.
        """
        check_durable(persistence, store, run_id, "Agent.run_sync()")
        refuse_running_loop("Agent.run_sync()", "await agent.run(...)")
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())

        async def main() -> AgentRunResult[Any]:
            return await self.run(
                user_prompt,
                result_type=result_type,
                output_type=output_type,
                message_history=message_history,
                model=model,
                deps=deps,
                model_settings=model_settings,
                usage_limits=usage_limits,
                usage=usage,
                infer_name=False,
                persistence=persistence,
                store=store,
                run_id=run_id,
            )

        return thread_loop().run_until_complete(main())

    @overload
    def run_stream(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: None = None,
        output_type: None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
    ) -> AbstractAsyncContextManager[StreamedRunResult[AgentDepsT, ResultDataT]]: ...
    @overload
    def run_stream(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[RunResultDataT] | None = None,
        output_type: type[RunResultDataT] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
    ) -> AbstractAsyncContextManager[StreamedRunResult[AgentDepsT, RunResultDataT]]: ...
    @asynccontextmanager
    async def run_stream(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: type[Any] | None = None,
        output_type: type[Any] | None = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
    ) -> AsyncIterator[StreamedRunResult[AgentDepsT, Any]]:
        """Run until the model starts the answer that carries the result, and give that as a stream.

        Tool rounds before it run as usual. When the block exits, the rest of the answer
        is read and the run ends with it (unless the result did not validate, in which
        case no further request is made and the run stays where it is).
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        async with (
            self.iter(
                user_prompt,
                result_type=result_type,
                output_type=output_type,
                message_history=message_history,
                model=model,
                deps=deps,
                model_settings=model_settings,
                usage_limits=usage_limits,
                usage=usage,
                infer_name=False,
                persistence=persistence,
            ) as run,
            stream_result(run) as result,
        ):
            yield result

    @contextmanager
    def override(
        self, *, model: Model | KnownModelName | None = None, deps: AgentDepsT | types.EllipsisType = ...
    ) -> Iterator[None]:
        """Use `model` and/or `deps` for every run inside the block (for tests)."""
        saved = self._override_model, self._override_deps
        if model is not None:
            self._override_model = infer_model(model)
        if deps is not ...:
            self._override_deps = (deps,)
        try:
            yield
        finally:
            self._override_model, self._override_deps = saved

    # -- helpers ----------------------------------------------------------------------

    def _graph(self) -> Graph[AgentState, AgentDeps, FinalResult[Any]]:
        """The agent graph under this agent's name, which its durable runs are recorded under."""
        if self._run_graph.name != (self.name or agent_graph.name):  # named (or renamed) since
            self._run_graph = named_agent_graph(self.name)
        return self._run_graph

    def _schema_for(self, result_type: Any) -> ResultSchema:
        """The result schema for `result_type`, built once per type."""
        schema = self._result_schemas.get(result_type)
        if schema is None:
            schema = ResultSchema.build(
                result_type, tool_name=self._result_tool_name, description=self._result_tool_description
            )
            self._result_schemas[result_type] = schema
        return schema

    def _agent_deps(
        self,
        result_type: Any,
        model: Model | KnownModelName | None,
        deps: Any,
        model_settings: ModelSettings | None,
        usage_limits: UsageLimits | None,
    ) -> AgentDeps:
        if result_type is not None and self._result_validators:
            raise UserError("Cannot set a custom run `result_type` when the agent has result validators")
        chosen = self._get_model(model)
        settings = merge_model_settings(self.model_settings, model_settings)
        return AgentDeps(
            user_deps=self._override_deps[0] if self._override_deps is not None else deps,
            model=chosen,
            tools=self._tools,
            result_schema=self._schema_for(self.result_type if result_type is None else result_type),
            result_validators=self._result_validators,
            max_result_retries=self._max_result_retries,
            end_strategy=self.end_strategy,
            system_prompts=self._system_prompts,
            system_prompt_functions=self._system_prompt_functions,
            instructions=self._instructions,
            instruction_functions=self._instruction_functions,
            usage_limits=usage_limits or UsageLimits(),
            model_settings=settings,
        )

    def _get_model(self, model: Model | KnownModelName | None) -> Model:
        """The model a run uses: the override, else `model`, else the agent's; instrumented if asked.

        Raises:
            UserError: there is no model.
        """
        if self._override_model is not None and model is None and self.model is None:
            raise UserError(
                "`model` must be set either when creating the agent or when calling it. "
                "(Even when `override(model=...)` is customizing the model that will actually be called)"
            )
        chosen = self._override_model or model or self.model
        if chosen is None:
            raise UserError("`model` must be set either when creating the agent or when calling it.")
        resolved = infer_model(chosen)
        instrument = self._instrument_default if self.instrument is None else self.instrument
        if instrument and not isinstance(resolved, InstrumentedModel):
            resolved = InstrumentedModel(resolved, None if instrument is True else instrument)
        return resolved

    def _infer_name(self, frame: types.FrameType | None) -> None:
        caller = frame.f_back if frame is not None else None
        while caller is not None and caller.f_code.co_filename == contextlib.__file__:
            caller = caller.f_back  # `iter` and `run_stream` are entered through contextlib
        name = infer_name(self, caller)
        if name is not None:
            self.name = name

    @property
    def last_run_messages(self) -> list[ModelMessage]:
        """Removed in pydantic-ai: always raises; use `capture_run_messages` instead.

        Raises:
            AttributeError: always.
        """
        raise AttributeError("The `last_run_messages` attribute has been removed, use `capture_run_messages` instead.")

    @staticmethod
    def is_user_prompt_node(node: Any) -> TypeGuard[UserPromptNode]:
        """Whether `node` is a `UserPromptNode`."""
        return isinstance(node, UserPromptNode)

    @staticmethod
    def is_model_request_node(node: Any) -> TypeGuard[ModelRequestNode]:
        """Whether `node` is a `ModelRequestNode`."""
        return isinstance(node, ModelRequestNode)

    @staticmethod
    def is_call_tools_node(node: Any) -> TypeGuard[CallToolsNode]:
        """Whether `node` is a `CallToolsNode`."""
        return isinstance(node, CallToolsNode)

    @staticmethod
    def is_end_node(node: Any) -> TypeGuard[End[FinalResult[Any]]]:
        """Whether `node` is the `End` of a run."""
        return isinstance(node, End)

    def __repr__(self) -> str:
        return (
            f"Agent(model={self.model!r}, name={self.name!r}, end_strategy={self.end_strategy!r}, "
            f"model_settings={self.model_settings!r})"
        )
