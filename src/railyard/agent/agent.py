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

import asyncio
import dataclasses
import inspect
import threading
import types
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeGuard, overload

from typing_extensions import TypeVar, Unpack

from railyard._sync import refuse_running_loop
from railyard.agent._graph import (
    AgentDeps,
    AgentState,
    CallToolsNode,
    EndStrategy,
    FinalResult,
    ModelRequestNode,
    UserPromptNode,
    agent_graph,
)
from railyard.agent._prompts import PromptFunction
from railyard.agent._result import ResultSchema, ResultValidator
from railyard.agent.content import UserContent
from railyard.agent.events import FinalResultEvent
from railyard.agent.exceptions import UnexpectedModelBehavior, UserError
from railyard.agent.messages import ModelMessage, ModelMessagesTypeAdapter, ModelRequest, ToolReturnPart
from railyard.agent.models import KnownModelName, Model, infer_model
from railyard.agent.settings import ModelSettings
from railyard.agent.streaming import StreamedRunResult
from railyard.agent.tools import Tool, ToolOptions
from railyard.agent.usage import Usage, UsageLimits
from railyard.graph import GraphRun
from railyard.nodes import BaseNode, End
from railyard.persistence import BaseStatePersistence

__all__ = ("Agent", "AgentRun", "AgentRunResult", "EndStrategy", "capture_run_messages")

AgentDepsT = TypeVar("AgentDepsT", default=None)
ResultDataT = TypeVar("ResultDataT", default=str)
F = TypeVar("F", bound=Callable[..., Any])
_NONE_TYPE: Any = type(None)
AgentNode = BaseNode[AgentState, AgentDeps, FinalResult[Any]] | End[FinalResult[Any]]


_captured: ContextVar[list[list[ModelMessage]] | None] = ContextVar("railyard_captured_messages", default=None)


@contextmanager
def capture_run_messages() -> Iterator[list[ModelMessage]]:
    """Give a list that the first agent run inside the block fills with its messages.

    Useful to see what was said when a run fails:

    ```python
    with capture_run_messages() as messages:
        try:
            agent.run_sync("q")
        except UnexpectedModelBehavior:
            print(messages)
    ```
    """
    messages: list[ModelMessage] = []
    token = _captured.set([messages])
    try:
        yield messages
    finally:
        _captured.reset(token)


def _take_capture_list() -> list[ModelMessage] | None:
    """The capture block's list, the first time a run asks for it; else None."""
    pending = _captured.get()
    if not pending:
        return None
    return pending.pop()


class AgentRunResult(Generic[ResultDataT]):
    """What a finished agent run gives: its result `data`, conversation and usage."""

    def __init__(self, data: ResultDataT, state: AgentState, result_tool_name: str | None) -> None:
        self.data = data
        """The run's result."""
        self._state = state
        self._result_tool_name = result_tool_name

    @property
    def output(self) -> ResultDataT:
        """The run's result (the later name for `data`)."""
        return self.data

    def all_messages(self, *, result_tool_return_content: str | None = None) -> list[ModelMessage]:
        """The whole conversation, including any history the run started from.

        `result_tool_return_content` replaces what the final result tool "returned" in
        the last message, to continue the conversation with that text.
        """
        messages = list(self._state.message_history)
        if result_tool_return_content is None:
            return messages
        if self._result_tool_name is None:
            raise ValueError("Cannot set result tool return content when the return type is `str`.")
        last = messages[-1]
        if isinstance(last, ModelRequest):
            for index, part in enumerate(last.parts):
                if isinstance(part, ToolReturnPart) and part.tool_name == self._result_tool_name:
                    parts = list(last.parts)
                    parts[index] = dataclasses.replace(part, content=result_tool_return_content)
                    messages[-1] = dataclasses.replace(last, parts=parts)
                    break
        return messages

    def new_messages(self, *, result_tool_return_content: str | None = None) -> list[ModelMessage]:
        """The messages this run added."""
        messages = self.all_messages(result_tool_return_content=result_tool_return_content)
        return messages[self._state.new_message_index :]

    def all_messages_json(self, *, result_tool_return_content: str | None = None) -> bytes:
        """`all_messages()` as JSON."""
        return ModelMessagesTypeAdapter.dump_json(
            self.all_messages(result_tool_return_content=result_tool_return_content)
        )

    def new_messages_json(self, *, result_tool_return_content: str | None = None) -> bytes:
        """`new_messages()` as JSON."""
        return ModelMessagesTypeAdapter.dump_json(
            self.new_messages(result_tool_return_content=result_tool_return_content)
        )

    def usage(self) -> Usage:
        """Requests and tokens the run used."""
        return self._state.usage

    def __repr__(self) -> str:
        return f"AgentRunResult(data={self.data!r})"


class AgentRun(Generic[AgentDepsT, ResultDataT]):
    """An agent run in progress: async-iterate over its nodes, or drive it with `next()`.

    Iterating yields each node as the run reaches it: `ModelRequestNode`,
    `CallToolsNode`, ... and finally `End(FinalResult(...))`. Before the first step,
    `next_node` is the `UserPromptNode` that builds the first request.
    """

    def __init__(self, graph_run: GraphRun[AgentState, AgentDeps, FinalResult[Any]]) -> None:
        self._run = graph_run

    @property
    def ctx(self) -> Any:
        """The run's state and dependencies (a graph run context)."""
        return self._run.ctx

    @property
    def next_node(self) -> AgentNode:
        """The node that runs next, or the `End` once the run has ended."""
        return self._run.next_node

    @property
    def result(self) -> AgentRunResult[ResultDataT] | None:
        """The result once the run has ended, else None."""
        result = self._run.result
        if result is None:
            return None
        final = result.output
        return AgentRunResult(final.data, self._run.state, final.tool_name)

    def usage(self) -> Usage:
        """Requests and tokens used so far."""
        return self._run.state.usage

    def all_messages(self) -> list[ModelMessage]:
        """The conversation so far."""
        return list(self._run.state.message_history)

    def new_messages(self) -> list[ModelMessage]:
        """The messages this run has added so far."""
        return self._run.state.message_history[self._run.state.new_message_index :]

    async def next(self, node: BaseNode[AgentState, AgentDeps, FinalResult[Any]] | None = None) -> AgentNode:
        """Run `node` (by default `next_node`) and return the node after it."""
        return await self._run.next(node)

    def __aiter__(self) -> AsyncIterator[AgentNode]:
        return self

    async def __anext__(self) -> AgentNode:
        """Run the next node and return the one it leads to; stop after the `End`."""
        if isinstance(self._run.next_node, End):
            raise StopAsyncIteration
        return await self._run.next()

    def __repr__(self) -> str:
        result = self._run.result
        shown = "<run not finished>" if result is None else repr(result.output)
        return f"<AgentRun result={shown} usage={self.usage()!r}>"


class Agent(Generic[AgentDepsT, ResultDataT]):
    """A model with prompts, tools and a result type, ready to run on user prompts.

    `result_type` (alias `output_type`) is `str` for a text answer; a pydantic model,
    dataclass or other type makes the model answer through a result tool whose
    arguments are validated into that type.
    """

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
        tools: Sequence[Tool | Callable[..., Any]] = (),
        end_strategy: EndStrategy = "early",
        defer_model_check: bool = False,
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
        self.result_type: Any = _pick(result_type, output_type, "result_type", "output_type", str)
        """The type of the runs' results."""
        self._result_tool_name = result_tool_name
        self._result_tool_description = result_tool_description
        self._result_schemas: dict[Any, ResultSchema] = {}
        self._result_schema(self.result_type)
        self._max_result_retries = _pick(result_retries, output_retries, "result_retries", "output_retries", None)
        if self._max_result_retries is None:
            self._max_result_retries = retries
        self._system_prompts = (system_prompt,) if isinstance(system_prompt, str) else tuple(system_prompt)
        self._system_prompt_functions: list[PromptFunction] = []
        self._instructions = instructions
        self._instruction_functions: list[PromptFunction] = []
        self._result_validators: list[ResultValidator] = []
        self._default_retries = retries
        self._tools: dict[str, Tool] = {}
        self._override_model: Model | None = None
        self._override_deps: tuple[Any] | None = None
        for tool in tools:
            self._add_tool(tool if isinstance(tool, Tool) else Tool(tool))

    # -- registration ------------------------------------------------------------------

    def _add_tool(self, tool: Tool) -> None:
        tool = tool.with_retries(self._default_retries)
        if tool.name in self._tools:
            raise UserError(f"Tool name conflicts with existing tool: {tool.name!r}")
        if tool.name in self._result_schema(self.result_type).tools:
            raise UserError(f"Tool name conflicts with result schema name: {tool.name!r}")
        self._tools[tool.name] = tool

    @overload
    def tool(self, func: F, /) -> F: ...
    @overload
    def tool(self, /, **options: Unpack[ToolOptions]) -> Callable[[F], F]: ...
    def tool(self, func: F | None = None, /, **options: Unpack[ToolOptions]) -> Any:
        """Register a tool whose first parameter is the `RunContext`.

        Options (`ToolOptions`): `name`, `retries`, `prepare(ctx, definition)` (runs
        before each request and may change the definition or return None to withhold
        the tool), `docstring_format` and `require_parameter_descriptions`.
        """
        return self._decorate(func, True, options)

    @overload
    def tool_plain(self, func: F, /) -> F: ...
    @overload
    def tool_plain(self, /, **options: Unpack[ToolOptions]) -> Callable[[F], F]: ...
    def tool_plain(self, func: F | None = None, /, **options: Unpack[ToolOptions]) -> Any:
        """Register a tool that takes no run context (options as for `tool`)."""
        return self._decorate(func, False, options)

    def _decorate(self, func: F | None, takes_ctx: bool, options: ToolOptions) -> Any:
        def register(f: F) -> F:
            retries = options.get("retries")
            self._add_tool(
                Tool(
                    f,
                    takes_ctx=takes_ctx,
                    max_retries=retries,
                    name=options.get("name"),
                    prepare=options.get("prepare"),
                    docstring_format=options.get("docstring_format", "auto"),
                    require_parameter_descriptions=options.get("require_parameter_descriptions", False),
                )
            )
            return f

        return register if func is None else register(func)

    @overload
    def system_prompt(self, func: F, /) -> F: ...
    @overload
    def system_prompt(self, /, *, dynamic: bool = False) -> Callable[[F], F]: ...
    def system_prompt(self, func: F | None = None, /, *, dynamic: bool = False) -> Any:
        """Register a function (taking the `RunContext` or nothing) that returns a system prompt.

        It runs when a run starts a new conversation; with `dynamic=True` it also runs again
        when a run continues a conversation it wrote to, replacing its earlier text.
        """

        def register(f: F) -> F:
            self._system_prompt_functions.append(PromptFunction.of(f, dynamic=dynamic))
            return f

        return register if func is None else register(func)

    def instructions(self, func: F, /) -> F:
        """Register a function (taking the `RunContext` or nothing) whose text is sent as instructions.

        Instructions go with every request, after the agent's static `instructions`, and
        are never stored in the conversation.
        """
        self._instruction_functions.append(PromptFunction.of(func))
        return func

    def result_validator(self, func: F, /) -> F:
        """Register a check `(ctx, result)` or `(result)` that returns the result to keep.

        Raising `ModelRetry` sends its message to the model, which tries again (counting
        against the result retries).
        """
        self._result_validators.append(ResultValidator.of(func))
        return func

    output_validator = result_validator

    # -- running -----------------------------------------------------------------------

    @asynccontextmanager
    async def iter(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: Any = None,
        output_type: Any = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
    ) -> AsyncIterator[AgentRun[AgentDepsT, ResultDataT]]:
        """Start a run and give its `AgentRun`, to iterate over or drive with `next()`.

        With a durable `persistence`, every step is stored and the run can be carried on
        in another process with `iter_from_persistence` (or `resume`).
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        history = _take_capture_list()
        if history is None:
            history = []
        history.extend(message_history or [])
        state = AgentState(
            message_history=history,
            usage=usage if usage is not None else Usage(),
            prompt=user_prompt,
            new_message_index=len(history),
        )
        result_type = _pick(result_type, output_type, "result_type", "output_type", None)
        agent_deps = self._agent_deps(result_type, model, deps, model_settings, usage_limits)
        async with agent_graph.iter(
            UserPromptNode(user_prompt), state=state, deps=agent_deps, persistence=persistence, infer_name=False
        ) as graph_run:
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
        result_type = _pick(result_type, output_type, "result_type", "output_type", None)
        agent_deps = self._agent_deps(result_type, model, deps, model_settings, usage_limits)
        async with agent_graph.iter_from_persistence(persistence, deps=agent_deps, infer_name=False) as graph_run:
            yield AgentRun(graph_run)

    async def resume(
        self,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]],
        *,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        usage_limits: UsageLimits | None = None,
    ) -> AgentRunResult[ResultDataT]:
        """Carry a stored run on to its end and return its result."""
        async with self.iter_from_persistence(persistence, model=model, deps=deps, usage_limits=usage_limits) as run:
            return await _finish(run)

    async def run(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: Any = None,
        output_type: Any = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
    ) -> AgentRunResult[ResultDataT]:
        """Run to the end and return the result."""
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
        ) as run:
            return await _finish(run)

    def run_sync(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: Any = None,
        output_type: Any = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
    ) -> AgentRunResult[ResultDataT]:
        """`run`, from synchronous code (it starts an event loop).

        Raises:
            RuntimeError: called while an event loop is running in this thread; use
                `await agent.run(...)` there instead.
        """
        refuse_running_loop("Agent.run_sync()", "await agent.run(...)")
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())

        async def main() -> AgentRunResult[ResultDataT]:
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
            )

        return _thread_loop().run_until_complete(main())

    @asynccontextmanager
    async def run_stream(
        self,
        user_prompt: str | Sequence[UserContent],
        *,
        result_type: Any = None,
        output_type: Any = None,
        message_history: list[ModelMessage] | None = None,
        model: Model | KnownModelName | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        model_settings: ModelSettings | None = None,
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
        infer_name: bool = True,
        persistence: BaseStatePersistence[AgentState, FinalResult[Any]] | None = None,
    ) -> AsyncIterator[StreamedRunResult[ResultDataT]]:
        """Run until the model starts the answer that carries the result, and give that as a stream.

        Tool rounds before it run as usual. When the block exits, the rest of the answer
        is read and the run ends with it (unless the result did not validate, in which
        case no further request is made and the run stays where it is).
        """
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
        ) as run:
            node = run.next_node
            while not isinstance(node, ModelRequestNode):
                if isinstance(node, End):
                    raise UnexpectedModelBehavior("The run ended without a streamed final result")
                node = await run.next(node)
            while True:
                result: StreamedRunResult[ResultDataT] | None = None
                async with node.stream(run.ctx) as events:
                    async for event in events:
                        if isinstance(event, FinalResultEvent):
                            result = StreamedRunResult(run.ctx.state, run.ctx.deps, events, event)
                            yield result
                            break
                if result is not None:
                    result._recorded = True  # pyright: ignore[reportPrivateUsage]
                call_tools = await run.next(node)
                assert isinstance(call_tools, CallToolsNode)
                if result is not None:
                    await _end_streamed_run(run, call_tools, result)
                    return
                after = await run.next(call_tools)
                if not isinstance(after, ModelRequestNode):
                    raise UnexpectedModelBehavior("The run ended without a streamed final result")
                node = after

    @contextmanager
    def override(self, *, model: Model | KnownModelName | None = None, deps: Any = ...) -> Iterator[None]:
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

    def _result_schema(self, result_type: Any) -> ResultSchema:
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
        chosen = self._override_model or model or self.model
        if chosen is None:
            raise UserError("`model` must be set either when creating the agent or when calling it.")
        settings = model_settings or self.model_settings
        if self.model_settings and model_settings:
            settings = {**self.model_settings, **model_settings}
        return AgentDeps(
            user_deps=self._override_deps[0] if self._override_deps is not None else deps,
            model=infer_model(chosen),
            tools=self._tools,
            result_schema=self._result_schema(self.result_type if result_type is None else result_type),
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

    def _infer_name(self, frame: types.FrameType | None) -> None:
        caller = frame.f_back if frame is not None else None
        if caller is None:
            return
        for scope in (caller.f_locals, caller.f_globals):
            for key, value in scope.items():
                if value is self:
                    self.name = key
                    return

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


async def _end_streamed_run(run: AgentRun[Any, Any], call_tools: CallToolsNode, result: StreamedRunResult[Any]) -> None:
    """Take the run to its end after a streamed answer, validating the result only if no one has."""
    validated = result._validated  # pyright: ignore[reportPrivateUsage]
    if validated is not None:
        call_tools.preset_result(result._final.tool_name, validated[0])  # pyright: ignore[reportPrivateUsage]
    after = await run.next(call_tools)
    if isinstance(after, ModelRequestNode):
        # the result did not validate: keep the tool returns and retry prompts in the
        # conversation, but make no further request
        run.ctx.state.message_history.append(after.request)


async def _finish(run: AgentRun[Any, ResultDataT]) -> AgentRunResult[ResultDataT]:
    async for _ in run:
        pass
    result = run.result
    assert result is not None, "a run that stops iterating has ended"
    return result


class _LoopHolder:
    """A thread's event loop for `run_sync`, closed when the thread ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_running():
            self.loop.close()


_loops = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """The event loop `run_sync` uses in this thread: one for all its calls.

    Reusing it keeps objects bound to a loop (an `httpx.AsyncClient` given to a model,
    a connection pool in deps) working from one `run_sync` call to the next.
    """
    holder: _LoopHolder | None = getattr(_loops, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _loops.holder = _LoopHolder()
    return holder.loop


def _pick(old: Any, new: Any, old_name: str, new_name: str, default: Any) -> Any:
    """One of a pair of old/new parameter names (`result_type`/`output_type`, ...)."""
    if new is not None and old is not None and old is not default:
        raise UserError(f"`{old_name}` and `{new_name}` cannot be set at the same time.")
    return new if new is not None else old
