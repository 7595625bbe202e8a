"""The end of a run: what a node returns to finish it, carrying the run's output.

It is the node API's `End` (re-exported by `railyard`); the loop and the run log use it
for every kind of run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Generic

from typing_extensions import TypeVar

from railyard._ids import new_snapshot_id

__all__ = ("End", "RunEndT")

RunEndT = TypeVar("RunEndT", covariant=True, default=None)
"""Type of a graph run's final result."""
_SNAPSHOT_KEY = "__snapshot_id"


@dataclass
class End(Generic[RunEndT]):
    """Returned by a node to end the run with `data` as its result."""

    data: RunEndT
    """The result of the run."""

    def deep_copy_data(self) -> End[RunEndT]:
        """A copy of this `End` whose data is deep-copied (snapshot id kept)."""
        end = End(copy.deepcopy(self.data))
        snapshot_id = self.__dict__.get(_SNAPSHOT_KEY)
        if snapshot_id is not None:
            end.set_snapshot_id(snapshot_id)
        return end

    def get_snapshot_id(self) -> str:
        """The id of this end's snapshot in the run's history, created on first use."""
        snapshot_id: str | None = self.__dict__.get(_SNAPSHOT_KEY)
        if snapshot_id is None:
            snapshot_id = self.__dict__[_SNAPSHOT_KEY] = new_snapshot_id("end")
        return snapshot_id

    def set_snapshot_id(self, snapshot_id: str) -> None:
        """Set the id of this end's snapshot."""
        self.__dict__[_SNAPSHOT_KEY] = snapshot_id


End.__module__ = "railyard.nodes"  # where users import it from, and where reprs and docs say it lives
