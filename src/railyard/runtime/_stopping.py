"""Stopping a run from outside its steps: a cancellation another process asked for, and the run timeout.

A part of `Loop` (its base). A watched run (one whose store can pass on a cancellation,
or one with a `run_timeout`) is cancellable as a whole: `cancel` cancels its running steps
where they are (an anyio cancellation), and the driver records the cancellation and raises
`RunCancelled` (`RunTimedOut` for the timeout) at the next place it looks.
"""

from __future__ import annotations

import math
from time import time
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from railyard.runtime._lanes import Lanes
    from railyard.runtime._program import Program
    from railyard.runtime._recorder import Recorder
    from railyard.runtime._tasks import Task

__all__ = ("Stopping",)


class Stopping:
    """The loop's cancellation and run timeout; the attributes below are the loop's own."""

    program: Program
    ctx: Any
    recorder: Recorder | None
    cancel_reason: str | None
    run_timeout: float | None
    started_at: float
    _timed_out: bool
    _cancel_recorded: bool
    _own: anyio.CancelScope | None
    _lanes: Lanes
    _pumps: list[anyio.CancelScope]

    if TYPE_CHECKING:  # the loop's own

        def _arrive(self, kind: str, payload: Any) -> None: ...

        def stop(self) -> None: ...

        async def _step(self, task: Task) -> Any: ...

    def cancel(self, reason: str) -> None:
        """Cancel the run at once: its running steps get an anyio cancellation, and the driver stops.

        The driver records the cancellation and raises `RunCancelled` from `advance`. Called
        when the store says another process asked to cancel the run (`railyard.cancel`).
        """
        if self.cancel_reason is not None:
            return
        self.cancel_reason = reason
        self._lanes.cancel_all()
        for scope in self._pumps:
            scope.cancel()
        if self._own is not None:
            self._own.cancel()
        self._arrive("cancelled", reason)

    def _deadline(self) -> float:
        """The run timeout's deadline on anyio's clock (`inf`: none)."""
        if self.run_timeout is None:
            return math.inf
        return anyio.current_time() + (self.started_at + self.run_timeout - time())

    def _time_out(self) -> None:
        """The run took longer than its run timeout: stop it as a cancellation."""
        if self.cancel_reason is None and self.run_timeout is not None:
            self._timed_out = True
            self.cancel(f"ran longer than its run_timeout of {self.run_timeout:g} s")

    async def _cancelled(self) -> BaseException:
        """Record the run's cancellation (once) and make the error the driver raises."""
        from railyard.exceptions import RunCancelled, RunTimedOut

        reason = self.cancel_reason or "cancelled"
        self.stop()
        recorder = self.recorder
        if not self._cancel_recorded:
            self._cancel_recorded = True
            record = getattr(recorder, "run_cancelled", None)
            if record is not None:
                await record(reason)
        where = repr(getattr(recorder, "store", f"graph {self.program.name!r}"))
        if self._timed_out and self.run_timeout is not None:
            return RunTimedOut(self.ctx.run_id, where, self.run_timeout)
        return RunCancelled(self.ctx.run_id, where, reason)

    async def _own_step(self, task: Task) -> Any:
        """Run a step in the driver's own task, cancellable from outside (a watched run's)."""
        if self._own is not None:  # inside a drive that is cancellable as a whole (`run_to_end`)
            return await self._step(task)
        with anyio.CancelScope(deadline=self._deadline()) as scope:
            self._own = scope
            try:
                return await self._step(task)
            finally:
                self._own = None
        self._time_out()  # the scope took the cancellation (or its deadline passed): the run stops here
        raise await self._cancelled()
