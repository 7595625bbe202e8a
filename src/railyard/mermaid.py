"""Mermaid diagrams of node graphs: `stateDiagram-v2` text, and images from a rendering service.

The text needs nothing beyond railyard. Images come from a mermaid rendering service
over HTTP (the public https://mermaid.ink unless `base_url` or the environment variable
`RAILYARD_MERMAID_URL` names another) and need the `image` extra:
`pip install 'railyard-graph[image]'`.

A graph is drawn through railyard's one diagram model, which the builder API's
diagrams share; these functions read only what `MermaidGraph` names of a graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from typing_extensions import Unpack

from railyard import _mermaid_service
from railyard._diagram import (
    DEFAULT_HIGHLIGHT_CSS,
    END,
    START,
    Diagram,
    Edge,
    State,
    StateDiagramDirection,
    write_mermaid,
)
from railyard._mermaid_service import DEFAULT_BASE_URL, ImageConfig, image_options
from railyard.nodes import BaseNode
from railyard.nodes import Edge as NodeEdge

__all__ = (
    "DEFAULT_BASE_URL",
    "DEFAULT_HIGHLIGHT_CSS",
    "MermaidConfig",
    "MermaidGraph",
    "MermaidNodeDef",
    "NodeIdent",
    "StateDiagramDirection",
    "generate_code",
    "request_image",
    "save_image",
)

NodeIdent: TypeAlias = "type[BaseNode[Any, Any, Any]] | BaseNode[Any, Any, Any] | str"
"""A node named by its class, an instance, or its id."""


class MermaidNodeDef(Protocol):
    """What a diagram shows of one node: its note and the edges leaving it."""

    @property
    def note(self) -> str | None:
        """The note shown beside the node."""

    @property
    def next_node_edges(self) -> Mapping[str, NodeEdge]:
        """The nodes that may follow, by id, with their edge annotation."""

    @property
    def end_edge(self) -> NodeEdge | None:
        """The edge to the end, if the node may end the run."""

    @property
    def returns_base_node(self) -> bool:
        """Whether any node of the graph may follow."""


class MermaidGraph(Protocol):
    """What a diagram shows of a node graph (a `railyard.Graph` is one)."""

    @property
    def node_defs(self) -> Mapping[str, MermaidNodeDef]:
        """Every node, by id, in the order they are drawn."""


def generate_code(
    graph: MermaidGraph,
    /,
    *,
    start_node: Sequence[NodeIdent] | NodeIdent | None = None,
    highlighted_nodes: Sequence[NodeIdent] | NodeIdent | None = None,
    highlight_css: str = DEFAULT_HIGHLIGHT_CSS,
    title: str | None = None,
    edge_labels: bool = True,
    notes: bool = True,
    direction: StateDiagramDirection | None = None,
) -> str:
    """The `stateDiagram-v2` text of `graph`.

    A node whose class names `child_graphs` is drawn as a composite state holding the
    diagram of each graph it runs (`railyard.children`).

    Raises:
        LookupError: a start or highlighted node is not in the graph.
    """
    return write_mermaid(
        node_diagram(
            graph,
            start_node=start_node,
            highlighted_nodes=highlighted_nodes,
            highlight_css=highlight_css,
            title=title,
            edge_labels=edge_labels,
            notes=notes,
            direction=direction,
        )
    )


def node_diagram(
    graph: MermaidGraph,
    /,
    *,
    start_node: Sequence[NodeIdent] | NodeIdent | None = None,
    highlighted_nodes: Sequence[NodeIdent] | NodeIdent | None = None,
    highlight_css: str = DEFAULT_HIGHLIGHT_CSS,
    title: str | None = None,
    edge_labels: bool = True,
    notes: bool = True,
    direction: StateDiagramDirection | None = None,
    drawing: frozenset[int] = frozenset(),
) -> Diagram:
    """`generate_code`'s diagram, before it is written; `drawing` holds the graphs it is drawn inside."""
    start_ids = _node_ids(graph, start_node, "Start node")
    highlighted_ids = _node_ids(graph, highlighted_nodes, "Highlighted node")
    states = {
        node_id: State(
            node_id,
            note=_note(node_def.note) if notes and node_def.note else None,
            regions=_child_regions(graph, node_def, node_id, drawing),
        )
        for node_id, node_def in graph.node_defs.items()
    }
    edges: list[Edge] = []
    for node_id, node_def in graph.node_defs.items():
        state = states[node_id]
        if node_id in start_ids:
            edges.append(Edge(START, state))
        next_ids = graph.node_defs if node_def.returns_base_node else node_def.next_node_edges
        for next_id in next_ids:
            edge = node_def.next_node_edges.get(next_id)
            label = edge.label if edge_labels and edge else None
            edges.append(Edge(state, states.get(next_id, State(next_id)), label))
        if node_def.end_edge is not None:
            edges.append(Edge(state, END, node_def.end_edge.label if edge_labels else None))
    return Diagram(
        states=tuple(states.values()),
        edges=tuple(edges),
        title=title,
        direction=direction,
        highlighted=tuple(states[node_id] for node_id in highlighted_ids),
        highlight_css=highlight_css,
    )


def _child_regions(
    graph: MermaidGraph, node_def: MermaidNodeDef, node_id: str, drawing: frozenset[int]
) -> tuple[Diagram, ...]:
    """The diagrams of the child graphs a node's class names (`child_graphs`), none for most nodes."""
    children = getattr(getattr(node_def, "node", None), "child_graphs", ())
    if not children:
        return ()
    from railyard.children import child_regions

    return child_regions(children, node_id, drawing | {id(graph)})


def _note(note: str) -> str:
    # mermaid shows a blank line in a note badly: drop them
    return "\n".join(line for line in note.splitlines() if line.strip())


def _node_ids(graph: MermaidGraph, nodes: Sequence[NodeIdent] | NodeIdent | None, what: str) -> list[str]:
    if nodes is None:
        return []
    items: Sequence[NodeIdent] = [nodes] if isinstance(nodes, (str, type, BaseNode)) else nodes
    ids: list[str] = []
    for item in items:
        node_id = item if isinstance(item, str) else item.get_node_id()
        if node_id not in graph.node_defs:
            raise LookupError(f'{what} "{node_id}" is not in the graph.')
        ids.append(node_id)
    return ids


class MermaidConfig(ImageConfig, total=False):
    """Options of `Graph.mermaid_image` and `Graph.mermaid_save`: the diagram's, then the image's."""

    start_node: Sequence[NodeIdent] | NodeIdent
    """Nodes drawn with an arrow from the start state."""
    highlighted_nodes: Sequence[NodeIdent] | NodeIdent
    """Nodes to highlight."""
    highlight_css: str
    """CSS of highlighted nodes."""
    title: str | None
    """Title of the diagram."""
    edge_labels: bool
    """Whether to show edge labels."""
    notes: bool
    """Whether to show notes."""
    direction: StateDiagramDirection
    """Direction of the diagram."""


_CODE_KEYS = ("start_node", "highlighted_nodes", "highlight_css", "title", "edge_labels", "notes", "direction")


def _code_options(config: MermaidConfig) -> dict[str, Any]:
    """The options of `config` that shape the diagram's text."""
    options: dict[str, Any] = dict(config)
    return {key: options[key] for key in _CODE_KEYS if key in options}


def request_image(graph: MermaidGraph, /, **kwargs: Unpack[MermaidConfig]) -> bytes:
    """Render `graph` as an image with the mermaid rendering service.

    Raises:
        LookupError: a start or highlighted node is not in the graph.
        MermaidServiceError: the service could not be reached, or answered with an error.
    """
    code = generate_code(graph, **_code_options(kwargs))
    return _mermaid_service.request_image(code, **image_options(kwargs))


def save_image(path: Path | str, graph: MermaidGraph, /, **kwargs: Unpack[MermaidConfig]) -> None:
    """Save `graph`'s diagram to `path`: mermaid text for `.md`/`.mmd`, else a rendered image.

    The image format comes from `image_type`, or else from the file suffix.

    Raises:
        LookupError: a start or highlighted node is not in the graph.
        MermaidServiceError: the service could not be reached, or answered with an error.
    """
    code = generate_code(graph, **_code_options(kwargs))
    _mermaid_service.save_image(path, code, **image_options(kwargs))
