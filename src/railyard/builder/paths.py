"""Edges as paths: what happens to a value between a source and its destinations.

A path is a list of markers: transform the value, label the edge, map over the value or
broadcast it (both create a fork), and finally the destination. `GraphBuilder.build`
turns map and broadcast markers into fork nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from railyard._ids import new_hex_id

if TYPE_CHECKING:
    from railyard.builder.step import StepContext

__all__ = (
    "BroadcastMarker",
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
    "node_id_of",
    "placeholder_id",
)

T = TypeVar("T")

TransformFunction = Callable[["StepContext[Any, Any, Any]"], Any]
"""Turns the value on an edge into another: gets a `StepContext` whose `inputs` is the value."""

PLACEHOLDER = "__placeholder__"


def placeholder_id(kind: str) -> str:
    """A node id to be replaced at build time by `kind`, `kind_2`, ... (for forks, decisions, joins)."""
    return f"{PLACEHOLDER}:{kind}:{new_hex_id()}"


def node_id_of(node: Any) -> str:
    """The node id of a step, join, decision, fork, start, end, or node-API class."""
    from railyard.nodes import BaseNode

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


def _check_concurrency(value: int | None, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: max_concurrency must be a whole number of at least 1, or None; got {value!r}.")
    return value


@dataclass
class PathBuilder:
    """Builds a path item by item."""

    working_items: list[PathItem] = field(default_factory=list[PathItem])

    def _with(self, item: PathItem) -> PathBuilder:
        return PathBuilder([*self.working_items, item])

    def transform(self, func: TransformFunction, /) -> PathBuilder:
        """Add a transform."""
        return self._with(TransformMarker(func))

    def label(self, label: str, /) -> PathBuilder:
        """Add a label."""
        return self._with(LabelMarker(label))

    def map(
        self, *, fork_id: str | None = None, downstream_join_id: str | None = None, max_concurrency: int | None = None
    ) -> PathBuilder:
        """Fork over the items of the value."""
        limit = _check_concurrency(max_concurrency, "map()")
        return self._with(MapMarker(fork_id or placeholder_id("map"), downstream_join_id, limit))

    def to(self, destination: Any, /, *extra_destinations: Any, fork_id: str | None = None) -> tuple[Path, list[Any]]:
        """End the path at one destination, or broadcast to several."""
        destinations = [destination, *extra_destinations]
        if len(destinations) == 1:
            return Path([*self.working_items, DestinationMarker(node_id_of(destination))]), destinations
        paths = [Path([DestinationMarker(node_id_of(d))]) for d in destinations]
        return Path([*self.working_items, BroadcastMarker(paths, fork_id or placeholder_id("broadcast"))]), destinations


@dataclass
class EdgePath(Generic[T]):
    """An edge from some sources along a path to its destinations; add it with `GraphBuilder.add`."""

    _sources: Sequence[Any]
    path: Path
    destinations: list[Any]

    @property
    def sources(self) -> Sequence[Any]:
        """The nodes the edge starts from."""
        return self._sources


class EdgePathBuilder(Generic[T]):
    """Builds an edge from `GraphBuilder.edge_from(...)`: chain `.transform`, `.label`, `.map`, then `.to`."""

    def __init__(self, sources: Sequence[Any], path_builder: PathBuilder) -> None:
        self.sources = sources
        self.path_builder = path_builder

    def to(self, destination: Any, /, *extra_destinations: Any, fork_id: str | None = None) -> EdgePath[T]:
        """The edge's destination; several destinations broadcast the value to each."""
        path, destinations = self.path_builder.to(destination, *extra_destinations, fork_id=fork_id)
        return EdgePath(self.sources, path, destinations)

    def map(
        self, *, fork_id: str | None = None, downstream_join_id: str | None = None, max_concurrency: int | None = None
    ) -> EdgePathBuilder[Any]:
        """Fork: one branch per item of the value (an iterable or an async iterable).

        `downstream_join_id` names the join the branches meet at, so that mapping nothing
        still produces that join's initial value. `max_concurrency` bounds how many of this
        map's branches run at once.

        Raises:
            ValueError: `max_concurrency` is not a whole number of at least 1.
        """
        return EdgePathBuilder(
            self.sources,
            self.path_builder.map(
                fork_id=fork_id, downstream_join_id=downstream_join_id, max_concurrency=max_concurrency
            ),
        )

    def transform(self, func: TransformFunction, /) -> EdgePathBuilder[Any]:
        """Turn the value into `func(ctx)` (a sync function of a `StepContext`)."""
        return EdgePathBuilder(self.sources, self.path_builder.transform(func))

    def label(self, label: str) -> EdgePathBuilder[T]:
        """Label the edge on diagrams."""
        return EdgePathBuilder(self.sources, self.path_builder.label(label))

    def broadcast(
        self, get_forks: Callable[[EdgePathBuilder[T]], Sequence[EdgePath[Any]]], /, *, fork_id: str | None = None
    ) -> EdgePath[T]:
        """Fork: send the value down each of the edges `get_forks` builds from a fresh builder."""
        forks = get_forks(EdgePathBuilder(self.sources, PathBuilder()))
        paths = [fork.path for fork in forks]
        destinations = [d for fork in forks for d in fork.destinations]
        marker = BroadcastMarker(paths, fork_id or placeholder_id("broadcast"))
        return EdgePath(self.sources, Path([*self.path_builder.working_items, marker]), destinations)
