"""A join's accumulator: the value reduced so far for one join in one run of its fork."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ("JoinKey", "JoinState", "closing_id", "join_holds")

JoinKey = tuple[str, str]
"""A join instance: (join id, node run id of the fork whose branches it collects)."""


@dataclass
class JoinState:
    """The state of one join while its branches arrive."""

    current: Any
    """The value reduced so far."""
    downstream_fork_stack: tuple[Any, ...]
    """The fork stack the joined value continues with."""
    cancelled_sibling_tasks: bool = False
    """Whether a reducer has cancelled the branches still running."""


def closing_id(join_id: str, fork_run_id: str) -> str:
    """The id under which a join instance's closing (its value going on) is recorded."""
    return f"join:{join_id}:{fork_run_id}"


def join_holds(key: JoinKey, downstream: tuple[Any, ...]) -> tuple[Any, ...]:
    """The forks around a join's own fork, which an open join keeps from finishing."""
    return tuple(item for item in downstream if item.node_run_id != key[1])
