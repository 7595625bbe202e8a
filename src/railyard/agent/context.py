"""What a tool or system prompt function sees of the run it is called in."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_origin, get_type_hints

from railyard.agent.content import UserContent
from railyard.agent.messages import ModelMessage
from railyard.agent.usage import Usage
from railyard.children import ChildScope, StepActions

if TYPE_CHECKING:
    from railyard.store import RunStore

__all__ = ("RunContext", "callable_takes_ctx", "is_run_context_annotation")

AgentDepsT = TypeVar("AgentDepsT")


@dataclass
class RunContext(StepActions, Generic[AgentDepsT]):
    """The run a tool is called in: its dependencies, model, usage, conversation so far and id."""

    deps: AgentDepsT
    """The dependencies the run was given."""
    model: Any
    """The model the run talks to."""
    usage: Usage
    """The run's usage so far (the live object, updated as the run goes on)."""
    prompt: str | Sequence[UserContent]
    """The user prompt the run started with."""
    messages: list[ModelMessage] = field(default_factory=list)
    """The conversation so far."""
    tool_call_id: str | None = None
    """The id of the tool call being answered, if the model gave one."""
    tool_name: str | None = None
    """The name of the tool being called, if any."""
    retry: int = 0
    """How many times this tool has failed in this run so far."""
    run_step: int = 0
    """How many model requests the run has made."""
    run_id: str | None = None
    """The id of the durable run this is, or `None` for a run kept in memory.

    It is the run's `AgentRun.run_id`: the same for every tool call and prompt of the run,
    and after the run is resumed (a forked run has its own).
    """

    step_id: str = field(default="", repr=False, compare=False)
    """The id of the agent-graph step the tool runs in (the same when it runs again after a wait)."""
    answers: dict[str, tuple[str, Any]] | None = field(default=None, repr=False, compare=False)
    """The signals delivered to the run's waiting steps (set by the run; read by `wait_for`)."""
    store: RunStore | None = field(default=None, repr=False, compare=False)
    """The store the durable run is kept in (`None` in memory); a tool's `run_child` keeps its children there."""

    def _child_scope(self) -> ChildScope:
        # a response's tool calls run side by side: each call numbers its own children
        prefix = f"{self.tool_name}:{self.tool_call_id}:"
        return ChildScope(self.store, self.run_id, self.step_id, 1, self.answers, key_prefix=prefix)

    def replace_with(self, retry: int | None = None, tool_name: Any = ...) -> RunContext[AgentDepsT]:
        """A copy with `retry` and/or `tool_name` changed (`tool_name=None` clears it)."""
        changes: dict[str, Any] = {}
        if retry is not None:
            changes["retry"] = retry
        if tool_name is not ...:
            changes["tool_name"] = tool_name
        return dataclasses.replace(self, **changes)


def callable_takes_ctx(function: Callable[..., Any]) -> bool:
    """Whether `function`'s first parameter is annotated as a `RunContext`."""
    params = list(inspect.signature(function).parameters.values())
    if not params:
        return False
    annotation: Any = params[0].annotation
    if isinstance(annotation, str):
        return annotation.startswith("RunContext")
    with contextlib.suppress(NameError):
        annotation = get_type_hints(function).get(params[0].name, annotation)
    return is_run_context_annotation(annotation)


def is_run_context_annotation(annotation: Any) -> bool:
    """Whether `annotation` is `RunContext`, bare or with its deps type."""
    if isinstance(annotation, str):
        return annotation.startswith("RunContext")
    return annotation is RunContext or get_origin(annotation) is RunContext
