"""A map part-way through: the items of a fan-out that have not all become tasks yet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio

from railyard.runtime._tasks import ForkStack

__all__ = ("MapSource",)


@dataclass
class MapSource:
    """A map whose items have not all become tasks yet."""

    fork_id: str
    max_concurrency: int | None
    downstream_join_id: str | None
    items: Iterator[Any] | AsyncIterator[Any]
    fork_stack: ForkStack
    node_run_id: str
    is_async: bool
    index: int = 0
    done: bool = False
    waiting: anyio.Event | None = None

    def inside(self, fork_run_id: str) -> bool:
        """Whether this map runs inside fork run `fork_run_id`, or is it."""
        return self.node_run_id == fork_run_id or any(item.node_run_id == fork_run_id for item in self.fork_stack)
