"""What crosses between a run's driver and a process that runs one of its steps, and back.

Both executors that run steps in other processes (`RayExecutor`, and `BranchExecutor`'s
PostgreSQL branch tasks) send a step as two things: its *code* (`StepCode`: the step's
function or node class and the types its values cross as), which Ray sends by its own
means and a branch worker finds in its own copy of the graph, and its *values* (inputs,
state, dependencies, ids) as JSON made by pydantic, the same way the run log stores
them. The worker (`run_step`, `call_step`) rebuilds the context, runs the step, and
answers with JSON: the step's result and, if the step changed it, the new state. The
driver (`load_result`, `apply_state`) reads the answer back. Never pickle for values.

Nothing here imports Ray: this module is what a Ray worker imports to run a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import threading
import traceback
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, get_args

import anyio
import pydantic
import pydantic_core
import sniffio

from railyard.exceptions import GraphRuntimeError
from railyard.nodes import BaseNode, End, GraphRunContext
from railyard.retries import NonRetryable
from railyard.runtime._executor import StepCall
from railyard.runtime._tasks import Task

if TYPE_CHECKING:
    from concurrent.futures import Future

    from railyard.runtime._executor import StepFunction

__all__ = (
    "RemoteStepError",
    "StepCode",
    "StepLost",
    "ValueCannotCross",
    "adapter",
    "apply_state",
    "bind_elsewhere",
    "call_step",
    "code_of",
    "describe_step",
    "dump",
    "dump_result",
    "error_from_json",
    "error_json",
    "load",
    "load_result",
    "node_results",
    "run_step",
    "step_types",
    "wait_future",
)

AnyNode = BaseNode[Any, Any, Any]


class ValueCannotCross(GraphRuntimeError, NonRetryable):
    """A step's inputs, result, state or dependencies cannot cross to or from its worker as JSON.

    Never retried: the same value fails the same way on every attempt. Keep the step in
    the driver (leave it out of the executor's `steps=...`), or make the value one
    pydantic can write as JSON and read back (annotate the step's input and return types).
    """

    def __init__(self, node_id: str, what: str, detail: str, executor: str = "RayExecutor") -> None:
        self.node_id = node_id
        """The step whose value could not cross."""
        self.what = what
        """Which value: `inputs`, `result`, `state`, `deps` or `code`."""
        self.detail = detail
        """What pydantic (or Ray) said."""
        self.executor = executor
        """The executor that runs the step elsewhere: `RayExecutor` or `BranchExecutor`."""
        where = ("on Ray", "the Ray worker") if executor == "RayExecutor" else ("as a branch task", "its branch worker")
        super().__init__(
            f"Step `{node_id}` runs {where[0]}, but its {what} cannot cross to or from {where[1]}: {detail}. "
            f"Values cross as JSON through pydantic: make the {what} JSON-serializable (annotate the step's "
            f"types), or run the step in the driver (leave `{node_id}` out of {executor}(steps=...))."
        )

    def moved(self, executor: str) -> ValueCannotCross:
        """The same error, said of `executor`."""
        return ValueCannotCross(self.node_id, self.what, self.detail, executor)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node_id, self.what, self.detail, self.executor))


class StepLost(GraphRuntimeError):
    """A step's worker (a Ray worker or node, a branch worker) died while it ran: a failed attempt.

    The step's retry policy decides whether it runs again, like any error.
    """

    def __init__(self, node_id: str, step_id: str, reason: str, where: str = "on Ray") -> None:
        self.node_id = node_id
        """The step that was lost."""
        self.step_id = step_id
        """Its step id (the same on the next attempt)."""
        self.reason = reason
        """What the engine said."""
        self.where = where
        """Where it ran: `on Ray`, or `as a branch task`."""
        super().__init__(
            f"Step `{node_id}` ({step_id}) was lost {where}: {reason}. The attempt failed; the step's retry "
            f"policy decides whether it runs again (give it one: RetryPolicy(...))."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node_id, self.step_id, self.reason, self.where))


class RemoteStepError(GraphRuntimeError):
    """A step run in another process raised an exception that cannot be raised here as itself.

    An exception crosses back as its class's import path and its arguments as JSON; it is
    raised as itself when its class is imported in the driver and its arguments rebuild
    it. Otherwise this stands in for it, with its type, message and the worker's traceback.
    """

    def __init__(self, node_id: str, step_id: str, error_type: str, message: str, traceback: str) -> None:
        self.node_id = node_id
        """The step that raised."""
        self.step_id = step_id
        """Its step id."""
        self.error_type = error_type
        """The exception's class, as `module.QualifiedName`."""
        self.error_message = message
        """Its message (`str(error)`)."""
        self.traceback = traceback
        """The traceback, as the worker printed it."""
        super().__init__(f"Step `{node_id}` ({step_id}) raised {error_type}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node_id, self.step_id, self.error_type, self.error_message, self.traceback))


class _FinalRemoteStepError(RemoteStepError, NonRetryable):
    """A `RemoteStepError` standing in for an exception that was `NonRetryable`."""


def error_json(error: BaseException) -> dict[str, Any]:
    """An exception as JSON: its class's import path, message, traceback and (when they are JSON) its arguments."""
    kind = type(error)
    described: dict[str, Any] = {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "message": _said(str, error),
        "traceback": _said(lambda e: "".join(traceback.format_exception(e)), error),
        "final": isinstance(error, NonRetryable),
    }
    try:
        reduced = error.__reduce__()
    except Exception:
        return described
    if isinstance(reduced, tuple) and len(reduced) in (2, 3) and reduced[0] is kind:
        state = reduced[2] if len(reduced) == 3 else None
        try:  # only values JSON writes as they are: the arguments must come back as they went
            arguments = pydantic_core.to_json([list(reduced[1]), state])
            if pydantic_core.from_json(arguments) == [list(reduced[1]), state]:
                described["args"], described["state"] = pydantic_core.from_json(arguments)
        except (pydantic_core.PydanticSerializationError, TypeError, ValueError):
            pass
    return described


def _said(say: Callable[[BaseException], str], error: BaseException) -> str:
    """What `say(error)` gives, or a placeholder when the exception cannot say it (its `__str__` raised)."""
    try:
        return say(error)
    except Exception as failed:
        return f"<{type(error).__qualname__}; it could not be printed: {type(failed).__name__}>"


def _imported(path: str) -> Any:
    """The object at dotted `path` inside a module already imported (the longest such module prefix)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        found: Any = sys.modules.get(".".join(parts[:cut]))
        if found is None:
            continue
        for part in parts[cut:]:
            found = getattr(found, part, None)
        return found
    return None


def error_from_json(node_id: str, step_id: str, described: dict[str, Any], where: str) -> Exception:
    """The exception `error_json` described: itself, rebuilt, when its class is imported here; else a stand-in.

    Only classes of modules already imported are looked up (nothing is imported on a
    stored name's word), and only `Exception` subclasses are rebuilt.
    """
    path = str(described.get("type", "builtins.Exception"))
    message = str(described.get("message", ""))
    found = _imported(path)
    note = f"raised {where} by step `{node_id}` ({step_id}); its traceback there:\n{described.get('traceback', '')}"
    if isinstance(found, type) and issubclass(found, Exception) and isinstance(described.get("args"), list):
        try:
            error: Exception = found(*described["args"])
            state = described.get("state")
            if isinstance(state, dict):
                error.__dict__.update({k: v for k, v in state.items() if k != "__notes__"})
            error.add_note(note)
        except Exception:
            pass
        else:
            return error
    stand_in = _FinalRemoteStepError if described.get("final") else RemoteStepError
    return stand_in(node_id, step_id, path, message, str(described.get("traceback", "")))


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


def code_of(call: StepCall) -> StepCode:
    """The code of the step `call` runs, and the types its values cross as (read in the driver)."""
    state_type = None if call.state is None else call.state_type
    deps_type = None if call.deps is None else type(call.deps)
    if call.function is not None:
        input_type, output_type = step_types(call.function)
        return StepCode(call.node_id, call.function, None, input_type, output_type, state_type, deps_type)
    node_class: type[AnyNode] = type(call.inputs)
    node_results(node_class)  # read in the driver first: an unresolvable annotation fails here
    return StepCode(call.node_id, None, node_class, node_class, node_class, state_type, deps_type)


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
    """Run one attempt of a step in this (Ray worker) process: `payload` is the driver's JSON of its values.

    Returns JSON `{"result": ..., "state": ...}`, with `state` only if the step changed it.
    The step's own exception propagates as it was raised.
    """
    # a loop of its own, not `asyncio.run`: its SIGINT handler would turn `ray.cancel`'s
    # KeyboardInterrupt into a cancellation a step that never awaits would not see
    loop = asyncio.new_event_loop()
    try:
        reply = loop.run_until_complete(call_step(code, pydantic_core.from_json(payload)))
    finally:
        loop.close()
    return pydantic_core.to_json(reply)


_FROM_PAYLOAD: Any = object()


async def call_step(code: StepCode, data: dict[str, Any], deps: Any = _FROM_PAYLOAD) -> dict[str, Any]:
    """Run one attempt of a step on the running event loop, from the driver's JSON of its values.

    `deps` given: the step runs with these dependencies (a branch worker's own) instead of
    those in `data`. Returns `{"result": ..., "state": ...}` (JSON-compatible), with `state`
    only if the step changed it. The step's own exception propagates as it was raised.
    """
    node_id = code.node_id
    state = None if code.state_type is None else load(node_id, "state", code.state_type, data["state"])
    if deps is _FROM_PAYLOAD:
        deps = None if code.deps_type is None else load(node_id, "deps", code.deps_type, data["deps"])
    inputs = load(node_id, "inputs", code.input_type, data["inputs"])
    ids: dict[str, Any] = {"step_id": data["step_id"], "run_id": data["run_id"], "attempt": data["attempt"]}
    if code.function is None:
        node: AnyNode = inputs
        result = await node.run(GraphRunContext(state=state, deps=deps, **ids))
    else:
        from railyard.builder.step import StepContext

        result = await code.function(StepContext(state=state, deps=deps, inputs=inputs, **ids))
    reply: dict[str, Any] = {"result": dump_result(code, result)}
    if code.state_type is not None:
        after = dump(node_id, "state", code.state_type, state)
        if after != data["state"]:
            reply["state"] = after
    return reply


def apply_state(call: StepCall, sent: Any, new: Any, new_json: Any) -> None:
    """Set what the step changed in its copy of the state on the run's own state object.

    Raises:
        ValueCannotCross: the state is of a kind whose changes cannot be set in place.
    """
    state = call.state
    if isinstance(state, dict):
        state.clear()
        state.update(new)
    elif isinstance(state, list):
        state[:] = new
    elif hasattr(state, "__dict__") or hasattr(type(state), "__slots__"):
        for name, value in new_json.items():
            if not isinstance(sent, dict) or sent.get(name) != value:
                setattr(state, name, getattr(new, name))
    else:
        raise ValueCannotCross(
            call.node_id,
            "state",
            f"the step changed the run's state {state!r} (a {type(state).__name__}), which cannot be changed in "
            f"place; use a dataclass, a pydantic model, a dict or a list",
        )


class _NodeProbe:
    """Stands in for a node-API task's node: the node program's runner calls its `run` with the run's context."""

    __slots__ = ("node",)

    def __init__(self, node: AnyNode) -> None:
        self.node = node

    def run(self, ctx: Any) -> StepCall:
        node = self.node
        state = ctx.state
        return StepCall(
            node_id=node.get_node_id(),
            function=None,
            inputs=node,
            state=state,
            state_type=None if state is None else type(state),
            deps=ctx.deps,
            step_id=ctx.step_id,
            run_id=ctx.run_id,
            attempt=ctx.attempt,
        )


def describe_step(run: StepFunction, task: Task) -> StepCall | None:
    """One attempt of a task's step as data (`None`: it cannot leave the process).

    A builder program's runner describes its own steps (`Describable`); a node-API step
    is described by handing the runner a probe for the node, which gets the run's context.
    """
    describe = getattr(run, "describe", None)
    if describe is not None:
        described: StepCall | None = describe(task)
        return described
    if not isinstance(task.inputs, BaseNode):
        return None
    probed: Any = run(Task(task.node_id, _NodeProbe(task.inputs), task.fork_stack, task.task_id))
    return probed if isinstance(probed, StepCall) else None


def bind_elsewhere(
    run: StepFunction,
    chosen: Callable[[str], bool],
    limit: int | None,
    send: Callable[[StepCall], Awaitable[Any]],
) -> StepFunction:
    """An executor's `bind`: steps `chosen` by node id (and describable) go to `send`; the rest run here.

    At most `limit` of a run's steps are with `send` at once (one semaphore per run, made
    on the run's own event loop at its first step).
    """
    limiter: anyio.Semaphore | None = None

    async def execute(task: Task) -> Any:
        nonlocal limiter
        call = describe_step(run, task) if chosen(task.node_id) else None
        if call is None:
            return await run(task)
        if limiter is None and limit is not None:
            limiter = anyio.Semaphore(limit)
        if limiter is None:
            return await send(call)
        async with limiter:
            return await send(call)

    return execute


async def wait_future(future: Future[Any]) -> None:
    """Wait, on the running event loop (asyncio or trio), until `future` (resolved on another thread) is done."""
    if future.done():
        return
    event = anyio.Event()
    loop_thread = threading.get_ident()
    if sniffio.current_async_library() == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()

        def wake() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)
    else:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(event.set)

    def done(_: Future[Any]) -> None:
        if threading.get_ident() == loop_thread:  # it finished as the callback was added
            event.set()
        else:
            wake()

    future.add_done_callback(done)
    await event.wait()
