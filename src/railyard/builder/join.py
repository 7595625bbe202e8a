"""Joins and reducers: how the values of a fork's branches are combined into one."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, Self, overload

import pydantic
from typing_extensions import TypeVar

from railyard.builder.id_types import ForkID, ForkStack, JoinID
from railyard.builder.util import get_callable_name
from railyard.nodes import BaseNode, End, GraphRunContext
from railyard.runtime._joins import JoinState

__all__ = (
    "BaseNode",
    "ItemFailure",
    "ContextReducerFunction",
    "DepsT",
    "End",
    "ForkID",
    "ForkStack",
    "GraphRunContext",
    "InputT",
    "Join",
    "JoinID",
    "JoinNode",
    "NumericT",
    "OutputT",
    "PlainReducerFunction",
    "StateT",
    "SupportsSum",
    "JoinState",
    "ReduceFirstValue",
    "ReducerContext",
    "ReducerFunction",
    "reduce_dict_update",
    "reduce_list_append",
    "reduce_list_extend",
    "reduce_null",
    "reduce_sum",
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
StateT = TypeVar("StateT", default=Any)
"""The run's state type."""
DepsT = TypeVar("DepsT", default=Any)
"""The run's dependencies type."""
InputT = TypeVar("InputT", default=Any)
"""The type of the values arriving at a join."""
OutputT = TypeVar("OutputT", default=Any)
"""The type of a join's reduced value."""


class ItemFailure(pydantic.BaseModel):
    """What a join gets for a map item whose branch failed, under `map(on_error="collect")`."""

    kind: Literal["item_failure"] = "item_failure"
    """Tells a failure apart from a value in a stored run."""
    index: int
    """The item's position among the map's items (0 for the first)."""
    step: str
    """The step that failed."""
    inputs: Any
    """The value that step was given (the item itself, when the branch's first step failed)."""
    error_type: str
    """The exception's type, as `module.qualified name`."""
    message: str
    """The exception's message."""


class ReducerContext(Generic[StateT, DepsT]):
    """What a three-argument reducer gets: the run's state and deps, and a way to stop the fork."""

    __slots__ = ("_cancel", "_deps", "_join_state", "_state", "run_id")

    def __init__(
        self,
        *,
        state: Any,
        deps: Any,
        join_state: JoinState,
        cancel: Callable[[], None],
        run_id: str | None = None,
    ) -> None:
        self._state = state
        self._deps = deps
        self._join_state = join_state
        self._cancel = cancel
        self.run_id = run_id
        """The id of the durable run the join belongs to, or `None` in memory (as `StepContext.run_id`)."""

    @property
    def state(self) -> StateT:
        """The run's state."""
        return self._state  # type: ignore[no-any-return]

    @property
    def deps(self) -> DepsT:
        """The run's dependencies."""
        return self._deps  # type: ignore[no-any-return]

    @property
    def join_state(self) -> JoinState:
        """The join's progress."""
        return self._join_state

    def cancel_sibling_tasks(self) -> None:
        """Cancel the branches of this join's fork that are still running or waiting to run."""
        if not self._join_state.cancelled_sibling_tasks:
            self._join_state.cancelled_sibling_tasks = True
            self._cancel()

    def __repr__(self) -> str:
        return f"ReducerContext(_state={self._state!r}, _deps={self._deps!r}, _join_state={self._join_state!r})"


class ReducerFunction(Protocol):
    """`(current, inputs) -> new` or `(ctx, current, inputs) -> new`."""

    def __call__(self, *args: Any) -> Any:
        """Fold one value into the current one and return the result."""
        ...


PlainReducerFunction = Callable[[Any, Any], Any]
"""A reducer of two arguments: `(current, inputs) -> new`."""
ContextReducerFunction = Callable[["ReducerContext[Any, Any]", Any, Any], Any]
"""A reducer that also gets a `ReducerContext`: `(ctx, current, inputs) -> new`."""


class SupportsSum(Protocol):
    """A value `reduce_sum` can add to: it has `+`."""

    def __add__(self, other: Self, /) -> Self:
        """The sum of this value and `other`."""
        ...


NumericT = TypeVar("NumericT", bound=SupportsSum)
"""The type of the values `reduce_sum` adds."""


def reduce_null(current: None, inputs: Any) -> None:
    """Ignore the values: the join only waits for its branches."""
    return None


def reduce_list_append(current: list[T], inputs: T) -> list[T]:
    """Append each value to a list (in the order the branches finish)."""
    current.append(inputs)
    return current


def reduce_list_extend(current: list[T], inputs: Iterable[T]) -> list[T]:
    """Extend a list with each value's items."""
    current.extend(inputs)
    return current


def reduce_dict_update(current: dict[K, V], inputs: Mapping[K, V]) -> dict[K, V]:
    """Update a dict with each value."""
    current.update(inputs)
    return current


def reduce_sum(current: Any, inputs: Any) -> Any:
    """Add each value to a running total."""
    return current + inputs


@dataclass
class ReduceFirstValue(Generic[T]):
    """Keep the first value to arrive and cancel the fork's other branches."""

    def __call__(self, ctx: ReducerContext[Any, Any], current: T, inputs: T) -> T:
        """Keep the first value; cancel the other branches when it arrives."""
        if ctx.join_state.cancelled_sibling_tasks:
            return current
        ctx.cancel_sibling_tasks()
        return inputs


def _takes_context(reducer: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(reducer).parameters
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in positional)


class Join(Generic[StateT, DepsT, InputT, OutputT]):
    """Waits for every branch of its parent fork and reduces their values into one."""

    def __init__(
        self,
        *,
        id: str,
        reducer: Callable[..., Any],
        initial_factory: Callable[[], Any],
        parent_fork_id: str | None = None,
        preferred_parent_fork: str = "farthest",
    ) -> None:
        self.id = id
        """The join's node id."""
        self._reducer = reducer
        self._initial_factory = initial_factory
        self.parent_fork_id = parent_fork_id
        """The fork whose branches this join waits for (computed at build when not given)."""
        self.preferred_parent_fork = preferred_parent_fork
        """Which dominating fork to pick when several qualify: `farthest` or `closest`."""
        self._with_context = _takes_context(reducer)

    @property
    def reducer(self) -> Callable[..., Any]:
        """The reducer."""
        return self._reducer

    @property
    def initial_factory(self) -> Callable[[], Any]:
        """Makes the value reduction starts from."""
        return self._initial_factory

    def reduce(self, ctx: ReducerContext[Any, Any], current: Any, inputs: Any) -> Any:
        """Fold one branch's value into `current`."""
        if self._with_context:
            return self._reducer(ctx, current, inputs)
        return self._reducer(current, inputs)

    @overload
    def as_node(self, inputs: None = None) -> JoinNode[StateT, DepsT]: ...
    @overload
    def as_node(self, inputs: InputT) -> JoinNode[StateT, DepsT]: ...
    def as_node(self, inputs: InputT | None = None) -> JoinNode[StateT, DepsT]:
        """A node-API value that sends `inputs` to this join: return it from a node's `run`.

        The node's `run` annotation names the join: `-> Annotated[JoinNode[S, D], my_join]`.
        """
        return JoinNode(self, inputs)

    def __repr__(self) -> str:
        return (
            f"Join(id={self.id!r}, _reducer={self._reducer!r}, _initial_factory={self._initial_factory!r}, "
            f"parent_fork_id={self.parent_fork_id!r}, preferred_parent_fork={self.preferred_parent_fork!r})"
        )


def default_join_id(reducer: Callable[..., Any]) -> str:
    """The id a join gets unless given one: the reducer's name."""
    return get_callable_name(reducer)


@dataclass
class JoinNode(BaseNode[StateT, DepsT, Any]):
    """What a node-API node returns to send a value to a builder join.

    It is a marker, not a node to run: the builder reduces `inputs` into `join`.
    """

    join: Join[StateT, DepsT, Any, Any]
    """The join the value goes to."""
    inputs: Any
    """The value."""

    async def run(self, ctx: GraphRunContext[StateT, DepsT]) -> BaseNode[StateT, DepsT, Any] | End[Any]:
        """Not meant to be run: the builder routes a returned `JoinNode` to its join.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "`JoinNode` is not meant to be run directly, it is meant to be used in `BaseNode` subclasses to "
            "indicate a transition to v2-style steps."
        )
