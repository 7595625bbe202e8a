"""The agent loop as a railyard node graph: ask the model, call its tools, repeat.

`UserPromptNode` builds the first request (system prompts and the user's prompt);
`ModelRequestNode` sends a request and leads to `CallToolsNode` with the response;
that node either ends the run with a `FinalResult` (the model's text, or a result
tool's validated arguments) or runs the tools the model called and leads to the next
`ModelRequestNode` with their returns and any retry prompts.

Everything a run accumulates lives in `AgentState`, which a durable store records
after every step; everything it is given (model, tools, result schema, limits) lives
in `AgentDeps`, which the agent rebuilds when a stored run is resumed.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import anyio
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from railyard.agent._prompts import PromptFunction, refresh_dynamic_prompts, render_instructions, system_prompt_parts
from railyard.agent._result import ResultSchema, ResultTool, ResultValidator, run_validators
from railyard.agent._stream import AgentStream, Emit, stream_events
from railyard.agent.content import UserContent
from railyard.agent.context import RunContext
from railyard.agent.events import FunctionToolCallEvent, FunctionToolResultEvent, HandleResponseEvent
from railyard.agent.exceptions import AgentRunError, ModelRetry, UnexpectedModelBehavior
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo, Model, open_stream, send_request
from railyard.agent.settings import ModelSettings
from railyard.agent.tools import Tool, ToolDefinition
from railyard.agent.usage import Usage, UsageLimits
from railyard.graph import Graph
from railyard.nodes import BaseNode, End, GraphRunContext

__all__ = (
    "AgentDeps",
    "AgentState",
    "CallToolsNode",
    "EndStrategy",
    "FinalResult",
    "ModelRequestNode",
    "UserPromptNode",
    "agent_graph",
    "named_agent_graph",
)

ResultDataT = TypeVar("ResultDataT")
EndStrategy = Literal["early", "exhaustive"]
"""What to do with the other tool calls of a response that carries the final result:
`'early'` skips them, `'exhaustive'` runs the function tools anyway."""

PLAIN_TEXT_NOT_ALLOWED = "Plain text responses are not permitted, please call one of the functions instead."
FINAL_RESULT_PROCESSED = "Final result processed."
TOOL_NOT_EXECUTED = "Tool not executed - a final result was already processed."
RESULT_TOOL_NOT_USED = "Result tool not used - a final result was already processed."
RESULT_TOOL_FAILED = "Result tool not used - result failed validation."


@dataclass
class FinalResult(Generic[ResultDataT]):
    """How an agent run ended: its result, and the result tool that carried it, if any."""

    data: ResultDataT
    """The result."""
    tool_name: str | None = None
    """The result tool the model called, or None for a text answer."""
    tool_call_id: str | None = None
    """The id of that call, if the model gave one."""

    @property
    def output(self) -> ResultDataT:
        """The result (the later name for `data`)."""
        return self.data


@dataclass
class AgentState:
    """What an agent run accumulates; stored after every step of a durable run."""

    message_history: list[ModelMessage]
    """The whole conversation, including any history the run started from."""
    usage: Usage = field(default_factory=Usage)
    """Requests and tokens used so far."""
    retries: dict[str, int] = field(default_factory=dict)
    """How many times each tool has failed in this run."""
    run_step: int = 0
    """How many model requests have been made."""
    prompt: str | Sequence[UserContent] = ""
    """The user prompt the run started with."""
    new_message_index: int = 0
    """Where this run's messages start in `message_history`."""
    result_retries: int = 0
    """How many times a result has been rejected in this run."""


@dataclass
class AgentDeps:
    """What an agent run is given: model, tools, result schema, limits and the user's deps."""

    user_deps: Any
    model: Model
    tools: dict[str, Tool[Any]]
    result_schema: ResultSchema
    result_validators: Sequence[ResultValidator] = ()
    max_result_retries: int = 1
    end_strategy: EndStrategy = "early"
    system_prompts: Sequence[str] = ()
    system_prompt_functions: Sequence[PromptFunction] = ()
    instructions: str | None = None
    instruction_functions: Sequence[PromptFunction] = ()
    usage_limits: UsageLimits = field(default_factory=UsageLimits)
    model_settings: ModelSettings | None = None
    run_id: str | None = None
    """The id of the durable run these deps drive (`None` in memory); set once the run is entered."""
    step: GraphRunContext[Any, Any] | None = field(default=None, init=False, repr=False)
    """The context of the agent-graph step running now (its step id and the run's signals, for `wait_for`)."""
    function_tool_defs: list[ToolDefinition] = field(init=False)
    prepares_tools: bool = field(init=False)

    def __post_init__(self) -> None:
        self.function_tool_defs = [tool.definition for tool in self.tools.values()]
        self.prepares_tools = any(tool.prepares for tool in self.tools.values())

    async def tool_definitions(self, state: AgentState) -> list[ToolDefinition]:
        """The function tools to offer for the next request, after each tool's `prepare`."""
        if not self.prepares_tools:
            return self.function_tool_defs
        definitions = []
        for tool in self.tools.values():
            ctx = self.run_context(state, retry=state.retries.get(tool.name, 0))
            ctx.tool_name = tool.name
            definition = await tool.prepare_tool_def(ctx)
            if definition is not None:
                definitions.append(definition)
        return definitions

    def run_context(self, state: AgentState, *, retry: int = 0) -> RunContext[Any]:
        """What a tool, prompt function or validator sees of the run now."""
        context = RunContext(
            self.user_deps,
            self.model,
            state.usage,
            state.prompt,
            list(state.message_history),
            retry=retry,
            run_step=state.run_step,
            run_id=self.run_id,
        )
        if self.step is not None:
            context.step_id, context.answers = self.step.step_id, self.step.answers
            context.store = self.step.store  # where the tool's child runs (`run_child`) are kept
        return context


AgentContext = GraphRunContext[AgentState, AgentDeps]


@dataclass
class UserPromptNode(BaseNode[AgentState, AgentDeps, FinalResult[Any]]):
    """Start a run: the system prompts (for a new conversation) and the user's prompt."""

    user_prompt: str | Sequence[UserContent]

    async def run(self, ctx: AgentContext) -> ModelRequestNode:
        state, deps = ctx.state, ctx.deps
        run_ctx = deps.run_context(state)
        parts: list[ModelRequestPart]
        if state.message_history:
            await refresh_dynamic_prompts(state.message_history, deps.system_prompt_functions, run_ctx)
            parts = []
        else:
            parts = await system_prompt_parts(deps.system_prompts, deps.system_prompt_functions, run_ctx)
        parts.append(UserPromptPart(self.user_prompt))
        return ModelRequestNode(ModelRequest(parts))


@dataclass
class ModelRequestNode(BaseNode[AgentState, AgentDeps, FinalResult[Any]]):
    """Send `request` to the model, with the conversation before it.

    `stream()` leaves `_did_stream` and `_streamed` (the next node) on the node object;
    they are not dataclass fields, so a stored node is its request alone.
    """

    request: ModelRequest

    async def run(self, ctx: AgentContext) -> CallToolsNode:
        if getattr(self, "_did_stream", False):
            streamed: CallToolsNode | None = getattr(self, "_streamed", None)
            if streamed is None:
                raise AgentRunError("You must finish streaming before calling run()")
            return streamed  # `stream()` already made the request
        state, deps = ctx.state, ctx.deps
        info = await self._prepare(state, deps)
        response, request_usage = await send_request(deps.model, list(state.message_history), info)
        return self._finish(state, deps, response, request_usage)

    @asynccontextmanager
    async def stream(self, ctx: AgentContext) -> AsyncIterator[AgentStream]:
        """Make the request as a stream: the events of the answer as it arrives.

        ```python
        async with node.stream(run.ctx) as events:
            async for event in events:
                ...
        ```

        Whatever is not consumed in the block is read when it exits; the run then goes on
        from the answer without asking the model again. Token limits are checked as the
        answer arrives.
        """
        if getattr(self, "_did_stream", False):
            raise AgentRunError("stream() can only be called once per ModelRequestNode")
        self._did_stream = True
        state, deps = ctx.state, ctx.deps
        info = await self._prepare(state, deps)
        async with open_stream(deps.model, list(state.message_history), info) as response:
            events: AgentStream[Any, Any] = AgentStream(response, state, deps)
            self._stream_done = lambda: self._finish(state, deps, response.get(), response.usage())
            yield events
            async for _ in events:
                pass
            self.record_stream()

    def record_stream(self) -> None:
        """Record the streamed answer (read to its end) in the run's history and usage, once.

        `stream()` does it when its block exits; `run_stream` does it as soon as the
        answer is complete, inside the block.
        """
        if getattr(self, "_streamed", None) is None:
            finish: Callable[[], CallToolsNode] = self._stream_done
            self._streamed = finish()

    async def _prepare(self, state: AgentState, deps: AgentDeps) -> AgentInfo:
        state.message_history.append(self.request)
        deps.usage_limits.check_before_request(state.usage)
        state.usage.requests += 1  # counted as it is sent, whatever the model reports
        state.run_step += 1
        instructions = deps.instructions
        if deps.instruction_functions:
            instructions = await render_instructions(instructions, deps.instruction_functions, deps.run_context(state))
        return AgentInfo(
            function_tools=await deps.tool_definitions(state),
            allow_text_result=deps.result_schema.allow_text_result,
            result_tools=deps.result_schema.definitions,
            model_settings=deps.model_settings,
            instructions=instructions,
        )

    def _finish(self, state: AgentState, deps: AgentDeps, response: ModelResponse, usage: Usage) -> CallToolsNode:
        # all or nothing: past a token limit, neither the tokens nor the answer are recorded
        tokens = dataclasses.replace(usage, requests=0)
        _annotate_span(deps.model, response, usage)
        deps.usage_limits.check_tokens(state.usage + tokens)
        state.usage.incr(tokens)
        state.message_history.append(response)
        return CallToolsNode(response)


@dataclass
class CallToolsNode(BaseNode[AgentState, AgentDeps, FinalResult[Any]]):
    """Act on the model's response: end with a result, or call the tools it asked for."""

    model_response: ModelResponse

    async def run(self, ctx: AgentContext) -> ModelRequestNode | End[FinalResult[Any]]:
        if getattr(self, "_did_stream", False):
            streamed: ModelRequestNode | End[FinalResult[Any]] | None = getattr(self, "_streamed", None)
            if streamed is None:
                raise AgentRunError("You must finish streaming before calling run()")
            return streamed  # `stream()` already ran the tools
        ctx.deps.step = ctx  # a tool's `wait_for` waits as this step
        return await self._act(ctx.state, ctx.deps, None)

    @asynccontextmanager
    async def stream(self, ctx: AgentContext) -> AsyncIterator[AsyncIterator[HandleResponseEvent]]:
        """Run the tools the model called, giving an event as each call starts and ends.

        The tools run while the block consumes the events; whatever is left runs when it
        exits, and the run then goes on from their results without running them again.
        """
        if getattr(self, "_did_stream", False):
            raise AgentRunError("stream() can only be called once per CallToolsNode")
        self._did_stream = True
        ctx.deps.step = ctx  # a tool's `wait_for` waits as this step
        async with stream_events(lambda emit: self._act(ctx.state, ctx.deps, emit)) as (events, outcome):
            yield events
        self._streamed = outcome()

    def preset_result(self, tool_name: str | None, data: Any) -> None:
        """Take `data` as the result this answer carries (text, or `tool_name`'s), already validated.

        `run_stream` uses it so that a result validated while it streamed is not validated again.
        """
        self._preset = (tool_name, data)

    async def _act(
        self, state: AgentState, deps: AgentDeps, emit: Emit | None
    ) -> ModelRequestNode | End[FinalResult[Any]]:
        calls = [part for part in self.model_response.parts if isinstance(part, ToolCallPart)]
        preset: tuple[str | None, Any] | None = getattr(self, "_preset", None)
        if preset is not None and preset[0] is None:
            # a streamed text result: run the function tools called beside it, then end
            tool_calls = [call for call in calls if call.tool_name in deps.tools]
            if tool_calls:
                parts: dict[int, ModelRequestPart] = {}
                await _run_tools(tool_calls, parts, state, deps, emit)
                state.message_history.append(ModelRequest([parts[i] for i in sorted(parts)]))
            return End(FinalResult(preset[1], None, None))
        if calls:
            return await _handle_calls(calls, state, deps, emit, preset)
        texts = [part.content for part in self.model_response.parts if isinstance(part, TextPart) and part.content]
        if not texts:
            raise UnexpectedModelBehavior("Received empty model response")
        if not deps.result_schema.allow_text_result:
            _count_result_retry(state, deps, None)
            return ModelRequestNode(ModelRequest([RetryPromptPart(PLAIN_TEXT_NOT_ALLOWED)]))
        try:
            data = await run_validators(
                deps.result_validators, "\n\n".join(texts), deps.run_context(state, retry=state.result_retries)
            )
        except ModelRetry as exc:
            _count_result_retry(state, deps, exc)
            return ModelRequestNode(ModelRequest([RetryPromptPart(exc.message)]))
        return End(FinalResult(data, None, None))


async def _handle_calls(
    calls: list[ToolCallPart],
    state: AgentState,
    deps: AgentDeps,
    emit: Emit | None,
    preset: tuple[str | None, Any] | None = None,
) -> ModelRequestNode | End[Any]:
    result_tools = deps.result_schema.tools
    parts: dict[int, ModelRequestPart] = {}
    final: tuple[int, Any] | None = None
    for index, call in enumerate(calls):
        result_tool = result_tools.get(call.tool_name)
        if result_tool is None or final is not None:
            continue
        if preset is not None and preset[0] == call.tool_name:
            final = (index, preset[1])  # validated while it streamed
            continue
        outcome = await _validate_result(result_tool, call, state, deps)
        if isinstance(outcome, RetryPromptPart):
            parts[index] = outcome
        else:
            final = (index, outcome)
    for index, call in enumerate(calls):
        if call.tool_name not in deps.tools and call.tool_name not in result_tools:
            _count_result_retry(state, deps, None)
            names = [*deps.tools, *result_tools]
            known = f"Available tools: {', '.join(names)}" if names else "No tools available."
            parts[index] = RetryPromptPart(f"Unknown tool name: {call.tool_name!r}. {known}")

    if final is None:
        await _run_tools(calls, parts, state, deps, emit)
        return ModelRequestNode(ModelRequest(_in_reply_order(calls, parts, deps)))

    final_index, data = final
    final_call = calls[final_index]
    for index, call in enumerate(calls):
        if index == final_index:
            parts[index] = ToolReturnPart(call.tool_name, FINAL_RESULT_PROCESSED, call.tool_call_id)
        elif call.tool_name in result_tools:
            text = RESULT_TOOL_FAILED if index in parts else RESULT_TOOL_NOT_USED
            parts[index] = ToolReturnPart(call.tool_name, text, call.tool_call_id)
        elif index not in parts and deps.end_strategy == "early":
            parts[index] = ToolReturnPart(call.tool_name, TOOL_NOT_EXECUTED, call.tool_call_id)
    if deps.end_strategy == "exhaustive":
        await _run_tools(calls, parts, state, deps, emit)
        reply = _in_reply_order(calls, parts, deps)
    else:
        reply = [parts[i] for i in sorted(parts)]
    state.message_history.append(ModelRequest(reply))
    return End(FinalResult(data, final_call.tool_name, final_call.tool_call_id))


def _in_reply_order(
    calls: list[ToolCallPart], parts: dict[int, ModelRequestPart], deps: AgentDeps
) -> list[ModelRequestPart]:
    """The parts answering `calls`: result tools first, then unknown tools, then function tools."""

    def group(index: int) -> int:
        name = calls[index].tool_name
        return 0 if name in deps.result_schema.tools else 2 if name in deps.tools else 1

    return [parts[i] for i in sorted(parts, key=lambda i: (group(i), i))]


async def _validate_result(
    tool: ResultTool, call: ToolCallPart, state: AgentState, deps: AgentDeps
) -> Any | RetryPromptPart:
    outcome = tool.validate(call)
    if isinstance(outcome, RetryPromptPart):
        _count_result_retry(state, deps, None)
        return outcome
    run_ctx = deps.run_context(state, retry=state.result_retries)
    run_ctx.tool_name, run_ctx.tool_call_id = call.tool_name, call.tool_call_id
    try:
        return await run_validators(deps.result_validators, outcome, run_ctx)
    except ModelRetry as exc:
        _count_result_retry(state, deps, exc)
        return RetryPromptPart(exc.message, tool_name=call.tool_name, tool_call_id=call.tool_call_id)


async def _run_tools(
    calls: list[ToolCallPart],
    parts: dict[int, ModelRequestPart],
    state: AgentState,
    deps: AgentDeps,
    emit: Emit | None = None,
) -> None:
    """Run the function tools among `calls` that have no part yet, concurrently when several."""
    todo = [
        (index, call, deps.tools[call.tool_name])
        for index, call in enumerate(calls)
        if index not in parts and call.tool_name in deps.tools
    ]

    started = {index: FunctionToolCallEvent(call) for index, call, _ in todo} if emit is not None else {}
    if emit is not None:
        for event in started.values():
            emit(event)

    async def run_one(index: int, call: ToolCallPart, tool: Tool[Any]) -> None:
        def failed(cause: BaseException) -> None:
            # counted as each call fails, so several failing calls in one response add up
            failures = state.retries.get(tool.name, 0)
            state.retries[tool.name] = failures + 1
            tool.check_retries(failures, cause)

        run_ctx = deps.run_context(state, retry=state.retries.get(tool.name, 0))
        if trace.get_current_span().is_recording():  # the run is traced: the call is a span of its own
            part = await _traced_call(tool, call, run_ctx, failed)
        else:
            part = await tool.call(call, run_ctx, on_failure=failed)
        if isinstance(part, ToolReturnPart):
            state.retries[tool.name] = 0  # a success starts the count again
        parts[index] = part
        if emit is not None:
            emit(FunctionToolResultEvent(part, started[index].call_id))

    if len(todo) == 1:
        await run_one(*todo[0])
        return
    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as group:
            for item in todo:
                group.start_soon(run_one, *item)
    except BaseExceptionGroup as group_error:
        error = _first_error(group_error)
    if error is not None:
        raise error  # as the tool raised it, not wrapped in a group


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


async def _traced_call(
    tool: Tool[Any], call: ToolCallPart, run_ctx: RunContext[Any], failed: Callable[[BaseException], None]
) -> ToolReturnPart | RetryPromptPart:
    """`tool.call` inside an `execute_tool` span (OpenTelemetry GenAI conventions): sizes, never contents."""
    from railyard import tracing

    step_span = trace.get_current_span()
    # the run's and the step's attributes, from the step span (an SDK span shows them; the API's does not)
    known: Any = getattr(step_span, "attributes", None) or {}
    attributes: dict[str, AttributeValue] = {
        key: known[key] for key in (tracing.GRAPH, tracing.RUN_ID, tracing.STEP_ID, tracing.ATTEMPT) if key in known
    }
    if run_ctx.run_id is not None:
        attributes[tracing.RUN_ID] = run_ctx.run_id
    attributes |= {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.tool_name,
        "railyard.tool.arguments_size": len(call.args_as_json_str().encode()),
    }
    if call.tool_call_id is not None:
        attributes["gen_ai.tool.call.id"] = call.tool_call_id
    tracer = trace.get_tracer(tracing.TRACER_NAME)
    with tracer.start_as_current_span(f"execute_tool {call.tool_name}", attributes=attributes) as span:
        part = await tool.call(call, run_ctx, on_failure=failed)
        if isinstance(part, ToolReturnPart):
            span.set_attribute("railyard.tool.result_size", len(part.model_response_str().encode()))
        else:  # the model must fix its call: arguments that did not validate, or `ModelRetry`
            span.set_attribute("error.type", "retry")
        return part


def _annotate_span(model: Model, response: ModelResponse, usage: Usage) -> None:
    """Put the request's model and tokens on the step's span (OpenTelemetry GenAI conventions)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes: dict[str, str | int] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": model.system,
        "gen_ai.request.model": model.model_name,
    }
    if response.model_name:
        attributes["gen_ai.response.model"] = response.model_name
    if usage.request_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.request_tokens
    if usage.response_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = usage.response_tokens
    span.set_attributes(attributes)


def _count_result_retry(state: AgentState, deps: AgentDeps, cause: BaseException | None) -> None:
    state.result_retries += 1
    if state.result_retries > deps.max_result_retries:
        raise UnexpectedModelBehavior(
            f"Exceeded maximum retries ({deps.max_result_retries}) for result validation"
        ) from cause


agent_graph: Graph[AgentState, AgentDeps, FinalResult[Any]] = Graph(
    nodes=(UserPromptNode, ModelRequestNode, CallToolsNode), name="agent", state_type=AgentState
)
"""The graph of the agent loop; a named agent's runs run on a copy named after it (`named_agent_graph`)."""


def named_agent_graph(name: str | None) -> Graph[AgentState, AgentDeps, FinalResult[Any]]:
    """`agent_graph` under the name `name` (itself for `None`): durable runs record that name.

    A shallow copy: the nodes, their routes and the inferred types are `agent_graph`'s own,
    so it costs a dict copy, not a graph build (no type hints are read again).
    """
    if name is None or name == agent_graph.name:
        return agent_graph
    _ = agent_graph.inferred_types  # worked out once, and shared by every copy
    graph = copy.copy(agent_graph)
    graph.name = name
    return graph
