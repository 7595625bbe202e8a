"""`pydantic_graph.nodes` as pydantic-graph 0.0.x had it: `BaseNode`, `End`, `Edge`, `GraphRunContext`."""

from __future__ import annotations

import sys
from abc import abstractmethod
from typing import Any, ClassVar

from railyard import nodes as _nodes
from railyard._ids import default_snapshot_id, register_nodes
from railyard.nodes import DepsT, Edge, End, NodeDef, NodeRunEndT, RunEndT, StateT

__all__ = ("BaseNode", "DepsT", "Edge", "End", "GraphRunContext", "NodeDef", "NodeRunEndT", "RunEndT", "StateT")

generate_snapshot_id = default_snapshot_id
"""Make a new snapshot id from a node id; patch it (as tests do) for ids like `Node:1`."""
register_nodes(sys.modules[__name__])


class GraphRunContext(_nodes.GraphRunContext[StateT, DepsT]):
    """What a node's `run` gets: the run's state and dependencies (positional or keyword)."""

    def __init__(self, state: StateT, deps: DepsT) -> None:
        super().__init__(state=state, deps=deps)


class BaseNode(_nodes.BaseNode[StateT, DepsT, NodeRunEndT]):
    """Base class of nodes; a node's id is `get_id()`, the class name unless overridden."""

    _stands_for_any_node: ClassVar[bool] = True

    @abstractmethod
    async def run(  # type: ignore[override]  # v0 nodes get the v0 context
        self, ctx: GraphRunContext[StateT, DepsT]
    ) -> _nodes.BaseNode[StateT, DepsT, Any] | End[NodeRunEndT]:
        """Run the node and return the next node to run, or `End` to finish the run."""
        ...

    @classmethod
    def get_id(cls) -> str:
        """The id of this node in its graph; the class name unless overridden."""
        return cls.__name__

    @classmethod
    def get_node_id(cls) -> str:
        """The id of this node in its graph (what `get_id` returns)."""
        return cls.get_id()
