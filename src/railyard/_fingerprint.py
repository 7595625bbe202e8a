"""A graph's fingerprint: a short digest of its nodes and edges, recorded when a run is created.

Two graphs with the same node ids and the same edges between them have the same
fingerprint, whatever their code does; renaming a node or changing where it may go
changes it. A run's fingerprint says which shape of the graph it was started on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ("builder_fingerprint", "fingerprint", "node_fingerprint")


def fingerprint(edges: Mapping[str, Iterable[str]]) -> str:
    """The digest of a graph given as each node id's successors (order does not matter)."""
    text = "\n".join(f"{node}->{','.join(sorted(set(targets)))}" for node, targets in sorted(edges.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def node_fingerprint(node_defs: Mapping[str, Any]) -> str:
    """The fingerprint of a node-API graph, from its node definitions (`Graph.node_defs`)."""
    edges: dict[str, list[str]] = {}
    for node_id, node_def in node_defs.items():
        targets = list(node_def.next_node_edges)
        if node_def.end_edge is not None:
            targets.append("End")
        if node_def.returns_base_node:
            targets.append("*")
        edges[node_id] = targets
    return fingerprint(edges)


def builder_fingerprint(nodes: Iterable[str], edges_by_source: Mapping[str, Iterable[Any]]) -> str:
    """The fingerprint of a builder graph, from its node ids and the paths leaving each."""
    edges: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for source, paths in edges_by_source.items():
        for path in paths:
            steps = [
                getattr(item, "destination_id", None) or getattr(item, "fork_id", None) or type(item).__name__
                for item in path.items
            ]
            edges.setdefault(source, []).append(">".join(steps))
    return fingerprint(edges)
