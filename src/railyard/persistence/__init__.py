"""pydantic-graph-compatible persistence: snapshots of a run and the classes that keep them.

`NodeSnapshot` and `EndSnapshot` describe a run step by step; `BaseStatePersistence` is
the interface `Graph.run`, `Graph.iter` and `Graph.iter_from_persistence` record into.
The built-in classes (`SimpleStatePersistence`, `FullStatePersistence`,
`FileStatePersistence`) are views over railyard's run log; a user subclass of
`BaseStatePersistence` is called method by method, as pydantic-graph would.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal

from typing_extensions import TypeVar

from railyard._node_schema import CustomNodeSchema
from railyard.nodes import BaseNode, End

if TYPE_CHECKING:
    import pydantic

    from railyard.graph import Graph
    from railyard.runtime._recorder import Recorder

__all__ = (
    "BaseStatePersistence",
    "EndSnapshot",
    "NodeSnapshot",
    "Snapshot",
    "SnapshotStatus",
    "StateT",
    "RunEndT",
    "build_snapshot_list_type_adapter",
)

StateT = TypeVar("StateT", default=Any)
"""Type of the state kept in snapshots."""
RunEndT = TypeVar("RunEndT", default=Any)
"""Type of the run's result kept in end snapshots."""

SnapshotStatus = Literal["created", "pending", "running", "success", "error"]
"""Where a node snapshot stands.

- `created`: recorded, not yet run.
- `pending`: claimed by `load_next`, about to run.
- `running`: its node is running.
- `success`: its node returned.
- `error`: its node raised.
"""

UNSET_SNAPSHOT_ID = "__unset__"


def _now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class NodeSnapshot(Generic[StateT, RunEndT]):
    """A node of a run: the node, the state it runs on, and how its run went."""

    state: StateT
    """The state when the node was recorded, i.e. the state it runs on."""
    node: Annotated[BaseNode[StateT, Any, RunEndT], CustomNodeSchema()]
    """The node to run."""
    start_ts: datetime | None = None
    """When the node started running."""
    duration: float | None = None
    """How long the node ran, in seconds."""
    status: SnapshotStatus = "created"
    """Where the snapshot stands."""
    kind: Literal["node"] = "node"
    """Tag telling node snapshots from end snapshots."""
    id: str = UNSET_SNAPSHOT_ID
    """Unique id of the snapshot; the node's snapshot id."""

    def __post_init__(self) -> None:
        if self.id == UNSET_SNAPSHOT_ID:
            self.id = self.node.get_snapshot_id()


@dataclass(kw_only=True)
class EndSnapshot(Generic[StateT, RunEndT]):
    """The end of a run: its result and final state."""

    state: StateT
    """The final state of the run."""
    result: End[RunEndT]
    """The `End` the run finished with."""
    ts: datetime = field(default_factory=_now_utc)
    """When the run ended."""
    kind: Literal["end"] = "end"
    """Tag telling end snapshots from node snapshots."""
    id: str = UNSET_SNAPSHOT_ID
    """Unique id of the snapshot."""

    def __post_init__(self) -> None:
        if self.id == UNSET_SNAPSHOT_ID:
            self.id = self.result.get_snapshot_id()

    @property
    def node(self) -> End[RunEndT]:
        """The `End`, under the name node snapshots use."""
        return self.result


Snapshot = NodeSnapshot[StateT, RunEndT] | EndSnapshot[StateT, RunEndT]
"""A snapshot of a run: a node to run, or the end."""


class BaseStatePersistence(ABC, Generic[StateT, RunEndT]):
    """Where a run's snapshots are kept; subclass it to store them your own way.

    A run calls `snapshot_node` for each node it will run, `record_run` around each
    node's run, and `snapshot_end` when it ends; `load_next` hands out the next node to
    run when a run is resumed.
    """

    @abstractmethod
    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        """Record a node that will run next, with the state it will run on."""
        raise NotImplementedError

    @abstractmethod
    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        """Record `next_node` unless a snapshot with `snapshot_id` is already recorded."""
        raise NotImplementedError

    @abstractmethod
    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        """Record the end of the run."""
        raise NotImplementedError

    @abstractmethod
    def record_run(self, snapshot_id: str) -> AbstractAsyncContextManager[None]:
        """Context manager around a node's run: marks it running, then success or error.

        Raises:
            GraphNodeStatusError: the snapshot is neither `created` nor `pending`.
        """
        raise NotImplementedError

    @abstractmethod
    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        """Claim the next node to run (marking it `pending`), or `None` if there is none."""
        raise NotImplementedError

    @abstractmethod
    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        """All snapshots recorded, in order."""
        raise NotImplementedError

    def set_graph_types(self, graph: Graph[StateT, Any, RunEndT]) -> None:
        """Tell the persistence which graph it records, so it can (de)serialize its nodes."""
        state_type, run_end_type = graph.inferred_types
        self.set_types(state_type, run_end_type)

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        """Tell the persistence the state and result types; the default does nothing."""

    async def _open_run(self, *, new: bool) -> None:
        """Called before a run starts (`new`) or resumes; durable persistences lock the run here."""

    async def _close_run(self) -> None:
        """Called when the run's context exits, however it exits."""

    def _recorder(self, graph: Graph[Any, Any, Any]) -> Recorder:
        """The recorder a run uses to write into this persistence.

        The default calls the public methods above, one by one; railyard's own classes
        override it to write to their run log directly.
        """
        from railyard.persistence._recorder import PersistenceRecorder

        return PersistenceRecorder(self)


def build_snapshot_list_type_adapter(
    state_t: type[StateT], run_end_t: type[RunEndT]
) -> pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]]:
    """A TypeAdapter that reads and writes a list of snapshots as JSON."""
    import pydantic

    return pydantic.TypeAdapter(
        list[Annotated[Snapshot[state_t, run_end_t], pydantic.Discriminator("kind")]]  # type: ignore[valid-type]
    )
