"""Which fork each join waits for: the join's dominating forks, computed from the graph's edges."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from railyard.builder.join import Join
from railyard.builder.node import START_ID, Fork
from railyard.builder.paths import DestinationMarker, Path
from railyard.exceptions import GraphValidationError

__all__ = ("ParentFork", "find_parent_forks")


@dataclass
class ParentFork:
    """The fork a join waits for, and the nodes between the two."""

    fork_id: str
    """The fork (or `__start__`, the outermost fork) whose branches the join waits for."""
    intermediate_nodes: set[str] = field(default_factory=set[str])
    """The nodes on the way from the fork to the join."""


def find_parent_forks(nodes: Mapping[str, Any], edges: Mapping[str, list[Path]]) -> dict[str, ParentFork]:
    """The parent fork of every join.

    A fork dominates a join when every way from the start to the join passes through it.
    By default a join waits for the farthest such fork (the start of the run, which
    dominates everything); `preferred_parent_fork='closest'` picks the nearest one.

    Raises:
        GraphValidationError: a join's `parent_fork_id` is not a fork that dominates it.
    """
    successors: dict[str, list[str]] = {
        source: [item.destination_id for path in paths for item in path.items if isinstance(item, DestinationMarker)]
        for source, paths in edges.items()
    }
    predecessors: dict[str, list[str]] = defaultdict(list)
    for source, targets in successors.items():
        for target in targets:
            predecessors[target].append(source)
    dominators = _dominators(list(nodes), predecessors)
    result: dict[str, ParentFork] = {}
    joins = [join_id for join_id, node in nodes.items() if isinstance(node, Join)]
    # inner joins first: a fork an inner join closes is not open any more for the joins after it
    for join_id in sorted(joins, key=lambda j: len(dominators[j])):
        join: Join[Any] = nodes[join_id]
        order = _dominator_chain(join_id, dominators)
        candidates = [n for n in order if n == START_ID or isinstance(nodes.get(n), Fork)]
        if join.parent_fork_id is not None:
            if join.parent_fork_id not in candidates:
                raise GraphValidationError(
                    f"Join `{join_id}` is given parent_fork_id={join.parent_fork_id!r}, which is not a fork that "
                    f"every path to the join passes through (those are: {candidates})."
                )
            fork_id = join.parent_fork_id
        elif join.preferred_parent_fork == "closest":
            fork_id = next(
                (
                    fork
                    for fork in reversed(candidates)
                    if not any(
                        result[inner].fork_id == fork
                        for inner in _between(fork, join_id, successors, predecessors)
                        if inner in result
                    )
                ),
                START_ID,
            )
        else:
            fork_id = candidates[0]
        result[join_id] = ParentFork(fork_id, _between(fork_id, join_id, successors, predecessors))
    return {join_id: result[join_id] for join_id in joins}


def _dominators(node_ids: list[str], predecessors: Mapping[str, list[str]]) -> dict[str, set[str]]:
    everything = set(node_ids)
    dominators = {node_id: set(everything) for node_id in node_ids}
    dominators[START_ID] = {START_ID}
    changed = True
    while changed:
        changed = False
        for node_id in node_ids:
            if node_id == START_ID:
                continue
            incoming = [dominators[p] for p in predecessors.get(node_id, []) if p in dominators]
            new = set.intersection(*incoming) | {node_id} if incoming else {node_id}
            if new != dominators[node_id]:
                dominators[node_id] = new
                changed = True
    return dominators


def _dominator_chain(node_id: str, dominators: Mapping[str, set[str]]) -> list[str]:
    """The strict dominators of `node_id`, from the start to the nearest."""
    strict = dominators[node_id] - {node_id}
    return sorted(strict, key=lambda d: len(dominators[d]))


def _between(
    fork_id: str, join_id: str, successors: Mapping[str, list[str]], predecessors: Mapping[str, list[str]]
) -> set[str]:
    forward = _reach(fork_id, successors, stop=join_id)
    backward = _reach(join_id, predecessors, stop=fork_id)
    return (forward & backward) - {fork_id, join_id}


def _reach(start: str, edges: Mapping[str, list[str]], *, stop: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        current = todo.pop()
        if current == stop and current != start:
            continue
        for following in edges.get(current, []):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen
