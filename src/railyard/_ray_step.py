"""What crosses between a run's driver and a Ray worker, and what the worker does with it.

A step goes to a worker as two things: its *code* (`StepCode`: the step's function or
node class and the types its values cross as), which Ray sends by its own means once per
run and step, and its *values* (`encode_call`: inputs, state, dependencies, ids) as JSON
made by pydantic, the same way the run log stores them. The worker (`run_step`) rebuilds
the context, runs the step on an event loop of its own, and answers with JSON: the step's
result and, if the step changed it, the new state. Never pickle for values.

Nothing here imports Ray: this module is what a Ray worker imports to run a step.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, get_args

import pydantic
import pydantic_core

from railyard.exceptions import GraphRuntimeError
from railyard.nodes import BaseNode, End, GraphRunContext
from railyard.retries import NonRetryable

__all__ = ("StepCode", "StepLost", "ValueCannotCross", "adapter", "node_results", "run_step", "step_types")

AnyNode = BaseNode[Any, Any, Any]


class ValueCannotCross(GraphRuntimeError, NonRetryable):
    """A step's inputs, result, state or dependencies cannot cross to or from a Ray worker as JSON.

    Never retried: the same value fails the same way on every attempt. Keep the step in
    the driver (leave it out of `RayExecutor(steps=...)`), or make the value one pydantic
    can write as JSON and read back (annotate the step's input and return types).
    """

    def __init__(self, node_id: str, what: str, detail: str) -> None:
        self.node_id = node_id
        """The step whose value could not cross."""
        self.what = what
        """Which value: `inputs`, `result`, `state`, `deps` or `code`."""
        self.detail = detail
        """What pydantic (or Ray) said."""
        super().__init__(
            f"Step `{node_id}` runs on Ray, but its {what} cannot cross to or from the Ray worker: {detail}. "
            f"Values cross as JSON through pydantic: make the {what} JSON-serializable (annotate the step's "
            f"types), or run the step in the driver (leave `{node_id}` out of RayExecutor(steps=...))."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node_id, self.what, self.detail))


class StepLost(GraphRuntimeError):
    """A step's Ray worker (or its node) died while it ran: a failed attempt, retried by the step's retry policy."""

    def __init__(self, node_id: str, step_id: str, reason: str) -> None:
        self.node_id = node_id
        """The step that was lost."""
        self.step_id = step_id
        """Its step id (the same on the next attempt)."""
        self.reason = reason
        """What Ray said."""
        super().__init__(
            f"Step `{node_id}` ({step_id}) was lost on Ray: {reason}. The attempt failed; the step's retry "
            f"policy decides whether it runs again (give it one: RetryPolicy(...))."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node_id, self.step_id, self.reason))


@dataclass(frozen=True, slots=True)
class StepCode:
    """A step's code and the types its values cross as: sent to Ray once per run and step."""

    node_id: str
    function: Callable[..., Any] | None
    """A builder step's function, or `None` for a node (its class's `run`)."""
    node_class: type[AnyNode] | None
    """The node's class (for a node), else `None`."""
    input_type: Any
    output_type: Any
    state_type: Any
    deps_type: Any


@cache
def _cached_adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(tp)


def adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    """The TypeAdapter of `tp`, made once per process for a hashable type."""
    try:
        return _cached_adapter(tp)
    except TypeError:  # an unhashable annotation
        return pydantic.TypeAdapter(tp)


def step_types(function: Callable[..., Any]) -> tuple[Any, Any]:
    """A builder step function's input and output types: its `StepContext[S, D, In]` and return hints (or `Any`)."""
    try:
        hints = typing.get_type_hints(function)
        parameter = next(iter(inspect.signature(function).parameters))
    except Exception:  # unresolvable hints: the values cross as plain JSON
        return Any, Any
    args = get_args(hints.get(parameter))
    return (args[2] if len(args) == 3 else Any), hints.get("return", Any)


def node_results(node_class: type[AnyNode]) -> tuple[dict[str, type[AnyNode]], Any]:
    """The nodes a node's `run` may return, by node id, and the type of its `End` value (`Any` if unsaid)."""
    return _node_results(node_class)


@cache
def _node_results(node_class: type[AnyNode]) -> tuple[dict[str, type[AnyNode]], Any]:
    nodes: dict[str, type[AnyNode]] = {}
    end: Any = Any
    try:
        hint = typing.get_type_hints(node_class.run).get("return", Any)
    except Exception:
        return nodes, end
    for member in get_args(hint) or (hint,):
        origin = typing.get_origin(member) or member
        if origin is End:
            end = (get_args(member) or (Any,))[0]
        elif isinstance(origin, type) and issubclass(origin, BaseNode):
            nodes[origin.get_node_id()] = origin
    return nodes, end


def dump(node_id: str, what: str, tp: Any, value: Any) -> Any:
    """`value` as a JSON-compatible value of type `tp`.

    Raises:
        ValueCannotCross: pydantic cannot write it as JSON.
    """
    try:
        return adapter(tp).dump_python(value, mode="json", warnings="error")
    except (pydantic_core.PydanticSerializationError, pydantic.PydanticSchemaGenerationError, ValueError) as err:
        raise ValueCannotCross(node_id, what, f"{value!r} ({err})") from None


def load(node_id: str, what: str, tp: Any, value: Any) -> Any:
    """`value` (JSON-compatible) read back as a `tp`.

    Raises:
        ValueCannotCross: it does not validate as a `tp`.
    """
    try:
        return adapter(tp).validate_python(value)
    except (pydantic.ValidationError, pydantic.PydanticSchemaGenerationError) as err:
        raise ValueCannotCross(node_id, what, f"{value!r} is not a valid {tp!r} ({err})") from None


def dump_result(code: StepCode, result: Any) -> Any:
    """A step's result as JSON: a builder step's by its output type; a node's as the node or `End` it returned."""
    if code.node_class is None:
        return dump(code.node_id, "result", code.output_type, result)
    nodes, end_type = node_results(code.node_class)
    if isinstance(result, End):
        return {"end": dump(code.node_id, "result", end_type, result.data)}
    if isinstance(result, BaseNode):
        node: AnyNode = result
        node_id = node.get_node_id()
        if nodes.get(node_id) is not type(node):
            raise ValueCannotCross(
                code.node_id,
                "result",
                f"it returned `{node!r}`, and only the nodes named in `{code.node_id}.run`'s return annotation "
                f"({', '.join(sorted(nodes)) or 'none'}) can be read back",
            )
        return {"node": node_id, "fields": dump(code.node_id, "result", type(node), node)}
    raise ValueCannotCross(code.node_id, "result", f"{result!r} is neither a node nor `End(...)`")


def load_result(code: StepCode, value: Any) -> Any:
    """The step's result, read back from `dump_result`'s JSON."""
    if code.node_class is None:
        return load(code.node_id, "result", code.output_type, value)
    nodes, end_type = node_results(code.node_class)
    if "end" in value:
        return End(load(code.node_id, "result", end_type, value["end"]))
    return load(code.node_id, "result", nodes[value["node"]], value["fields"])


def run_step(code: StepCode, payload: bytes) -> bytes:
    """Run one attempt of a step in this (worker) process: `payload` is `encode_call`'s JSON.

    Returns JSON `{"result": ..., "state": ...}`, with `state` only if the step changed it.
    The step's own exception propagates as it was raised.
    """
    data = pydantic_core.from_json(payload)
    node_id = code.node_id
    state = None if code.state_type is None else load(node_id, "state", code.state_type, data["state"])
    deps = None if code.deps_type is None else load(node_id, "deps", code.deps_type, data["deps"])
    inputs = load(node_id, "inputs", code.input_type, data["inputs"])
    ids: dict[str, Any] = {"step_id": data["step_id"], "run_id": data["run_id"], "attempt": data["attempt"]}
    if code.function is None:
        node: AnyNode = inputs
        awaitable: Awaitable[Any] = node.run(GraphRunContext(state=state, deps=deps, **ids))
    else:
        from railyard.builder.step import StepContext

        awaitable = code.function(StepContext(state=state, deps=deps, inputs=inputs, **ids))
    # a loop of its own, not `asyncio.run`: its SIGINT handler would turn `ray.cancel`'s
    # KeyboardInterrupt into a cancellation a step that never awaits would not see
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(_wait(awaitable))
    finally:
        loop.close()
    reply: dict[str, Any] = {"result": dump_result(code, result)}
    if code.state_type is not None:
        after = dump(node_id, "state", code.state_type, state)
        if after != data["state"]:
            reply["state"] = after
    return pydantic_core.to_json(reply)


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
