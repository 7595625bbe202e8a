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

The modules are pydantic-graph 0.0.39's (`railyard.v0.nodes`, `.graph`, `.state`,
`.mermaid`, `.exceptions`), plus the `persistence` package 0.0.40 added.
"""

from __future__ import annotations

from railyard.exceptions import GraphRuntimeError, GraphSetupError
from railyard.persistence import EndSnapshot, NodeSnapshot, Snapshot
from railyard.persistence.in_mem import FullStatePersistence, SimpleStatePersistence
from railyard.state import EndStep, HistoryStep, NodeStep
from railyard.v0.graph import Graph, GraphRun, GraphRunResult
from railyard.v0.nodes import BaseNode, Edge, End, GraphRunContext

__all__ = (
    "BaseNode",
    "Edge",
    "End",
    "EndSnapshot",
    "EndStep",
    "FullStatePersistence",
    "Graph",
    "GraphRun",
    "GraphRunContext",
    "GraphRunResult",
    "GraphRuntimeError",
    "GraphSetupError",
    "HistoryStep",
    "NodeSnapshot",
    "NodeStep",
    "SimpleStatePersistence",
    "Snapshot",
)
