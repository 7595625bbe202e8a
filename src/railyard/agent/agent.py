"""`Agent`: a model, a system prompt and tools; each run is a railyard graph run.

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

import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, overload

import anyio

from railyard.agent._graph import (
    AgentDeps,
    AgentState,
    FinalResult,
    ModelRequestNode,
    agent_graph,
)
from railyard.agent.exceptions import UserError
from railyard.agent.messages import ModelMessage, ModelRequest, ModelRequestPart, SystemPromptPart, UserPromptPart
from railyard.agent.models import Model
from railyard.agent.tools import Tool
from railyard.agent.usage import Usage, UsageLimits
from railyard.graph import GraphRun
from railyard.nodes import BaseNode, End

__all__ = ("Agent", "AgentRun", "AgentRunResult")

AgentDepsT = TypeVar("AgentDepsT")
F = TypeVar("F", bound=Callable[..., Any])
_NONE_TYPE = type(None)
AgentNode = BaseNode[AgentState, AgentDeps, FinalResult[Any]] | End[FinalResult[Any]]


class AgentRunResult:
    """What a finished agent run gives: its result `data`, conversation and usage."""

    def __init__(self, data: str, state: AgentState, new_message_index: int) -> None:
        self.data = data
        """The run's result."""
        self._state = state
        self._new_message_index = new_message_index

    @property
    def output(self) -> str:
        """The run's result (the later name for `data`)."""
        return self.data

    def all_messages(self) -> list[ModelMessage]:
        """The whole conversation, including any history the run started from."""
        return list(self._state.message_history)

    def new_messages(self) -> list[ModelMessage]:
        """The messages this run added."""
        return self._state.message_history[self._new_message_index :]

    def usage(self) -> Usage:
        """Requests and tokens the run used."""
        return self._state.usage

    def __repr__(self) -> str:
        return f"AgentRunResult(data={self.data!r})"


class AgentRun:
    """An agent run in progress: async-iterate over its nodes, or drive it with `next()`."""

    def __init__(self, graph_run: GraphRun[AgentState, AgentDeps, FinalResult[Any]]) -> None:
        self._run = graph_run

    @property
    def ctx(self) -> Any:
        """The run's state and dependencies."""
        return self._run._scheduler.ctx  # pyright: ignore[reportPrivateUsage]

    @property
    def next_node(self) -> AgentNode:
        """The node that runs next, or the `End` once the run has ended."""
        return self._run.next_node

    @property
    def result(self) -> AgentRunResult | None:
        """The result once the run has ended, else None."""
        result = self._run.result
        if result is None:
            return None
        return AgentRunResult(result.output.data, self._run.state, self._run.deps.new_message_index)

    def usage(self) -> Usage:
        """Requests and tokens used so far."""
        return self._run.state.usage

    def all_messages(self) -> list[ModelMessage]:
        """The conversation so far."""
        return list(self._run.state.message_history)

    async def next(self, node: BaseNode[AgentState, AgentDeps, FinalResult[Any]] | None = None) -> AgentNode:
        """Run `node` (by default `next_node`) and return the node after it."""
        return await self._run.next(node)

    def __aiter__(self) -> AsyncIterator[AgentNode]:
        return self._run.__aiter__()

    def __repr__(self) -> str:
        return f"<AgentRun result={self.result!r} usage={self.usage()!r}>"


class Agent(Generic[AgentDepsT]):
    """A model with a system prompt and tools, ready to run on user prompts."""

    def __init__(
        self,
        model: Model,
        *,
        system_prompt: str | Sequence[str] = (),
        deps_type: type[AgentDepsT] = _NONE_TYPE,  # type: ignore[assignment]
        name: str | None = None,
        model_settings: dict[str, Any] | None = None,
        retries: int = 1,
        tools: Sequence[Tool | Callable[..., Any]] = (),
    ) -> None:
        if not isinstance(model, Model):
            raise UserError(f"Agent needs a Model instance, got {model!r}")
        self.model = model
        """The model runs talk to."""
        self.name = name
        """The agent's name."""
        self.deps_type = deps_type
        """The type of the dependencies runs are given."""
        self.model_settings = model_settings
        """Settings sent with every request."""
        self._system_prompts = (system_prompt,) if isinstance(system_prompt, str) else tuple(system_prompt)
        self._default_retries = retries
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self._add_tool(tool if isinstance(tool, Tool) else Tool(tool, _takes_ctx(tool), max_retries=retries))

    def _add_tool(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise UserError(f"Tool name conflicts with existing tool: {tool.name!r}")
        self._tools[tool.name] = tool

    @overload
    def tool(self, func: F, /) -> F: ...
    @overload
    def tool(self, /, *, name: str | None = None, retries: int | None = None) -> Callable[[F], F]: ...
    def tool(self, func: F | None = None, /, *, name: str | None = None, retries: int | None = None) -> Any:
        """Register a tool whose first parameter is the `RunContext`."""
        return self._decorate(func, True, name, retries)

    @overload
    def tool_plain(self, func: F, /) -> F: ...
    @overload
    def tool_plain(self, /, *, name: str | None = None, retries: int | None = None) -> Callable[[F], F]: ...
    def tool_plain(self, func: F | None = None, /, *, name: str | None = None, retries: int | None = None) -> Any:
        """Register a tool that takes no run context."""
        return self._decorate(func, False, name, retries)

    def _decorate(self, func: F | None, takes_ctx: bool, name: str | None, retries: int | None) -> Any:
        def register(f: F) -> F:
            max_retries = self._default_retries if retries is None else retries
            self._add_tool(Tool(f, takes_ctx, name=name or "", max_retries=max_retries))
            return f

        return register if func is None else register(func)

    @asynccontextmanager
    async def iter(
        self,
        user_prompt: str,
        *,
        message_history: list[ModelMessage] | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
    ) -> AsyncIterator[AgentRun]:
        """Start a run and give its `AgentRun`; the first node is the first model request."""
        history = list(message_history or [])
        parts: list[ModelRequestPart] = []
        if not history:
            parts.extend(SystemPromptPart(prompt) for prompt in self._system_prompts)
        parts.append(UserPromptPart(user_prompt))
        state = AgentState(message_history=history, usage=usage if usage is not None else Usage())
        agent_deps = AgentDeps(
            user_deps=deps,
            prompt=user_prompt,
            model=self.model,
            tools=self._tools,
            usage_limits=usage_limits or UsageLimits(),
            model_settings=self.model_settings,
            new_message_index=len(history),
        )
        start = ModelRequestNode(ModelRequest(parts))
        async with agent_graph.iter(start, state=state, deps=agent_deps, infer_name=False) as graph_run:
            yield AgentRun(graph_run)

    async def run(
        self,
        user_prompt: str,
        *,
        message_history: list[ModelMessage] | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
    ) -> AgentRunResult:
        """Run to the end and return the result."""
        async with self.iter(
            user_prompt, message_history=message_history, deps=deps, usage_limits=usage_limits, usage=usage
        ) as run:
            async for _ in run:
                pass
        result = run.result
        assert result is not None
        return result

    def run_sync(
        self,
        user_prompt: str,
        *,
        message_history: list[ModelMessage] | None = None,
        deps: AgentDepsT = None,  # type: ignore[assignment]
        usage_limits: UsageLimits | None = None,
        usage: Usage | None = None,
    ) -> AgentRunResult:
        """`run`, from synchronous code."""

        async def main() -> AgentRunResult:
            return await self.run(
                user_prompt, message_history=message_history, deps=deps, usage_limits=usage_limits, usage=usage
            )

        return anyio.run(main)

    def __repr__(self) -> str:
        return f"Agent(model={self.model!r}, name={self.name!r}, model_settings={self.model_settings!r})"


def _takes_ctx(func: Callable[..., Any]) -> bool:
    params = list(inspect.signature(func).parameters.values())
    if not params:
        return False
    annotation = params[0].annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return text.startswith("RunContext")
