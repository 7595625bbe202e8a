"""The event loop `Agent.run_sync` runs on: one per thread, kept from one call to the next."""

from __future__ import annotations

import asyncio
import threading

__all__ = ("thread_loop",)


class _LoopHolder:
    """A thread's event loop for `run_sync`, closed when the thread ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        if not self.loop.is_running():
            self.loop.close()


_loops = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """The event loop `run_sync` uses in this thread: one for all its calls.

    Reusing it keeps objects bound to a loop (an `httpx.AsyncClient` given to a model,
    a connection pool in deps) working from one `run_sync` call to the next.
    """
    holder: _LoopHolder | None = getattr(_loops, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _loops.holder = _LoopHolder()
    return holder.loop
