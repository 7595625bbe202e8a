"""An agent run: `AgentRun` while it goes on, `AgentRunResult` once it has ended."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic

from typing_extensions import TypeVar

from railyard.agent._graph import AgentDeps, AgentState, CallToolsNode, FinalResult, ModelRequestNode
from railyard.agent._messages import MessagesOfRun
from railyard.agent.events import FinalResultEvent
from railyard.agent.exceptions import UnexpectedModelBehavior
from railyard.agent.messages import ModelMessage, ModelRequest, ToolReturnPart
from railyard.agent.streaming import StreamedRunResult
from railyard.agent.usage import Usage
from railyard.graph import GraphRun
from railyard.nodes import BaseNode, End

__all__ = ("AgentRun", "AgentRunResult", "finish", "stream_result")

AgentDepsT = TypeVar("AgentDepsT", default=None)
ResultDataT = TypeVar("ResultDataT", default=str)
AgentNode = BaseNode[AgentState, AgentDeps, FinalResult[Any]] | End[FinalResult[Any]]


class AgentRunResult(MessagesOfRun, Generic[ResultDataT]):
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

        Raises:
            ValueError: `result_tool_return_content` was given, but the result was text.
            LookupError: the last message has no return of the result tool.
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
                    return messages
        raise LookupError(f"No tool call found with tool name {self._result_tool_name!r}.")

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
    def run_id(self) -> str | None:
        """The run's id in its store (`None` for a run that is not recorded durably)."""
        return self._run.run_id

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


async def _end_streamed_run(
    run: AgentRun[Any, Any], node: ModelRequestNode, result: StreamedRunResult[Any, Any]
) -> None:
    """Take the run to its end after a streamed answer, validating the result only if no one has."""
    node.record_stream()
    result._recorded = True  # pyright: ignore[reportPrivateUsage]
    call_tools = await run.next(node)
    assert isinstance(call_tools, CallToolsNode)
    validated = result._validated  # pyright: ignore[reportPrivateUsage]
    if validated is not None:
        call_tools.preset_result(result._final.tool_name, validated[0])  # pyright: ignore[reportPrivateUsage]
    after = await run.next(call_tools)
    if isinstance(after, ModelRequestNode):
        # the result did not validate: keep the tool returns and retry prompts in the
        # conversation, but make no further request
        run.ctx.state.message_history.append(after.request)


async def finish(run: AgentRun[Any, ResultDataT]) -> AgentRunResult[ResultDataT]:
    """Drive `run` to its end and return its result."""
    async for _ in run:
        pass
    result = run.result
    assert result is not None, "a run that stops iterating has ended"
    return result


@asynccontextmanager
async def stream_result(run: AgentRun[Any, ResultDataT]) -> AsyncIterator[StreamedRunResult[Any, ResultDataT]]:
    """Drive `run` to the answer that carries its result, give that as a stream, then end the run with it."""
    node = run.next_node
    while not isinstance(node, ModelRequestNode):
        if isinstance(node, End):
            raise UnexpectedModelBehavior("The run ended without a streamed final result")
        node = await run.next(node)
    while True:
        result: StreamedRunResult[Any, ResultDataT] | None = None
        async with node.stream(run.ctx) as events:
            async for event in events:
                if isinstance(event, FinalResultEvent):
                    end = functools.partial(_end_streamed_run, run, node)
                    result = StreamedRunResult(run.ctx.state, run.ctx.deps, events, event)
                    result._on_complete = functools.partial(end, result)  # pyright: ignore[reportPrivateUsage]
                    yield result
                    break
        if result is not None:
            await result._record()  # pyright: ignore[reportPrivateUsage]
            return
        call_tools = await run.next(node)
        assert isinstance(call_tools, CallToolsNode)
        after = await run.next(call_tools)
        if not isinstance(after, ModelRequestNode):
            raise UnexpectedModelBehavior("The run ended without a streamed final result")
        node = after
