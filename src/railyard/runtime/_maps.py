"""Maps part-way through: the items of a fan-out that have not all become tasks yet, and how the loop pulls them."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
from anyio.abc import TaskGroup

from railyard.runtime._joins import JoinKey, JoinState
from railyard.runtime._program import MapItems, Program
from railyard.runtime._tasks import ForkStack, ForkStackItem, Task

if TYPE_CHECKING:
    from railyard.runtime._loop import Loop

__all__ = ("MapSource", "MapSources")


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


class MapSources:
    """The loop's maps: pulling their items as capacity allows, and letting them go.

    A part of `Loop` (its base): the attributes below are the loop's own.
    """

    program: Program
    limit: int | None
    _live: Counter[str]
    _at: Counter[tuple[str, str]]
    """Presences by (fork run id, node id): what keeps a join of that fork run open is where they are."""
    _blocking: Callable[[str], frozenset[str]] | None
    """The program's `join_blocking` (`None`: any presence in a join's fork run keeps it open)."""
    _sources: list[MapSource]
    _pumps: list[anyio.CancelScope]
    _queued: deque[Task]
    _running: dict[str, Task]
    _task_group: TaskGroup | None

    _arrive: Callable[[str, Any], None]
    """Hands the driver what happened (the loop's)."""
    _open_join: Callable[[str, JoinKey, ForkStack], JoinState | None]
    """The join's accumulator, opened if need be (the loop's)."""

    # -- live counts: a fork run is finished when no task, map or open join is left in it ---

    def _count(self, tasks: Sequence[Task]) -> None:
        live = self._live
        for task in tasks:
            for item in task.fork_stack:
                live[item.node_run_id] += 1
        if self._blocking is not None:
            self._count_at(tasks, 1)

    def _uncount(self, tasks: Sequence[Task]) -> None:
        live = self._live
        for task in tasks:
            for item in task.fork_stack:
                live[item.node_run_id] -= 1
        if self._blocking is not None:
            self._count_at(tasks, -1)

    def _count_at(self, tasks: Sequence[Task], change: int) -> None:
        """Where the tasks are, per fork run (kept only when a join's program asks, see `_blocking`)."""
        at = self._at
        for task in tasks:
            node_id = task.node_id
            for item in task.fork_stack:
                at[item.node_run_id, node_id] += change

    def _map(self, task: Task, spec: MapItems) -> None:
        items = spec.items
        is_async = isinstance(items, AsyncIterator)
        source = MapSource(
            spec.fork_id,
            spec.max_concurrency,
            spec.downstream_join_id,
            items,  # type: ignore[arg-type]  # the program hands over an iterator
            task.fork_stack,
            task.task_id,  # the map's task names its branches (so a resume can find them)
            is_async=is_async,
        )
        self._hold_source(source)
        self._sources.append(source)
        if is_async:
            assert self._task_group is not None
            self._task_group.start_soon(self._pump, source)

    def _hold_source(self, source: MapSource) -> None:
        """A map holds its fork and the forks around it open until it is exhausted (it is at its fork node)."""
        self._present(source, 1)

    def _release_source(self, source: MapSource) -> None:
        source.done = True
        self._sources.remove(source)
        self._present(source, -1)

    def _present(self, source: MapSource, change: int) -> None:
        live = self._live
        for item in source.fork_stack:
            live[item.node_run_id] += change
        live[source.node_run_id] += change
        if self._blocking is not None:
            at, node_id = self._at, source.fork_id
            for item in source.fork_stack:
                at[item.node_run_id, node_id] += change
            at[source.node_run_id, node_id] += change

    def _reserve(self, source: MapSource, change: int) -> None:
        """An item pulled from an async map counts in the map's own run until its tasks do."""
        self._live[source.node_run_id] += change
        if self._blocking is not None:
            self._at[source.node_run_id, source.fork_id] += change

    def _map_capacity(self, source: MapSource, pulled: int = 0) -> bool:
        limit = source.max_concurrency
        if limit is not None and self._live[source.node_run_id] - 1 >= limit:  # less the map's own hold
            return False
        return self.limit is None or len(self._running) + len(self._queued) + pulled < self.limit

    def _pull_sync_items(self) -> list[Task]:
        produced: list[Task] = []
        if not self._sources:
            return produced
        for source in list(self._sources):
            if source.is_async or source.done:
                continue
            while self._map_capacity(source, len(produced)):
                items = source.items
                assert isinstance(items, Iterator)
                try:
                    item = next(items)
                except StopIteration:
                    self._source_done(source)
                    break
                produced += self._map_item(source, item)
        return produced

    async def _pump(self, source: MapSource) -> None:
        """Pull an async iterable's items as capacity allows, handing each to the run."""
        items: AsyncIterator[Any] = source.items  # type: ignore[assignment]
        scope = anyio.CancelScope()
        self._pumps.append(scope)
        try:
            with scope:
                async for item in items:
                    while not self._map_capacity(source) and not source.done:
                        source.waiting = anyio.Event()
                        await source.waiting.wait()
                    if source.done:  # cancelled: its fork was cut short
                        return
                    self._reserve(source, 1)  # the item counts at once, so capacity holds
                    self._arrive("item", (source, item))
                    await anyio.lowlevel.checkpoint()
                self._arrive("source_done", source)
        finally:
            self._pumps.remove(scope)

    def _async_sources_busy(self) -> bool:
        return any(source.is_async and not source.done for source in self._sources)

    def _map_item(self, source: MapSource, item: Any) -> list[Task]:
        stack = (*source.fork_stack, ForkStackItem(source.fork_id, source.node_run_id, source.index))
        source.index += 1
        tasks = self.program.follow(source.fork_id, item, stack, cast("Loop", self))
        self._count(tasks)
        if source.is_async:
            self._reserve(source, -1)  # the pump's reservation, now held by the tasks
            if source.done:
                self._uncount(tasks)
                return []
        return tasks

    def _source_done(self, source: MapSource) -> list[Task]:
        if source.done:
            return []
        if source.index == 0 and source.downstream_join_id is not None:
            # mapping nothing: the join downstream still produces its initial value, for this
            # run of the map (as if a branch of it had arrived)
            inside = (*source.fork_stack, ForkStackItem(source.fork_id, source.node_run_id, -1))
            key, downstream = self.program.join_key(source.downstream_join_id, inside)
            self._open_join(source.downstream_join_id, key, downstream)
        self._release_source(source)
        return []
