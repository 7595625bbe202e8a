"""The id types of builder graphs (all strings at runtime), and the placeholder ids of unnamed nodes."""

from __future__ import annotations

import re
from typing import NewType

from railyard._ids import new_hex_id
from railyard.runtime._tasks import ForkStack, ForkStackItem

__all__ = (
    "ForkID",
    "ForkStack",
    "ForkStackItem",
    "JoinID",
    "NodeID",
    "NodeRunID",
    "TaskID",
    "generate_placeholder_node_id",
    "replace_placeholder_id",
)

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

PLACEHOLDER_PREFIX = "__placeholder__"
"""Ids starting with this are given to unnamed forks, decisions and joins, and replaced at build time."""
_PLACEHOLDER = re.compile(rf"{PLACEHOLDER_PREFIX}:([^:]+):.*")


def generate_placeholder_node_id(label: str) -> str:
    """A node id to be replaced at build time by `label`, `label_2`, ... (unique per call)."""
    return f"{PLACEHOLDER_PREFIX}:{label}:{new_hex_id()}"


def replace_placeholder_id(node_id: str) -> str:
    """The label inside a placeholder id (`node_id` itself when it is not one)."""
    return _PLACEHOLDER.sub(r"\1", node_id)
