"""Mermaid diagrams of builder graphs: forks, joins, decisions and labels.

`render` gives the `stateDiagram-v2` text pydantic-graph's builder graphs give;
`mermaid_image` and `mermaid_save` (railyard additions) send that text to the mermaid
rendering service the node API uses, with the same image options. Builder graphs and
node graphs are drawn through one diagram model.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path as FilePath
from typing import Any, Protocol

from typing_extensions import Unpack

from railyard import _mermaid_service
from railyard._diagram import END, START, Diagram, Edge, Layout, State, StateDiagramDirection, StateKind, write_mermaid
from railyard._mermaid_service import ImageConfig, image_options
from railyard.builder.decision import Decision
from railyard.builder.join import Join
from railyard.builder.node import END_ID, START_ID, Fork
from railyard.builder.paths import DestinationMarker, LabelMarker, Path
from railyard.builder.step import Step

__all__ = ("MermaidConfig", "MermaidGraph", "mermaid_image", "mermaid_save", "render")


class MermaidGraph(Protocol):
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


def _edges(graph: MermaidGraph, source: str) -> list[tuple[str, str | None]]:
    edges: list[tuple[str, str | None]] = []
    for path in graph.edges_by_source.get(source, []):
        label: str | None = None
        for item in path.items:
            if isinstance(item, LabelMarker):
                label = item.label
            elif isinstance(item, DestinationMarker):
                edges.append((item.destination_id, label))
    return sorted(edges, key=lambda edge: (edge[0] == END_ID, edge[0]))  # by id, the end last


def _order(graph: MermaidGraph) -> list[str]:
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


def _state(node_id: str, node: object) -> State:
    if isinstance(node, Fork):
        return State(node_id, StateKind.FORK)
    if isinstance(node, Join):
        return State(node_id, StateKind.JOIN)
    if isinstance(node, Decision):
        return State(node_id, StateKind.CHOICE, note=node.note or None)
    if isinstance(node, Step):
        return State(node_id, label=node.label or None)
    return State(node_id)


def _diagram_of(graph: MermaidGraph, *, title: str | None = None, direction: str | None = None) -> Diagram:
    """The diagram model of `graph`: every node declared, then every edge, both in `render`'s order."""
    order = _order(graph)
    states = {
        node_id: _state(node_id, node)
        for node_id in order
        if node_id not in (START_ID, END_ID) and (node := graph.nodes.get(node_id)) is not None
    }

    def state(node_id: str) -> State:
        if node_id == START_ID:
            return START
        if node_id == END_ID:
            return END
        return states.get(node_id, State(node_id))

    edges = tuple(
        Edge(state(source), state(destination), label)
        for source in order
        for destination, label in _edges(graph, source)
    )
    return Diagram(
        states=tuple(states.values()),
        edges=edges,
        layout=Layout.DECLARED,
        title=title,
        direction=direction or None,
    )


def render(graph: MermaidGraph, *, title: str | None = None, direction: str | None = None) -> str:
    """The graph as a `stateDiagram-v2`: nodes in breadth-first order from the start, then edges."""
    return write_mermaid(_diagram_of(graph, title=title, direction=direction))


_OPTIONS = MermaidConfig.__optional_keys__


def _check_options(kwargs: Mapping[str, Any], function: str) -> None:
    # `Graph.mermaid_image`/`mermaid_save` pass their options untyped: refuse a typo rather than ignore it
    unknown = sorted(set(kwargs) - _OPTIONS)
    if unknown:
        raise TypeError(
            f"{function}() got an unexpected keyword argument {unknown[0]!r}; "
            f"the options are: {', '.join(sorted(_OPTIONS))}."
        )


def mermaid_image(graph: MermaidGraph, /, **kwargs: Unpack[MermaidConfig]) -> bytes:
    """The graph's diagram (the text of `render`) drawn as an image by the mermaid rendering service.

    A railyard addition: pydantic-graph's builder graphs only `render`. The options are
    the node API's `MermaidConfig` ones that apply: `title` and `direction` go to
    `render` (no title unless given), the rest (`image_type`, `pdf_fit`, `pdf_landscape`,
    `pdf_paper`, `background_color`, `theme`, `width`, `height`, `scale`,
    `httpx_client`, `base_url`) to the service, which is https://mermaid.ink unless
    `base_url` or `RAILYARD_MERMAID_URL` names another. Needs `pip install 'railyard[image]'`.

    Raises:
        TypeError: an option is not one of `MermaidConfig`'s.
        MermaidServiceError: the service could not be reached, or answered with an error.
    """
    _check_options(kwargs, "mermaid_image")
    code = render(graph, title=kwargs.get("title"), direction=kwargs.get("direction"))
    return _mermaid_service.request_image(code, **image_options(kwargs))


def mermaid_save(graph: MermaidGraph, path: FilePath | str, /, **kwargs: Unpack[MermaidConfig]) -> None:
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
