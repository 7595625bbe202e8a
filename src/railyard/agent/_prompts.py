"""System prompts and instructions that come from functions, evaluated as a run goes.

A system prompt function runs when a run starts without message history; a *dynamic*
one is also run again when a later run continues that history, and replaces its own
earlier part (found by its `dynamic_ref`). Instructions are sent with every request
but never stored in the history, so they follow the agent, not the conversation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from railyard.agent.context import RunContext, callable_takes_ctx
from railyard.agent.messages import ModelMessage, ModelRequest, ModelRequestPart, SystemPromptPart

__all__ = ("PromptFunction", "render_instructions", "system_prompt_parts")


@dataclass(frozen=True)
class PromptFunction:
    """A function returning prompt text, taking the run context or nothing."""

    function: Callable[..., Any]
    """The function, sync or async."""
    takes_ctx: bool
    """Whether it takes the run context."""
    dynamic: bool = False
    """Whether it is run again when a later run continues the conversation."""

    @classmethod
    def of(cls, function: Callable[..., Any], *, dynamic: bool = False) -> PromptFunction:
        """Wrap `function`, telling from its first parameter whether it takes the run context."""
        return cls(function, callable_takes_ctx(function), dynamic)

    @property
    def ref(self) -> str:
        """The name a dynamic prompt's part is found by."""
        return str(self.function.__qualname__)

    async def render(self, ctx: RunContext[Any]) -> str:
        """Run the function and return its text."""
        args = (ctx,) if self.takes_ctx else ()
        if inspect.iscoroutinefunction(self.function):
            return str(await self.function(*args))
        return str(await anyio.to_thread.run_sync(lambda: self.function(*args)))


async def system_prompt_parts(
    static: Sequence[str], functions: Sequence[PromptFunction], ctx: RunContext[Any]
) -> list[ModelRequestPart]:
    """The system prompt parts a run without history starts with: static ones first."""
    parts: list[ModelRequestPart] = [SystemPromptPart(text) for text in static]
    for function in functions:
        text = await function.render(ctx)
        parts.append(SystemPromptPart(text, dynamic_ref=function.ref if function.dynamic else None))
    return parts


async def refresh_dynamic_prompts(
    history: list[ModelMessage], functions: Sequence[PromptFunction], ctx: RunContext[Any]
) -> None:
    """Re-run the dynamic prompt functions over the parts they wrote in `history`."""
    dynamic = {function.ref: function for function in functions if function.dynamic}
    if not dynamic:
        return
    for message in history:
        if not isinstance(message, ModelRequest):
            continue
        for index, part in enumerate(message.parts):
            if isinstance(part, SystemPromptPart) and part.dynamic_ref in dynamic:
                text = await dynamic[part.dynamic_ref].render(ctx)
                message.parts[index] = SystemPromptPart(text, dynamic_ref=part.dynamic_ref)


async def render_instructions(
    static: str | None, functions: Sequence[PromptFunction], ctx: RunContext[Any]
) -> str | None:
    """The instructions for the next request, or None when there are none."""
    pieces = [static] if static else []
    for function in functions:
        text = await function.render(ctx)
        if text:
            pieces.append(text)
    return "\n\n".join(pieces) if pieces else None
