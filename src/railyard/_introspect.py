"""Reading graphs out of type hints: a node's edges, a graph's state and end types, its name.

Pure functions, no I/O; everything here runs once per graph, at construction.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from typing import Any, Union, get_args, get_origin

import typing_extensions
from typing_extensions import get_original_bases

from railyard.exceptions import GraphSetupError
from railyard.nodes import BaseNode, Edge, End, NodeDef

__all__ = ("node_def", "infer_state_type", "infer_name", "parent_namespace", "Unset", "UNSET")


class Unset:
    """Marker for an argument that was not given (distinct from `None`)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


_UNION_ORIGINS: tuple[Any, ...] = (Union, types.UnionType)
NEVER_TYPES: tuple[Any, ...] = (typing.Never, typing.NoReturn, typing_extensions.Never, typing_extensions.NoReturn)


def node_def(node: type[BaseNode[Any, Any, Any]], local_ns: dict[str, Any] | None) -> NodeDef:
    """Build the `NodeDef` of `node` from its `run` method's return annotation.

    Raises:
        GraphSetupError: `run` is missing or not async, or its return annotation is missing,
            unresolvable, or names something that is neither a node nor `End`.
    """
    node_id = node.get_node_id()
    run = getattr(node, "run", None)
    if run is None or getattr(run, "__isabstractmethod__", False):
        raise GraphSetupError(f"Node `{node_id}` has no `run` method. Define `async def run(self, ctx) -> ...` on it.")
    if not inspect.iscoroutinefunction(run):
        raise GraphSetupError(
            f"`{node_id}.run` must be an `async def` method; it is a plain function. "
            f"Write `async def run(self, ctx) -> ...`."
        )
    module = sys.modules.get(node.__module__)
    global_ns = dict(vars(module)) if module is not None else {}
    try:
        hints = typing.get_type_hints(run, globalns=global_ns, localns=local_ns, include_extras=True)
    except NameError as err:
        raise GraphSetupError(
            f"Cannot resolve the return annotation of `{node_id}.run`: {err}. "
            f"Define the name at module level in `{node.__module__}`, or in the function that "
            f"creates the Graph, before the Graph is created."
        ) from None
    if "return" not in hints:
        raise GraphSetupError(
            f"Node {node} is missing a return type hint on its `run` method. Annotate it with "
            f"the nodes it may return, e.g. `-> NextNode | End[int]`."
        )
    result = NodeDef(node=node, node_id=node_id, note=node.get_note())
    _collect_edges(node_id, hints["return"], None, result)
    return result


def _collect_edges(node_id: str, hint: Any, edge: Edge | None, result: NodeDef) -> None:
    origin = get_origin(hint)
    if origin is typing.Annotated or origin is typing_extensions.Annotated:
        base, *metadata = get_args(hint)
        label = next((m for m in metadata if isinstance(m, Edge)), edge)
        _collect_edges(node_id, base, label, result)
        return
    if origin in _UNION_ORIGINS:
        for arg in get_args(hint):
            _collect_edges(node_id, arg, edge, result)
        return
    if hint in NEVER_TYPES:
        return
    if hint is End or origin is End:
        result.end_edge = edge or Edge(label=None)
        args = get_args(hint)
        result.end_types.append(args[0] if args else Any)
        return
    cls = origin if origin is not None else hint
    if isinstance(cls, type) and issubclass(cls, BaseNode):
        if cls.__dict__.get("_stands_for_any_node", False):  # `BaseNode` itself (or `railyard.v0`'s)
            result.returns_base_node = True
            return
        next_id = cls.get_node_id()
        result.next_node_edges[next_id] = edge or Edge(label=None)
        result.next_node_classes[next_id] = cls
        return
    raise GraphSetupError(
        f"Invalid return type: {hint!r} in the return annotation of `{node_id}.run`; "
        f"it must name `BaseNode` subclasses and `End[...]` only."
    )


def infer_state_type(node: type[BaseNode[Any, Any, Any]]) -> Any:
    """The `StateT` argument `node` gives `BaseNode`, or `UNSET` if it gives none."""
    for base in _generic_bases(node):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, BaseNode):
            args = get_args(base)
            if args and not isinstance(args[0], typing.TypeVar | typing_extensions.TypeVar):
                return args[0]
    return UNSET


def _generic_bases(cls: type) -> list[Any]:
    bases: list[Any] = []
    for klass in cls.__mro__:
        try:
            bases.extend(get_original_bases(klass))
        except TypeError:
            continue
    return bases


def parent_namespace(frame: types.FrameType | None) -> dict[str, Any] | None:
    """The local namespace of `frame` if it is a function's frame, else `None`.

    Nodes defined inside a function refer to each other by names that only that
    function's locals hold; resolving their forward references needs them.
    """
    frame = _skip_typing_frames(frame)
    if frame is None or frame.f_locals is frame.f_globals:
        return None
    return dict(frame.f_locals)


def _skip_typing_frames(frame: types.FrameType | None) -> types.FrameType | None:
    """`frame`, or its caller when `frame` is `typing`'s: `Graph[S, D, R](...)` calls through it."""
    while frame is not None and frame.f_globals.get("__name__") in ("typing", "typing_extensions"):
        frame = frame.f_back
    return frame


def infer_name(target: object, frame: types.FrameType | None) -> str | None:
    """The name of the variable that holds `target` in `frame` (or its module), if any."""
    frame = _skip_typing_frames(frame)
    if frame is None:
        return None
    for name, value in frame.f_locals.items():
        if value is target:
            return name
    if frame.f_locals is not frame.f_globals:
        for name, value in frame.f_globals.items():
            if value is target:
                return name
    return None
