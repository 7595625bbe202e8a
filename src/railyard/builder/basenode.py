"""The node API's classes, where pydantic-graph 2.x keeps them (`pydantic_graph.basenode`)."""

from railyard.nodes import BaseNode, DepsT, Edge, End, GraphRunContext, RunEndT, StateT

__all__ = ("BaseNode", "DepsT", "Edge", "End", "GraphRunContext", "RunEndT", "StateT")
