"""Running async code from sync code: the `run_sync` methods' shared guard, and this thread's loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ("get_event_loop", "refuse_running_loop")


def get_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop of this thread: the running or set one, else a new loop, set as this thread's loop."""
    import asyncio
    import warnings

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        with warnings.catch_warnings():  # Python 3.12+ warns where it would make the loop implicitly
            warnings.simplefilter("ignore", DeprecationWarning)
            return asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # a thread other than the main one has no loop until one is set
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop


def refuse_running_loop(method: str, instead: str) -> None:
    """Raise if an event loop runs in this thread, where `method` (a `run_sync`) would block it.

    Raises:
        RuntimeError: naming `method` and what to call instead (`instead`).
    """
    import asyncio  # here, not at the top: `import railyard` does not need asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{method} cannot be called from a running event loop (it would block the loop). Use `{instead}` instead."
    )
