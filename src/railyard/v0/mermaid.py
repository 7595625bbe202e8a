"""`pydantic_graph.mermaid` as pydantic-graph 0.0.x had it: diagrams of a graph (railyard's own)."""

from __future__ import annotations

from railyard.mermaid import (
    DEFAULT_HIGHLIGHT_CSS,
    MermaidConfig,
    NodeIdent,
    StateDiagramDirection,
    generate_code,
    request_image,
    save_image,
)
from railyard.v0.nodes import BaseNode

__all__ = (
    "BaseNode",
    "DEFAULT_HIGHLIGHT_CSS",
    "MermaidConfig",
    "NodeIdent",
    "StateDiagramDirection",
    "generate_code",
    "request_image",
    "save_image",
)
