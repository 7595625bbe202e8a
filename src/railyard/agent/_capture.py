"""`capture_run_messages`: the messages of the first agent run inside a block, even if it fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from railyard.agent.messages import ModelMessage

__all__ = ("capture_run_messages", "take_capture_list")

_captured: ContextVar[list[list[ModelMessage]] | None] = ContextVar("railyard_captured_messages", default=None)


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
    """
    messages: list[ModelMessage] = []
    token = _captured.set([messages])
    try:
        yield messages
    finally:
        _captured.reset(token)


def take_capture_list() -> list[ModelMessage] | None:
    """The capture block's list, the first time a run asks for it; else None."""
    pending = _captured.get()
    if not pending:
        return None
    return pending.pop()
