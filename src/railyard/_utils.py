"""`pydantic_graph._utils.get_event_loop`, which code written for pydantic-graph imports."""

from __future__ import annotations

from railyard._sync import get_event_loop

__all__ = ("get_event_loop",)
