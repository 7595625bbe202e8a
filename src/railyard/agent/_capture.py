"""`capture_run_messages`: the messages of the first agent run inside a block, even if it fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from railyard.agent.messages import ModelMessage

__all__ = ("capture_run_messages", "take_capture_list")


@dataclass
class _Capture:
    messages: list[ModelMessage]
    taken: bool = False


_captured: ContextVar[_Capture | None] = ContextVar("railyard_captured_messages", default=None)


@contextmanager
def capture_run_messages() -> Iterator[list[ModelMessage]]:
    """Give a list that the first agent run inside the block fills with its messages.

    Useful to see what was said when a run fails:

    ```python
    with capture_run_messages() as messages:
        try:
            agent.run_sync("q")
        except UnexpectedModelBehavior:
            print(messages)
    ```

    A block inside another gives the outer block's list (still filled by the first run).
    """
    outer = _captured.get()
    if outer is not None:
        yield outer.messages
        return
    capture = _Capture([])
    token = _captured.set(capture)
    try:
        yield capture.messages
    finally:
        _captured.reset(token)


def take_capture_list() -> list[ModelMessage] | None:
    """The capture block's list, the first time a run asks for it; else None."""
    capture = _captured.get()
    if capture is None or capture.taken:
        return None
    capture.taken = True
    return capture.messages
