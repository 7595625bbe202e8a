"""The structural nodes of a builder graph: its start, its end, and forks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic

from typing_extensions import TypeVar

from railyard.builder.id_types import ForkID, JoinID, NodeID

__all__ = (
    "END_ID",
    "START_ID",
    "EndNode",
    "Fork",
    "ForkID",
    "InputT",
    "JoinID",
    "NodeID",
    "OutputT",
    "StartNode",
    "StateT",
)

StateT = TypeVar("StateT", default=Any)
"""The run's state type."""
OutputT = TypeVar("OutputT", default=object)
"""The type of the value a node gives."""
InputT = TypeVar("InputT", default=object)
"""The type of the value a node takes."""

START_ID = "__start__"
"""The node id of a graph's start."""
END_ID = "__end__"
"""The node id of a graph's end."""


class StartNode(Generic[OutputT]):
    """Where a run begins; the run's `inputs` flow out of it. It is the outermost fork."""

    id: ClassVar[str] = START_ID


class EndNode(Generic[InputT]):
    """Where a run ends; the value flowing into it is the run's output."""

    id: ClassVar[str] = END_ID


@dataclass
class Fork(Generic[InputT, OutputT]):
    """Splits a value into branches: one per item (a map) or one per destination (a broadcast)."""

    id: str
    """The fork's node id."""
    is_map: bool
    """Whether each item of the value gets a branch (a map), rather than each destination."""
    downstream_join_id: str | None = None
    """The join a map feeds, so that mapping nothing still gives that join's initial value."""
    max_concurrency: int | None = None
    """At most this many of the fork's branches run at once (`None`: no limit of its own)."""
    on_error: str = "raise"
    """A map's: `"collect"` sends a failed branch to its join as an `ItemFailure`; `"raise"` stops the run."""

    def __repr__(self) -> str:
        return f"Fork(id={self.id!r}, is_map={self.is_map!r}, downstream_join_id={self.downstream_join_id!r})"
