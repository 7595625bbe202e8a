"""Lanes: the tasks a run's steps run in, opened as steps need them.

A lane is a task of the event loop that takes steps waiting to start and runs them one
after another, each from its start to its end (so a step sees one task throughout:
cancel scopes, task groups, locks and timeouts work in it as anywhere). Whenever a step
is waiting and no lane is free to take it, a new lane opens: steps that wait on
something run side by side, each in its own lane, while steps that never wait run back
to back in one lane, without a task each.

A lane runs under an anyio cancel scope, so cancelling a step (a first-value join, a
failing sibling, the run's end) keeps its shielded sections; the lane ends with it, and
the steps still waiting go on in another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from railyard.runtime._tasks import Task

__all__ = ("Lanes",)


class Lanes:
    """The lanes of one run: steps waiting to start, and the tasks that run them."""

    __slots__ = ("_aio", "_cancelled", "_deliver", "_group", "_run", "_scopes", "_spare", "tasks", "waiting")

    def __init__(self, run: Callable[[Task], Awaitable[Any]], deliver: Callable[[str, Any], None]) -> None:
        self._run = run
        """Runs one step and returns where it leads (the loop's `_step`)."""
        self._deliver = deliver
        """Hands the driver a step's outcome: `("done", (task, outcome))` or `("error", (task, error))`."""
        self.waiting: deque[Task] = deque()
        """Steps started by the loop that no lane has taken yet."""
        self.tasks: set[asyncio.Task[None]] = set()
        """The open lanes (asyncio: to wait for when the run's block exits)."""
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._spare = 0
        self._aio: asyncio.AbstractEventLoop | None = None
        self._group: TaskGroup | None = None
        self._cancelled: type[BaseException] = asyncio.CancelledError

    def open(self, group: TaskGroup) -> None:
        """Get ready to open lanes: as asyncio tasks on asyncio, in `group` on other backends."""
        try:
            self._aio = asyncio.get_running_loop()
        except RuntimeError:
            self._aio = None
        self._group = group
        self._cancelled = anyio.get_cancelled_exc_class()

    def start(self, task: Task) -> None:
        """Have `task` run in a lane as soon as one is free (a new one opens if none is)."""
        self.waiting.append(task)
        if self._spare == 0:
            self._open()

    def _open(self) -> None:
        self._spare += 1
        if self._aio is not None:
            lane = self._aio.create_task(self._lane(), name="railyard lane")
            self.tasks.add(lane)
            lane.add_done_callback(self.tasks.discard)
        else:
            assert self._group is not None, "the run's `async with` block is open"
            self._group.start_soon(self._lane, name="railyard lane")

    def cancel(self, task: Task) -> None:
        """Cancel `task`: it never starts, or is cancelled where it is (its shielded sections kept)."""
        scope = self._scopes.get(task.task_id)
        if scope is not None:
            scope.cancel()
            return
        with contextlib.suppress(ValueError):  # not waiting: it has finished already
            self.waiting.remove(task)

    def cancel_all(self) -> None:
        """Cancel every step, waiting or running."""
        self.waiting.clear()
        for scope in self._scopes.values():
            scope.cancel()

    async def _lane(self) -> None:
        waiting = self.waiting
        spare = True
        scope = anyio.CancelScope()  # one per lane: cancelling its step ends the lane, not the others
        try:
            with scope:
                while waiting:
                    task = waiting.popleft()
                    if spare:
                        spare = False
                        self._spare -= 1
                    if waiting and self._spare == 0:  # someone must take the next step if this one waits
                        self._open()
                    await self._one(task, scope)
                    if scope.cancel_called:  # its step was cancelled (and may have swallowed it): done
                        break
        finally:
            if spare:
                self._spare -= 1
            elif waiting and self._spare == 0:  # cut short: the steps still waiting need a lane
                self._open()

    async def _one(self, task: Task, scope: anyio.CancelScope) -> None:
        """Run one step (cancelled through its lane's scope) and hand on what came of it."""
        self._scopes[task.task_id] = scope
        try:
            outcome = await self._run(task)
        except self._cancelled:
            raise
        except BaseException as error:  # the driver raises it, whatever it is
            self._deliver("error", (task, error))
            return
        finally:
            del self._scopes[task.task_id]
        self._deliver("done", (task, outcome))
