"""Tasks: the unit of work of the runtime.

A task says "run node X with these inputs inside this fork stack". The node API's
inputs are the node instance itself and its fork stack is empty; the builder API
fills both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ("ForkStack", "ForkStackItem", "Task")


@dataclass(frozen=True, slots=True)
class ForkStackItem:
    """One level of a task's fork stack: which fork started the branch, and which branch it is."""

    fork_id: str
    """The node id of the fork (a broadcast, a map, or the start of the run)."""
    node_run_id: str
    """Identifies this execution of the fork, so nested and repeated forks stay apart."""
    thread_index: int
    """The branch's position among the fork's branches."""


ForkStack = tuple[ForkStackItem, ...]
"""The forks a task runs inside, outermost first."""


@dataclass(slots=True)
class Task:
    """A unit of work: run `node_id` with `inputs`, inside `fork_stack`."""

    node_id: str
    """The id of the node to run."""
    inputs: Any
    """What the node runs on; for the node API, the node instance itself."""
    fork_stack: ForkStack = field(repr=False)
    """The forks this task runs inside, outermost first (empty for the node API)."""
    task_id: str = field(repr=False)
    """Unique id of this task (within its run and beyond); for the node API, the node's snapshot id."""
