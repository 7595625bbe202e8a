"""Mermaid diagrams of graphs: `stateDiagram-v2` text, and images from a rendering service.

The text needs nothing beyond railyard. Images come from a mermaid rendering service
over HTTP (the public https://mermaid.ink unless `base_url` or the environment variable
`RAILYARD_MERMAID_URL` names another) and need the `image` extra:
`pip install 'railyard[image]'`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from textwrap import indent
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from annotated_types import Ge, Le
from typing_extensions import TypedDict, Unpack

from railyard.exceptions import MermaidServiceError
from railyard.nodes import BaseNode

if TYPE_CHECKING:
    import httpx

    from railyard.graph import Graph

__all__ = (
    "DEFAULT_BASE_URL",
    "DEFAULT_HIGHLIGHT_CSS",
    "MermaidConfig",
    "NodeIdent",
    "StateDiagramDirection",
    "generate_code",
    "request_image",
    "save_image",
)

DEFAULT_HIGHLIGHT_CSS = "fill:#fdff32"
"""The CSS of highlighted nodes unless `highlight_css` says otherwise."""
DEFAULT_BASE_URL = "https://mermaid.ink"
"""The rendering service used unless `base_url` or `RAILYARD_MERMAID_URL` names another."""

NodeIdent: TypeAlias = "type[BaseNode[Any, Any, Any]] | BaseNode[Any, Any, Any] | str"
"""A node named by its class, an instance, or its id."""
StateDiagramDirection = Literal["TB", "LR", "RL", "BT"]
"""The direction a diagram flows in."""


def generate_code(
    graph: Graph[Any, Any, Any],
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

    Raises:
        LookupError: a start or highlighted node is not in the graph.
    """
    start_ids = _node_ids(graph, start_node, "Start node")
    highlighted_ids = _node_ids(graph, highlighted_nodes, "Highlighted node")
    lines: list[str] = []
    if title:
        lines += ["---", f"title: {title}", "---"]
    lines.append("stateDiagram-v2")
    if direction is not None:
        lines.append(f"  direction {direction}")
    for node_id, node_def in graph.node_defs.items():
        if node_id in start_ids:
            lines.append(f"  [*] --> {node_id}")
        next_ids = graph.node_defs if node_def.returns_base_node else node_def.next_node_edges
        for next_id in next_ids:
            edge = node_def.next_node_edges.get(next_id)
            lines.append(f"  {node_id} --> {next_id}{_label(edge.label if edge else None, edge_labels)}")
        if node_def.end_edge is not None:
            lines.append(f"  {node_id} --> [*]{_label(node_def.end_edge.label, edge_labels)}")
        if notes and node_def.note:
            body = "\n".join(line for line in node_def.note.splitlines() if line.strip())
            lines += [f"  note right of {node_id}", indent(body, "    "), "  end note"]
    if highlighted_ids:
        lines += ["", f"classDef highlighted {highlight_css}"]
        lines += [f"class {node_id} highlighted" for node_id in highlighted_ids]
    return "\n".join(lines)


def _label(label: str | None, show: bool) -> str:
    return f": {label}" if show and label else ""


def _node_ids(graph: Graph[Any, Any, Any], nodes: Sequence[NodeIdent] | NodeIdent | None, what: str) -> list[str]:
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


class MermaidConfig(TypedDict, total=False):
    """Options of `Graph.mermaid_image` and `Graph.mermaid_save`."""

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
    image_type: Literal["jpeg", "png", "webp", "svg", "pdf"]
    """Image format; by default the service's (JPEG), or the file suffix in `mermaid_save`."""
    pdf_fit: bool
    """PDF only: fit the page to the diagram."""
    pdf_landscape: bool
    """PDF only: landscape orientation."""
    pdf_paper: Literal["letter", "legal", "tabloid", "ledger", "a0", "a1", "a2", "a3", "a4", "a5", "a6"]
    """PDF only: paper size."""
    background_color: str
    """Background colour: a hex code, or a named colour prefixed with `!`."""
    theme: Literal["default", "neutral", "dark", "forest"]
    """Mermaid theme."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    scale: Annotated[float, Ge(1), Le(3)]
    """Scale, from 1 to 3; needs `width` or `height`."""
    httpx_client: httpx.Client
    """The HTTP client to send the request with."""
    direction: StateDiagramDirection
    """Direction of the diagram."""
    base_url: str
    """Base URL of the rendering service."""


_CODE_KEYS = ("start_node", "highlighted_nodes", "highlight_css", "title", "edge_labels", "notes", "direction")


def _code_options(config: MermaidConfig) -> dict[str, Any]:
    """The options of `config` that shape the diagram's text."""
    options: dict[str, Any] = dict(config)
    return {key: options[key] for key in _CODE_KEYS if key in options}


def request_image(graph: Graph[Any, Any, Any], /, **kwargs: Unpack[MermaidConfig]) -> bytes:
    """Render `graph` as an image with the mermaid rendering service.

    Raises:
        MermaidServiceError: the service could not be reached, or answered with an error.
    """
    try:
        import httpx
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise MermaidServiceError("Rendering mermaid images needs httpx: pip install 'railyard[image]'") from None
    code = generate_code(graph, **_code_options(kwargs))
    base_url = (kwargs.get("base_url") or os.environ.get("RAILYARD_MERMAID_URL") or DEFAULT_BASE_URL).rstrip("/")
    image_type = kwargs.get("image_type")
    encoded = base64.b64encode(code.encode()).decode()
    endpoint = image_type if image_type in ("svg", "pdf") else "img"
    url = f"{base_url}/{endpoint}/{encoded}"
    params: dict[str, str] = {}
    if image_type not in (None, "svg", "pdf"):
        params["type"] = str(image_type)
    if image_type == "pdf":
        if kwargs.get("pdf_fit"):
            params["fit"] = ""
        if kwargs.get("pdf_landscape"):
            params["landscape"] = ""
        if paper := kwargs.get("pdf_paper"):
            params["paper"] = paper
    for key, param in (
        ("background_color", "bgColor"),
        ("theme", "theme"),
        ("width", "width"),
        ("height", "height"),
        ("scale", "scale"),
    ):
        if value := kwargs.get(key):
            params[param] = str(value)
    given = kwargs.get("httpx_client")
    try:
        if given is not None:
            response = given.get(url, params=params)
        else:
            with httpx.Client() as client:
                response = client.get(url, params=params)
    except httpx.HTTPError as err:
        raise MermaidServiceError(
            f"Could not reach the mermaid rendering service at {base_url}: {err}. Check the network, "
            f"or point base_url= (or RAILYARD_MERMAID_URL) at a reachable service."
        ) from err
    if not response.is_success:
        raise MermaidServiceError(f"{response.status_code} error generating image:\n{response.text}")
    return response.content


def save_image(path: Path | str, graph: Graph[Any, Any, Any], /, **kwargs: Unpack[MermaidConfig]) -> None:
    """Save `graph`'s diagram to `path`: mermaid text for `.md`/`.mmd`, else a rendered image.

    The image format comes from `image_type`, or else from the file suffix.

    Raises:
        MermaidServiceError: the service could not be reached, or answered with an error.
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("mmd", "mermaid", "md") and "image_type" not in kwargs:
        path.write_text(generate_code(graph, **_code_options(kwargs)))
        return
    if "image_type" not in kwargs and suffix in ("png", "webp", "svg", "pdf"):
        kwargs["image_type"] = suffix  # type: ignore[typeddict-item]
    path.write_bytes(request_image(graph, **kwargs))
