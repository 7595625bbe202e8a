"""Mermaid diagrams of builder graphs: forks, joins, decisions and labels.

`render` gives the `stateDiagram-v2` text pydantic-graph's builder graphs give;
`mermaid_image` and `mermaid_save` (railyard additions) send that text to the mermaid
rendering service the node API uses, with the same image options. Builder graphs and
node graphs are drawn through one diagram model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, Literal, Protocol

from typing_extensions import Unpack

from railyard import _mermaid_service
from railyard._diagram import END, START, Diagram, Edge, Layout, State, StateDiagramDirection, StateKind, write_mermaid
from railyard._mermaid_service import ImageConfig, image_options
from railyard.builder.decision import Decision
from railyard.builder.id_types import NodeID
from railyard.builder.join import Join
from railyard.builder.node import END_ID, START_ID, EndNode, Fork, StartNode
from railyard.builder.node_types import AnyNode
from railyard.builder.paths import BroadcastMarker, DestinationMarker, LabelMarker, MapMarker, Path
from railyard.builder.step import NodeStep, Step

__all__ = (
    "DEFAULT_HIGHLIGHT_CSS",
    "AnyNode",
    "BroadcastMarker",
    "EndNode",
    "MapMarker",
    "NodeID",
    "StartNode",
    "MermaidConfig",
    "MermaidEdge",
    "MermaidGraph",
    "MermaidNode",
    "NodeKind",
    "StateDiagramDirection",
    "build_mermaid_graph",
    "mermaid_image",
    "mermaid_save",
    "render",
)

DEFAULT_HIGHLIGHT_CSS = "fill:#fdff32"
"""The CSS mermaid diagrams highlight nodes with."""


class _Drawable(Protocol):
    """What a diagram shows of a builder graph (a `railyard.builder.Graph` is one)."""

    @property
    def nodes(self) -> Mapping[str, Any]:
        """Every node, by id: start, steps, forks, decisions, joins, end."""

    @property
    def edges_by_source(self) -> Mapping[str, Sequence[Path]]:
        """The paths leaving each node."""


class MermaidConfig(ImageConfig, total=False):
    """Options of a builder graph's `mermaid_image` and `mermaid_save`: `render`'s, then the image's."""

    title: str | None
    """Title of the diagram."""
    direction: StateDiagramDirection
    """Direction of the diagram."""


NodeKind = Literal["broadcast", "map", "join", "start", "end", "step", "decision"]
"""What a node of a diagram is."""

_KINDS: dict[str, StateKind] = {
    "broadcast": StateKind.FORK,
    "map": StateKind.FORK,
    "join": StateKind.JOIN,
    "decision": StateKind.CHOICE,
    "step": StateKind.PLAIN,
    "start": StateKind.START,
    "end": StateKind.END,
}


@dataclass
class MermaidNode:
    """A node of a diagram."""

    id: str
    """The node's id."""
    kind: NodeKind
    """What it is."""
    label: str | None
    """A step's label, shown in place of its id."""
    note: str | None
    """A decision's note."""
    regions: tuple[Diagram, ...] = field(default=(), repr=False, compare=False)
    """The diagrams of the child graphs a step runs (`@g.step(child_graphs=...)`), drawn inside it."""


@dataclass
class MermaidEdge:
    """An edge of a diagram."""

    start_id: str
    """Where the edge starts."""
    end_id: str
    """Where it leads."""
    label: str | None
    """The edge's label."""


@dataclass
class MermaidGraph:
    """A builder graph's diagram: its nodes and edges in the order they are drawn."""

    nodes: list[MermaidNode]
    """The nodes, the start and the end among them."""
    edges: list[MermaidEdge]
    """The edges."""
    title: str | None = None
    """The diagram's title (`render`'s `title` wins when given)."""
    direction: StateDiagramDirection | None = None
    """Which way the diagram flows (`render`'s `direction` wins when given)."""

    def render(
        self,
        direction: StateDiagramDirection | None = None,
        title: str | None = None,
        edge_labels: bool = True,
    ) -> str:
        """The diagram as a mermaid `stateDiagram-v2`: every node declared, then every edge."""
        return write_mermaid(self._diagram(direction=direction, title=title, edge_labels=edge_labels))

    def _diagram(self, *, direction: str | None = None, title: str | None = None, edge_labels: bool = True) -> Diagram:
        states = {
            node.id: State(node.id, _KINDS[node.kind], label=node.label, note=node.note, regions=node.regions)
            for node in self.nodes
        }

        def state(node_id: str) -> State:
            if node_id == START_ID:
                return START
            if node_id == END_ID:
                return END
            return states.get(node_id, State(node_id))

        return Diagram(
            states=tuple(s for s in states.values() if s.kind not in (StateKind.START, StateKind.END)),
            edges=tuple(Edge(state(e.start_id), state(e.end_id), e.label if edge_labels else None) for e in self.edges),
            layout=Layout.DECLARED,
            title=title or self.title,
            direction=direction or self.direction or None,
        )


def _edges(graph: _Drawable, source: str) -> list[tuple[str, str | None]]:
    edges: list[tuple[str, str | None]] = []
    for path in graph.edges_by_source.get(source, []):
        label: str | None = None
        for item in path.items:
            if isinstance(item, LabelMarker):
                label = item.label
            elif isinstance(item, DestinationMarker):
                edges.append((item.destination_id, label))
    return sorted(edges, key=lambda edge: (edge[0] == END_ID, edge[0]))  # by id, the end last


def _order(graph: _Drawable) -> list[str]:
    """Node ids breadth-first from the start, then the ones the start does not reach."""
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
    return order + [node_id for node_id in graph.nodes if node_id not in seen]


def _node(node_id: str, node: object, drawing: frozenset[int] = frozenset()) -> MermaidNode:
    if node_id == START_ID:
        return MermaidNode(node_id, "start", None, None)
    if node_id == END_ID:
        return MermaidNode(node_id, "end", None, None)
    if isinstance(node, Fork):
        return MermaidNode(node_id, "map" if node.is_map else "broadcast", None, None)
    if isinstance(node, Join):
        return MermaidNode(node_id, "join", None, None)
    if isinstance(node, Decision):
        return MermaidNode(node_id, "decision", None, node.note or None)
    label = node.label or None if isinstance(node, Step) else None
    children = node.child_graphs if isinstance(node, Step) else ()
    if not children and isinstance(node, NodeStep):
        children = tuple(node.node_type.child_graphs)  # a node class in a builder graph
    if children:
        from railyard.children import child_regions

        return MermaidNode(node_id, "step", label, None, child_regions(children, node_id, drawing))
    return MermaidNode(node_id, "step", label, None)


def build_mermaid_graph(
    graph: _Drawable | Mapping[str, Any], edges_by_source: Mapping[str, Sequence[Path]] | None = None, /
) -> MermaidGraph:
    """The diagram of a built graph: `build_mermaid_graph(graph)`, or of its `(nodes, edges_by_source)`.

    Nodes come breadth-first from the start (then those it does not reach); each node's
    edges in the order of their destinations' ids, the end last.
    """
    drawable: _Drawable = graph if edges_by_source is None else _Parts(graph, edges_by_source)  # type: ignore[arg-type,assignment]
    return _mermaid_graph(drawable, frozenset({id(graph)}))


def _mermaid_graph(drawable: _Drawable, drawing: frozenset[int]) -> MermaidGraph:
    """`build_mermaid_graph`'s diagram; `drawing` holds the graphs it is drawn inside (and itself)."""
    order = _order(drawable)
    nodes = [_node(node_id, drawable.nodes.get(node_id), drawing) for node_id in order if node_id in drawable.nodes]
    edges = [
        MermaidEdge(source, destination, label) for source in order for destination, label in _edges(drawable, source)
    ]
    return MermaidGraph(nodes, edges)


@dataclass
class _Parts:
    nodes: Mapping[str, Any]
    edges_by_source: Mapping[str, Sequence[Path]]


def builder_diagram(graph: _Drawable, *, drawing: frozenset[int] = frozenset()) -> Diagram:
    """`render`'s diagram, before it is written; `drawing` holds the graphs it is drawn inside."""
    return _mermaid_graph(graph, drawing | {id(graph)})._diagram()  # pyright: ignore[reportPrivateUsage]


def render(graph: _Drawable, *, title: str | None = None, direction: str | None = None) -> str:
    """The graph as a `stateDiagram-v2`: nodes in breadth-first order from the start, then edges."""
    return write_mermaid(build_mermaid_graph(graph)._diagram(title=title, direction=direction))  # pyright: ignore[reportPrivateUsage]


_OPTIONS = MermaidConfig.__optional_keys__


def _check_options(kwargs: Mapping[str, Any], function: str) -> None:
    # `Graph.mermaid_image`/`mermaid_save` pass their options untyped: refuse a typo rather than ignore it
    unknown = sorted(set(kwargs) - _OPTIONS)
    if unknown:
        raise TypeError(
            f"{function}() got an unexpected keyword argument {unknown[0]!r}; "
            f"the options are: {', '.join(sorted(_OPTIONS))}."
        )


def mermaid_image(graph: _Drawable, /, **kwargs: Unpack[MermaidConfig]) -> bytes:
    """The graph's diagram (the text of `render`) drawn as an image by the mermaid rendering service.

    A railyard addition: pydantic-graph's builder graphs only `render`. The options are
    the node API's `MermaidConfig` ones that apply: `title` and `direction` go to
    `render` (no title unless given), the rest (`image_type`, `pdf_fit`, `pdf_landscape`,
    `pdf_paper`, `background_color`, `theme`, `width`, `height`, `scale`,
    `httpx_client`, `base_url`) to the service, which is https://mermaid.ink unless
    `base_url` or `RAILYARD_MERMAID_URL` names another. Needs `pip install 'railyard-graph[image]'`.

    Raises:
        TypeError: an option is not one of `MermaidConfig`'s.
        MermaidServiceError: the service could not be reached, or answered with an error.
    """
    _check_options(kwargs, "mermaid_image")
    code = render(graph, title=kwargs.get("title"), direction=kwargs.get("direction"))
    return _mermaid_service.request_image(code, **image_options(kwargs))


def mermaid_save(graph: _Drawable, path: FilePath | str, /, **kwargs: Unpack[MermaidConfig]) -> None:
    """Save the graph's diagram to `path`: `render`'s text for `.md`/`.mmd`/`.mermaid`, else an image.

    A railyard addition, with `mermaid_image`'s options. The image format comes from
    `image_type`, or else from the file suffix; a text file needs no service.

    Raises:
        TypeError: an option is not one of `MermaidConfig`'s.
        MermaidServiceError: an image was needed and the service could not render it.
    """
    _check_options(kwargs, "mermaid_save")
    code = render(graph, title=kwargs.get("title"), direction=kwargs.get("direction"))
    _mermaid_service.save_image(path, code, **image_options(kwargs))
