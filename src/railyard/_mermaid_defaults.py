"""The diagram defaults public signatures show, apart from the diagram code.

`Graph.mermaid_code(highlight_css=DEFAULT_HIGHLIGHT_CSS)` names this default in its
signature; keeping it here lets `railyard.graph` do so without importing the diagram
code and the rendering service, which load when a diagram is first drawn.
"""

from __future__ import annotations

__all__ = ("DEFAULT_HIGHLIGHT_CSS",)

DEFAULT_HIGHLIGHT_CSS = "fill:#fdff32"
"""The CSS of highlighted states unless a diagram says otherwise."""
