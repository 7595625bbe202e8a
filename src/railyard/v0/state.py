"""`pydantic_graph.state` as pydantic-graph 0.0.x had it: the run history's steps."""

from __future__ import annotations

from railyard._node_schema import CustomNodeSchema
from railyard.state import EndStep, HistoryStep, NodeStep, RunEndT, StateT, deep_copy_state
from railyard.v0.nodes import BaseNode, End

__all__ = (
    "BaseNode",
    "CustomNodeSchema",
    "End",
    "EndStep",
    "HistoryStep",
    "NodeStep",
    "RunEndT",
    "StateT",
    "deep_copy_state",
)
