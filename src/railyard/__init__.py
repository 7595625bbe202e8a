"""railyard: typed, async graph workflows and state machines.

Describe a workflow as `BaseNode` classes whose return type hints are its edges, put
them in a `Graph`, and run it: to the end with `Graph.run`, or step by step with
`Graph.iter`.
"""

from railyard.exceptions import GraphNodeStatusError, GraphRuntimeError, GraphSetupError, RailyardError
from railyard.graph import Graph, GraphRun, GraphRunResult
from railyard.nodes import BaseNode, Edge, End, GraphRunContext
from railyard.persistence import EndSnapshot, NodeSnapshot, Snapshot
from railyard.persistence.file import FileStatePersistence
from railyard.persistence.in_mem import FullStatePersistence, SimpleStatePersistence

__all__ = (
    "BaseNode",
    "Edge",
    "End",
    "EndSnapshot",
    "FileStatePersistence",
    "FullStatePersistence",
    "Graph",
    "GraphNodeStatusError",
    "GraphRun",
    "GraphRunContext",
    "GraphRunResult",
    "GraphRuntimeError",
    "GraphSetupError",
    "NodeSnapshot",
    "RailyardError",
    "SimpleStatePersistence",
    "Snapshot",
)
