"""Running async code from sync code: the `run_sync` methods' shared guard."""

from __future__ import annotations

__all__ = ("refuse_running_loop",)


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
