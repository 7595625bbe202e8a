"""Edges as paths: what happens to a value between a source and its destinations.

A path is a list of markers: transform the value, label the edge, map over the value or
broadcast it (both create a fork), and finally the destination. `GraphBuilder.build`
turns map and broadcast markers into fork nodes.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal

from typing_extensions import TypeVar

from railyard.builder.id_types import PLACEHOLDER_PREFIX, ForkID, JoinID, NodeID, generate_placeholder_node_id
from railyard.builder.step import NodeStep, StepContext
from railyard.exceptions import GraphBuildingError
from railyard.nodes import BaseNode

__all__ = (
    "BaseNode",
    "BroadcastMarker",
    "DepsT",
    "ForkID",
    "GraphBuildingError",
    "InputT",
    "JoinID",
    "NodeID",
    "NodeStep",
    "OutputT",
    "StateT",
    "StepContext",
    "DestinationMarker",
    "EdgePath",
    "EdgePathBuilder",
    "LabelMarker",
    "MapMarker",
    "Path",
    "PathBuilder",
    "PathItem",
    "TransformFunction",
    "TransformMarker",
    "generate_placeholder_node_id",
    "node_id_of",
    "placeholder_id",
)

T = TypeVar("T")
StateT = TypeVar("StateT", default=Any)
DepsT = TypeVar("DepsT", default=Any)
InputT = TypeVar("InputT", default=Any)
OutputT = TypeVar("OutputT", default=Any)

TransformFunction = Callable[[StepContext[Any, Any, Any]], Any]
"""Turns the value on an edge into another: gets a `StepContext` whose `inputs` is the value."""

PLACEHOLDER = PLACEHOLDER_PREFIX


def placeholder_id(kind: str) -> str:
    """A node id to be replaced at build time by `kind`, `kind_2`, ... (for forks, decisions, joins)."""
    return generate_placeholder_node_id(kind)


def node_id_of(node: Any) -> str:
    """The node id of a step, join, decision, fork, start, end, or node-API class."""
    if isinstance(node, type) and issubclass(node, BaseNode):
        return node.get_node_id()
    node_id: str = node.id
    return node_id


@dataclass
class TransformMarker:
    """Replace the value by `transform(ctx)`."""

    transform: TransformFunction


@dataclass
class MapMarker:
    """Fork: one branch per item of the value."""

    fork_id: str
    downstream_join_id: str | None = None
    max_concurrency: int | None = None
    on_error: str = "raise"


@dataclass
class BroadcastMarker:
    """Fork: the value goes down each of `paths`."""

    paths: Sequence[Path]
    fork_id: str


@dataclass
class LabelMarker:
    """A label for the edge on diagrams."""

    label: str


@dataclass
class DestinationMarker:
    """The value arrives at node `destination_id`."""

    destination_id: str


PathItem = TransformMarker | MapMarker | BroadcastMarker | LabelMarker | DestinationMarker
"""One step along a path."""


@dataclass
class Path:
    """What happens to a value on its way along an edge."""

    items: list[PathItem] = field(default_factory=list[PathItem])
    """The markers, in the order the value meets them."""

    @property
    def last_fork(self) -> BroadcastMarker | MapMarker | None:
        """The last map or broadcast on the path, or `None` if it has none."""
        return _last_fork(self.items)

    @property
    def next_path(self) -> Path:
        """The path without its first item."""
        return Path(list(self.items[1:]))


def _last_fork(items: Sequence[PathItem]) -> BroadcastMarker | MapMarker | None:
    for item in reversed(items):
        if isinstance(item, BroadcastMarker | MapMarker):
            return item
    return None


def _check_concurrency(value: int | None, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: max_concurrency must be a whole number of at least 1, or None; got {value!r}.")
    return value


@dataclass
class PathBuilder(Generic[StateT, DepsT, OutputT]):
    """Builds a path item by item; `OutputT` is the type of the value at the end of it so far."""

    working_items: Sequence[PathItem] = field(default_factory=list[PathItem])
    """The items so far."""

    def _with(self, item: PathItem) -> PathBuilder[Any, Any, Any]:
        return PathBuilder([*self.working_items, item])

    @property
    def last_fork(self) -> BroadcastMarker | MapMarker | None:
        """The last map or broadcast so far, or `None`."""
        return _last_fork(self.working_items)

    def transform(self, func: TransformFunction, /) -> PathBuilder[StateT, DepsT, Any]:
        """Add a transform: the value becomes `func(ctx)`, `ctx.inputs` being the value."""
        return self._with(TransformMarker(func))

    def label(self, label: str, /) -> PathBuilder[StateT, DepsT, OutputT]:
        """Add a label (shown on diagrams)."""
        return self._with(LabelMarker(label))

    def map(
        self,
        *,
        fork_id: str | None = None,
        downstream_join_id: str | None = None,
        max_concurrency: int | None = None,
        on_error: Literal["raise", "collect"] = "raise",
    ) -> PathBuilder[StateT, DepsT, Any]:
        """Fork over the items of the value (`on_error`: see `EdgePathBuilder.map`)."""
        limit = _check_concurrency(max_concurrency, "map()")
        if on_error not in ("raise", "collect"):
            raise ValueError(f"map(on_error={on_error!r}): on_error must be 'raise' or 'collect'")
        return self._with(MapMarker(fork_id or placeholder_id("map"), downstream_join_id, limit, on_error))

    def to(self, destination: Any, /, *extra_destinations: Any, fork_id: str | None = None) -> Path:
        """End the path at one destination, or broadcast to several."""
        destinations = [destination, *extra_destinations]
        if len(destinations) == 1:
            return Path([*self.working_items, DestinationMarker(node_id_of(destination))])
        paths = [Path([DestinationMarker(node_id_of(d))]) for d in destinations]
        return Path([*self.working_items, BroadcastMarker(paths, fork_id or placeholder_id("broadcast"))])

    def broadcast(self, forks: Sequence[Path], /, *, fork_id: str | None = None) -> Path:
        """End the path in a fork sending the value down each of `forks`.

        Raises:
            GraphBuildingError: `forks` is empty.
        """
        if not forks:
            raise GraphBuildingError("A broadcast needs at least one path to send the value down; it was given none.")
        return Path([*self.working_items, BroadcastMarker(list(forks), fork_id or placeholder_id("broadcast"))])


class EdgePath(Generic[StateT, DepsT]):
    """An edge from some sources along a path to its destinations; add it with `GraphBuilder.add`."""

    __slots__ = ("_sources", "destinations", "path")

    def __init__(self, sources: Sequence[Any], path: Path, destinations: list[Any]) -> None:
        self._sources = sources
        self.path = path
        """What happens to the value between the sources and the destinations."""
        self.destinations = destinations
        """The nodes the path's destination markers name."""

    @property
    def sources(self) -> Sequence[Any]:
        """The nodes the edge starts from."""
        return self._sources

    def __repr__(self) -> str:
        return f"EdgePath(_sources={self._sources!r}, path={self.path!r}, destinations={self.destinations!r})"


class EdgePathBuilder(Generic[StateT, DepsT, OutputT]):
    """Builds an edge from `GraphBuilder.edge_from(...)`: chain `.transform`, `.label`, `.map`, then `.to`."""

    def __init__(self, sources: Sequence[Any], path_builder: PathBuilder[StateT, DepsT, OutputT]) -> None:
        self.sources = sources
        """The nodes the edge starts from."""
        self._path_builder = path_builder

    @property
    def path_builder(self) -> PathBuilder[StateT, DepsT, OutputT]:
        """The path so far."""
        return self._path_builder

    @property
    def last_fork_id(self) -> str | None:
        """The id of the last map or broadcast on the edge so far, or `None`."""
        fork = self._path_builder.last_fork
        return fork.fork_id if fork is not None else None

    def to(self, destination: Any, /, *extra_destinations: Any, fork_id: str | None = None) -> EdgePath[StateT, DepsT]:
        """The edge's destination; several destinations broadcast the value to each.

        A node-API class (or a parametrized alias of one) stands for its node.
        """
        destinations = [_destination(d) for d in (destination, *extra_destinations)]
        path = self._path_builder.to(*destinations, fork_id=fork_id)
        return EdgePath(self.sources, path, destinations)

    def map(
        self,
        *,
        fork_id: str | None = None,
        downstream_join_id: str | None = None,
        max_concurrency: int | None = None,
        on_error: Literal["raise", "collect"] = "raise",
    ) -> EdgePathBuilder[StateT, DepsT, Any]:
        """Fork: one branch per item of the value (an iterable or an async iterable).

        `downstream_join_id` names the join the branches meet at, so that mapping nothing
        still produces that join's initial value. `max_concurrency` bounds how many of this
        map's branches run at once. With `on_error="collect"`, a branch whose step fails
        (after its retries) goes on to the map's join as an `ItemFailure` naming the item's
        index, the step and the error, and its siblings go on; by default (`"raise"`) the
        error stops the run.

        Raises:
            NotImplementedError: the edge has several sources (make one edge per source).
            ValueError: `max_concurrency` is not a whole number of at least 1, or `on_error`
                is neither `"raise"` nor `"collect"`.
        """
        if len(self.sources) > 1:
            raise NotImplementedError(
                "Map is not currently supported with multiple source nodes. "
                "You can work around this by just creating a separate edge for each source."
            )
        return EdgePathBuilder(
            self.sources,
            self._path_builder.map(
                fork_id=fork_id,
                downstream_join_id=downstream_join_id,
                max_concurrency=max_concurrency,
                on_error=on_error,
            ),
        )

    def transform(self, func: TransformFunction, /) -> EdgePathBuilder[StateT, DepsT, Any]:
        """Turn the value into `func(ctx)` (a sync function of a `StepContext`)."""
        return EdgePathBuilder(self.sources, self._path_builder.transform(func))

    def label(self, label: str) -> EdgePathBuilder[StateT, DepsT, OutputT]:
        """Label the edge on diagrams."""
        return EdgePathBuilder(self.sources, self._path_builder.label(label))

    def broadcast(
        self,
        get_forks: Callable[[EdgePathBuilder[StateT, DepsT, OutputT]], Sequence[EdgePath[StateT, DepsT]]],
        /,
        *,
        fork_id: str | None = None,
    ) -> EdgePath[StateT, DepsT]:
        """Fork: send the value down each of the edges `get_forks` builds from this builder.

        Raises:
            GraphBuildingError: `get_forks` built no edge.
        """
        forks = get_forks(self)
        if not forks:
            raise GraphBuildingError(f"The call to {get_forks} returned no branches, but must return at least one.")
        # each fork was built from this builder, so it starts with this builder's items: keep the rest
        prefix = len(self._path_builder.working_items)
        paths = [
            Path(list(fork.path.items[prefix:])) if _extends(fork.path, self._path_builder) else fork.path
            for fork in forks
        ]
        destinations = [d for fork in forks for d in fork.destinations]
        return EdgePath(self.sources, self._path_builder.broadcast(paths, fork_id=fork_id), destinations)


def _extends(path: Path, builder: PathBuilder[Any, Any, Any]) -> bool:
    items = builder.working_items
    return len(path.items) >= len(items) and all(a is b for a, b in zip(path.items, items, strict=False))


def _destination(destination: Any) -> Any:
    """A destination as a node: a node-API class (or an alias such as `Node[int]`) becomes its `NodeStep`."""
    origin = typing.get_origin(destination) or destination
    if isinstance(origin, type) and issubclass(origin, BaseNode):
        return NodeStep(origin)
    return destination
