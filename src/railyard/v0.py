"""The node API as pydantic-graph 0.0.x had it (the API of March 2025), for code written then.

Import from here instead of `pydantic_graph` and such code runs unchanged:

```python
from railyard.v0 import BaseNode, End, Graph, GraphRunContext
```

Where it differs from `railyard` (which follows pydantic-graph 1.x):

- `async for node in run` yields the node each step returns, not the start node first.
- Every run keeps its history (`run.history`, `result.history`), with a copy of the state
  after each step, even when no `history=` list is passed.
- `GraphRun` reads `<GraphRun name=NAME step=N>`; calling `next()` on an ended run, or
  with an `End`, raises `GraphRuntimeError`.
- `GraphRunContext(state, deps)` may be called positionally, and a node's id comes from
  `get_id()`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Generic

from railyard import graph as _graph
from railyard import nodes as _nodes
from railyard.exceptions import GraphRuntimeError, GraphSetupError
from railyard.nodes import DepsT, Edge, End, NodeRunEndT, RunEndT, StateT
from railyard.state import EndStep, HistoryStep, NodeStep

__all__ = (
    "BaseNode",
    "Edge",
    "End",
    "EndStep",
    "Graph",
    "GraphRun",
    "GraphRunContext",
    "GraphRunResult",
    "GraphRuntimeError",
    "GraphSetupError",
    "HistoryStep",
    "NodeStep",
)

GraphRunResult = _graph.GraphRunResult


class GraphRunContext(_nodes.GraphRunContext[StateT, DepsT]):
    """What a node's `run` gets: the run's state and dependencies (positional or keyword)."""

    def __init__(self, state: StateT, deps: DepsT) -> None:
        super().__init__(state=state, deps=deps)


class BaseNode(_nodes.BaseNode[StateT, DepsT, NodeRunEndT]):
    """Base class of nodes; a node's id is `get_id()`, the class name unless overridden."""

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
