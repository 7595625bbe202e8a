"""`pydantic_graph.exceptions` as pydantic-graph 0.0.x had it."""

from __future__ import annotations

from railyard.exceptions import GraphRuntimeError, GraphSetupError

__all__ = ("GraphRuntimeError", "GraphSetupError")
