"""Small helpers of the builder API: type expressions, names, and matching values to types."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, get_args, get_origin

from typing_extensions import TypeVar

__all__ = (
    "Maybe",
    "Some",
    "TypeExpression",
    "TypeOrTypeExpression",
    "get_callable_name",
    "infer_name",
    "matches_type",
    "unpack_type_expression",
)

T = TypeVar("T")


class TypeExpression(Generic[T]):
    """Carries a type that is not a class at runtime: `TypeExpression[Literal['left']]`, `TypeExpression[int | str]`."""


TypeOrTypeExpression: TypeAlias = "type[T] | type[TypeExpression[T]]"
"""A class, or a `TypeExpression[...]` for a type that is not a class."""


def unpack_type_expression(source: Any) -> Any:
    """The type inside `TypeExpression[...]`, or `source` itself."""
    if get_origin(source) is TypeExpression:
        return get_args(source)[0]
    return source


def get_callable_name(function: Callable[..., Any]) -> str:
    """The name a step or reducer gets by default: its `__name__`, or else its `str()`."""
    name = getattr(function, "__name__", None)
    return name if isinstance(name, str) else str(function)


@dataclass
class Some(Generic[T]):
    """A value that is there, even when it is `None`: `Some(None)` is not `None` (see `Maybe`)."""

    value: T
    """The value."""


Maybe: TypeAlias = "Some[T] | None"
"""A value that may be missing: `None` when it is, `Some(value)` when it is there (even if `None`)."""


def infer_name(obj: Any, *, depth: int) -> str | None:
    """The name of the variable holding `obj` in the frame `depth` levels above the caller's.

    `depth=1` looks in the caller's own frame: its local variables first, then its
    module's globals. `None` when there is no such frame or no variable holds `obj`.
    """
    from railyard._introspect import infer_name as infer_in_frame

    frame = inspect.currentframe()
    for _ in range(depth):
        if frame is None:
            return None
        frame = frame.f_back
    return infer_in_frame(obj, frame)


_UNIONS: tuple[Any, ...] = (typing.Union, types.UnionType)


def matches_type(value: Any, source: Any) -> bool:
    """Whether `value` is of the type `source` (a class, a union, a `Literal`, `Any`, `None`).

    Raises:
        RuntimeError: `source` is a parametrized generic such as `list[int]`, which a value
            cannot be checked against.
    """
    source = unpack_type_expression(source)
    if source is Any or source is object:
        return True
    if source is None or source is type(None):
        return value is None
    origin = get_origin(source)
    if origin in _UNIONS:
        return any(matches_type(value, arg) for arg in get_args(source))
    if origin is typing.Literal:
        return any(value == option and type(value) is type(option) for option in get_args(source))
    if origin is typing.Annotated:
        return matches_type(value, get_args(source)[0])
    if isinstance(source, type) and origin is None:
        return isinstance(value, source)
    raise RuntimeError(f"Decision branch source {source} is not a valid type.")
