"""The builder API's exceptions, where pydantic-graph keeps them (`pydantic_graph.exceptions`)."""

from railyard.exceptions import GraphBuildingError, GraphRuntimeError, GraphSetupError, GraphValidationError

__all__ = ("GraphBuildingError", "GraphRuntimeError", "GraphSetupError", "GraphValidationError")
