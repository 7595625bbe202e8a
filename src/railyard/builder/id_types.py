"""The id types of builder graphs (all strings at runtime)."""

from __future__ import annotations

from typing import NewType

from railyard.runtime._tasks import ForkStack, ForkStackItem

__all__ = ("ForkID", "ForkStack", "ForkStackItem", "JoinID", "NodeID", "NodeRunID", "TaskID")

NodeID = NewType("NodeID", str)
"""The id of a node of a graph."""
NodeRunID = NewType("NodeRunID", str)
"""The id of one execution of a fork."""
TaskID = NewType("TaskID", str)
"""The id of one task of a run."""
JoinID = NodeID
"""The id of a join node."""
ForkID = NodeID
"""The id of a fork node."""
