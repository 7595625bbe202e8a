"""Mermaid diagrams of builder graphs: forks, joins, decisions and labels."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from railyard.builder.decision import Decision
from railyard.builder.join import Join
from railyard.builder.node import END_ID, START_ID, Fork
from railyard.builder.paths import DestinationMarker, LabelMarker
from railyard.builder.step import Step

if TYPE_CHECKING:
    from railyard.builder.graph import Graph

__all__ = ("render",)


def _edges(graph: Graph[Any, Any, Any, Any], source: str) -> list[tuple[str, str | None]]:
    edges: list[tuple[str, str | None]] = []
    for path in graph.edges_by_source.get(source, []):
        label: str | None = None
        for item in path.items:
            if isinstance(item, LabelMarker):
                label = item.label
            elif isinstance(item, DestinationMarker):
                edges.append((item.destination_id, label))
    return sorted(edges, key=lambda edge: (edge[0] == END_ID, edge[0]))  # by id, the end last


def render(graph: Graph[Any, Any, Any, Any], *, title: str | None = None, direction: str | None = None) -> str:
    """The graph as a `stateDiagram-v2`: nodes in breadth-first order from the start, then edges."""
    order: list[str] = []
    seen = {START_ID}
    queue = deque([START_ID])
    while queue:
        current = queue.popleft()
        order.append(current)
        for destination, _ in _edges(graph, current):
            if destination not in seen:
                seen.add(destination)
                queue.append(destination)
    order += [node_id for node_id in graph.nodes if node_id not in seen]
    lines: list[str] = []
    if title:
        lines += ["---", f"title: {title}", "---"]
    lines.append("stateDiagram-v2")
    if direction:
        lines.append(f"  direction {direction}")
    for node_id in order:
        node = graph.nodes.get(node_id)
        if node_id in (START_ID, END_ID) or node is None:
            continue
        if isinstance(node, Fork):
            lines.append(f"  state {node_id} <<fork>>")
        elif isinstance(node, Join):
            lines.append(f"  state {node_id} <<join>>")
        elif isinstance(node, Decision):
            lines.append(f"  state {node_id} <<choice>>")
            if node.note:
                lines += [
                    f"  note right of {node_id}",
                    *(f"    {line}" for line in node.note.splitlines()),
                    "  end note",
                ]
        elif isinstance(node, Step) and node.label:
            lines.append(f"  {node_id}: {node.label}")
        else:
            lines.append(f"  {node_id}")
    lines.append("")
    for source in order:
        start = "[*]" if source == START_ID else source
        for destination, label in _edges(graph, source):
            end = "[*]" if destination == END_ID else destination
            lines.append(f"  {start} --> {end}" + (f": {label}" if label else ""))
    return "\n".join(lines)
