"""Tasks: the unit of work of the runtime.

A task says "run node X with these inputs inside this fork stack". The node API's
inputs are the node instance itself and its fork stack is empty; the builder API
fills both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ("ForkFrame", "Task")


@dataclass(frozen=True, slots=True)
class ForkFrame:
    """One level of the fork stack: which fork started the branch, and which branch it is."""

    fork_id: str
    """The node id of the fork (a broadcast or a map)."""
    fork_run_id: str
    """Identifies this execution of the fork, so nested and repeated forks stay apart."""
    index: int
    """The branch's position among the fork's branches."""


@dataclass(slots=True)
class Task:
    """A unit of work: run `node_id` with `inputs`, inside `fork_stack`."""

    node_id: str
    """The id of the node to run."""
    inputs: Any
    """What the node runs on; for the node API, the node instance itself."""
    task_id: str
    """Unique id of this task; for the node API, the node's snapshot id."""
    fork_stack: tuple[ForkFrame, ...] = ()
    """The forks this task runs inside, outermost first."""
