"""`pydantic_graph.exceptions` as pydantic-graph 0.0.x had it (with 0.0.40's `GraphNodeStatusError`)."""

from __future__ import annotations

from railyard.exceptions import GraphNodeStatusError, GraphRuntimeError, GraphSetupError

__all__ = ("GraphNodeStatusError", "GraphRuntimeError", "GraphSetupError")
