"""Which fork each join waits for: the join's dominating forks, computed from the graph's edges.

A fork *dominates* a join when every way from a start to the join passes through it. A
dominating fork can be the join's *parent fork* (the fork whose branches it waits for)
only if the join lies on no cycle that avoids the fork: otherwise a value could come
round to the join again after the join had closed. The start of the run counts as a
fork (the outermost one), so a graph without loops always has a parent fork for each
join; a join on a loop needs a fork inside the loop.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar

from railyard.builder.join import Join
from railyard.builder.node import START_ID, Fork
from railyard.builder.paths import DestinationMarker, Path
from railyard.exceptions import GraphBuildingError, GraphValidationError

__all__ = ("ParentFork", "ParentForkFinder", "find_parent_forks")

T = TypeVar("T", bound=Hashable, default=str)


@dataclass
class ParentFork(Generic[T]):
    """The fork a join waits for, and the nodes between the two."""

    fork_id: T
    """The fork (or `__start__`, the outermost fork) whose branches the join waits for."""
    intermediate_nodes: set[T] = field(default_factory=set)
    """The nodes upstream of the join that can be reached from the fork without passing it again.

    While a branch of the fork's run is at one of them (or at the join), the join stays open.
    """


@dataclass
class ParentForkFinder(Generic[T]):
    """Finds the parent fork of a join in a directed graph given as node ids and edges.

    ```python
    edges = {"s": ["F"], "F": ["A", "B"], "A": ["J"], "B": ["J"]}
    finder = ParentForkFinder({"s", "F", "A", "B", "J"}, {"s"}, {"F"}, edges)
    assert finder.find_parent_fork("J") == ParentFork("F", {"A", "B"})
    ```
    """

    nodes: set[T]
    """Every node id of the graph."""
    start_ids: set[T]
    """The nodes runs start from."""
    fork_ids: set[T]
    """The nodes that start branches (a start counts as a fork only when listed here)."""
    edges: Mapping[T, list[T]]
    """Each node's successors."""
    _predecessors: dict[T, list[T]] = field(init=False, repr=False)
    _dominators: dict[T, set[T]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        predecessors: dict[T, list[T]] = {node: [] for node in self.nodes}
        for source, targets in self.edges.items():
            for target in targets:
                predecessors.setdefault(target, []).append(source)
        self._predecessors = predecessors
        self._dominators = self._compute_dominators()

    def find_parent_fork(
        self, join_id: T, *, parent_fork_id: T | None = None, prefer_closest: bool = False
    ) -> ParentFork[T] | None:
        """The parent fork of `join_id`, or `None` when no dominating fork can be one.

        With `parent_fork_id`, that fork (if it is on every cycle through the join). Else
        the farthest dominating fork from the join (the most ancestral) that no cycle
        through the join avoids, or the closest one with `prefer_closest`.

        Raises:
            GraphBuildingError: `parent_fork_id` is given and a cycle through the join avoids it.
        """
        if parent_fork_id is not None:
            upstream = self._upstream_within(join_id, parent_fork_id)
            if upstream is None:
                raise GraphBuildingError(
                    f"There is a cycle in the graph passing through {join_id!r} that does not include "
                    f"{parent_fork_id!r}. Parent forks of a join must be a part of any cycles involving that join."
                )
            return ParentFork(parent_fork_id, upstream)
        candidates = self.candidates(join_id)
        if not candidates:
            return None
        return candidates[0] if prefer_closest else candidates[-1]

    def candidates(self, join_id: T) -> list[ParentFork[T]]:
        """Every fork that can be `join_id`'s parent fork, nearest first (the farthest is the default)."""
        found: list[ParentFork[T]] = []
        for dominator in self._dominator_chain(join_id):  # nearest first
            if dominator not in self.fork_ids:
                continue
            upstream = self._upstream_within(join_id, dominator)
            if upstream is None:
                if found:
                    # a cycle through the join avoids this fork, so it avoids every fork above it too
                    return found
                continue
            found.append(ParentFork(dominator, upstream))
        return found

    def dominators_of(self, node_id: T) -> set[T]:
        """The nodes every path from a start to `node_id` passes through (not `node_id` itself)."""
        return self._dominators.get(node_id, set()) - {node_id}

    def _compute_dominators(self) -> dict[T, set[T]]:
        everything = set(self.nodes)
        dominators: dict[T, set[T]] = {node: set(everything) for node in everything}
        for start in self.start_ids:
            dominators[start] = {start}
        changed = True
        while changed:
            changed = False
            for node in everything - self.start_ids:
                incoming = [dominators[p] for p in self._predecessors.get(node, []) if p in dominators]
                if not incoming:
                    continue  # not reachable from a start: dominated by everything, as far as anyone can tell
                new = set.intersection(*incoming) | {node}
                if new != dominators[node]:
                    dominators[node] = new
                    changed = True
        return dominators

    def _dominator_chain(self, node_id: T) -> list[T]:
        """The strict dominators of `node_id`, nearest first, up the immediate-dominator chain.

        The chain stops where no dominator is immediate (a node no start reaches).
        """
        dominators = self._dominators
        chain: list[T] = []
        current = node_id
        while True:
            strict = dominators.get(current, set()) - {current}
            # the immediate dominator is the strict dominator dominated by all the others
            nearest = next((d for d in strict if dominators.get(d, set()) - {d} == strict - {d}), None)
            if nearest is None or nearest in chain:
                return chain
            chain.append(nearest)
            current = nearest

    def _upstream_within(self, join_id: T, fork_id: T) -> set[T] | None:
        """The nodes that reach `join_id` without passing `fork_id`; `None` if the join is on a cycle avoiding it."""
        upstream: set[T] = set()
        todo = [join_id]
        while todo:
            for predecessor in self._predecessors.get(todo.pop(), []):
                if predecessor == fork_id:
                    continue
                if predecessor == join_id:
                    return None
                if predecessor not in upstream:
                    upstream.add(predecessor)
                    todo.append(predecessor)
        return upstream


def find_parent_forks(
    nodes: Mapping[str, Any], edges: Mapping[str, list[Path]], *, render: Any = None
) -> dict[str, ParentFork[str]]:
    """The parent fork of every join of a built graph (nodes by id, flattened paths by source).

    Raises:
        GraphBuildingError: a join has no dominating fork that can be its parent (it is on a
            loop with no fork inside), or its `parent_fork_id` is on no cycle through it.
    """
    successors: dict[str, list[str]] = {
        source: [item.destination_id for path in paths for item in path.items if isinstance(item, DestinationMarker)]
        for source, paths in edges.items()
    }
    fork_ids = {START_ID} | {node_id for node_id, node in nodes.items() if isinstance(node, Fork)}
    finder = ParentForkFinder(set(nodes), {START_ID}, fork_ids, successors)
    result: dict[str, ParentFork[str]] = {}
    joins = [join_id for join_id, node in nodes.items() if isinstance(node, Join)]
    # inner joins first: a fork an inner join waits for is closed before the joins after it
    for join_id in sorted(joins, key=lambda j: len(finder.dominators_of(j))):
        join: Join[Any, Any, Any, Any] = nodes[join_id]
        if join.parent_fork_id is not None and join.parent_fork_id not in finder.dominators_of(join_id):
            raise GraphValidationError(
                f"Join `{join_id}` is given parent_fork_id={join.parent_fork_id!r}, which is not a fork that every "
                f"path to the join passes through (those are: {sorted(finder.dominators_of(join_id) & fork_ids)})."
            )
        parent: ParentFork[str] | None
        if join.parent_fork_id is not None or join.preferred_parent_fork != "closest":
            parent = finder.find_parent_fork(join_id, parent_fork_id=join.parent_fork_id)
        else:
            # the nearest fork no join between it and this one already waits for (else that
            # join would close the fork's branches, and this one would get one value per branch)
            options = finder.candidates(join_id)
            parent = next(
                (
                    option
                    for option in options
                    if not any(
                        result[inner].fork_id == option.fork_id
                        for inner in option.intermediate_nodes
                        if inner in result
                    )
                ),
                options[-1] if options else None,
            )
        if parent is None:
            diagram = render() if render is not None else ""
            raise GraphBuildingError(
                "A node in the graph is missing a dominating fork.\n\n"
                "For every Join J in the graph, there must be a Fork F between the StartNode and J satisfying:\n"
                "* Every path from the StartNode to J passes through F\n"
                "* There are no cycles in the graph including J that don't pass through F.\n"
                'In this case, F is called a "dominating fork" for J.\n\n'
                "This is used to determine when all tasks upstream of this Join are complete and we can proceed "
                f"with execution.\n\nMermaid diagram:\n{diagram}\n\n"
                f"Join {join_id!r} in this graph has no dominating fork in this graph."
            )
        result[join_id] = parent
    return {join_id: result[join_id] for join_id in joins}
