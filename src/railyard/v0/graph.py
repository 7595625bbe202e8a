"""`pydantic_graph.graph` as pydantic-graph 0.0.x had it: runs that keep their history."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from railyard import graph as _graph
from railyard import nodes as _nodes
from railyard._introspect import UNSET, Unset
from railyard.exceptions import GraphRuntimeError, GraphSetupError
from railyard.nodes import DepsT, End, NodeDef, RunEndT, StateT
from railyard.state import EndStep, HistoryStep, NodeStep, deep_copy_state
from railyard.v0.nodes import BaseNode, GraphRunContext

__all__ = (
    "BaseNode",
    "DepsT",
    "End",
    "EndStep",
    "Graph",
    "GraphRun",
    "GraphRunContext",
    "GraphRunResult",
    "HistoryStep",
    "NodeDef",
    "NodeStep",
    "RunEndT",
    "StateT",
    "T",
    "deep_copy_state",
)

T = TypeVar("T")
"""An invariant type variable."""

GraphRunResult = _graph.GraphRunResult
"""The result of a finished run: its `output`, its final `state` and its `persistence`."""


class GraphRun(_graph.GraphRun[StateT, DepsT, RunEndT]):
    """A run in progress, iterating as pydantic-graph 0.0.x did."""

    async def next(
        self, node: _nodes.BaseNode[StateT, DepsT, RunEndT] | None = None
    ) -> _nodes.BaseNode[StateT, DepsT, Any] | End[RunEndT]:
        """Run `node` (by default `next_node`) and return the node after it, or the `End`.

        Raises:
            GraphRuntimeError: the run has ended, or `node` is an `End`.
        """
        if isinstance(node, End):
            raise GraphRuntimeError(f"Cannot call `next` with an `End` node: {node!r}.")
        if node is None and isinstance(self.next_node, End):
            raise GraphRuntimeError("This graph run has already ended.")
        return await super().next(node)

    async def __anext__(self) -> _nodes.BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]:
        """Run the next node and return what it leads to."""
        if isinstance(self.next_node, End):
            raise StopAsyncIteration
        return await self.next()

    def __repr__(self) -> str:
        return f"<GraphRun name={self.graph.name or '<unnamed>'} step={len(self.history) + 1}>"


class Graph(_graph.Graph[StateT, DepsT, RunEndT], Generic[StateT, DepsT, RunEndT]):
    """A graph of nodes whose runs keep their history and iterate as in pydantic-graph 0.0.x."""

    _history_by_default = True
    _run_class = GraphRun
    _context_class = GraphRunContext

    def _get_state_type(self) -> type[StateT]:
        """The state type, given or read from the nodes' `BaseNode[...]` arguments; `NoneType` if none."""
        state_type = self.inferred_types[0]
        return type(None) if state_type is None else state_type  # type: ignore[return-value]

    def _get_run_end_type(self) -> type[RunEndT]:
        """The result type, given or read from the nodes' `BaseNode[...]` arguments.

        Raises:
            GraphSetupError: it was not given and no node gives `BaseNode` a result type.
        """
        if not isinstance(self._run_end_type, Unset):
            return self._run_end_type
        run_end_type = _graph.generic_run_end_type(self.node_defs.values())
        if run_end_type is UNSET:
            raise GraphSetupError("Could not infer run end type from nodes, please set `run_end_type`.")
        return run_end_type  # type: ignore[no-any-return]
