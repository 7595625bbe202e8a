"""`pydantic_graph.persistence` for code written against pydantic-graph 0.0.40, which added it.

The same classes as `railyard.persistence`: a `railyard.v0` graph records into them alike.
"""

from __future__ import annotations

from railyard.persistence import (
    BaseStatePersistence,
    EndSnapshot,
    NodeSnapshot,
    RunEndT,
    Snapshot,
    SnapshotStatus,
    StateT,
    build_snapshot_list_type_adapter,
)

__all__ = (
    "BaseStatePersistence",
    "EndSnapshot",
    "NodeSnapshot",
    "RunEndT",
    "Snapshot",
    "SnapshotStatus",
    "StateT",
    "build_snapshot_list_type_adapter",
)
