"""The node API's building blocks: `BaseNode`, `End`, `Edge` and `GraphRunContext`.

A node is usually a dataclass subclassing `BaseNode`; its `run` method's return
annotation names the nodes it may hand over to, and so defines the graph's edges.
"""

from __future__ import annotations

import copy
import inspect
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Never

from typing_extensions import TypeVar

from railyard._ids import default_snapshot_id, new_snapshot_id, register_nodes
from railyard.children import ChildScope, StepActions
from railyard.retries import RetryPolicy
from railyard.runtime._end import End, RunEndT
from railyard.runtime._tasks import Task

if TYPE_CHECKING:
    from railyard.children import ChildGraph
    from railyard.store import RunStore

__all__ = (
    "BaseNode",
    "End",
    "Edge",
    "GraphRunContext",
    "DepsT",
    "RunEndT",
    "NodeRunEndT",
    "NodeDef",
    "StateT",
)

generate_snapshot_id = default_snapshot_id
"""Make a new snapshot id from a node id (`'<node id>:<32 hex digits>'`).

A module attribute to allow patching, as in pydantic-graph: every snapshot id railyard
makes (nodes, ends, a run's start) calls what this name holds at that moment."""
register_nodes(sys.modules[__name__])

StateT = TypeVar("StateT", default=None)
"""Type of a graph's state."""
DepsT = TypeVar("DepsT", default=None, contravariant=True)
"""Type of a graph's dependencies."""
NodeRunEndT = TypeVar("NodeRunEndT", covariant=True, default=Never)
"""Type of the final result a node may end a run with (`Never` if it cannot end it)."""

_SNAPSHOT_KEY = "__snapshot_id"


@dataclass(kw_only=True, slots=True)
class GraphRunContext(StepActions, Generic[StateT, DepsT]):
    """What a node's `run` gets: the run's state and dependencies, and which run and step this is."""

    state: StateT
    """The state of the run; nodes may mutate it."""
    deps: DepsT
    """The dependencies of the run, passed to `Graph.run` as `deps=`."""
    step_id: str = field(default="", repr=False, compare=False)
    """The id of the step running now (its snapshot id).

    It is the same every time this step is attempted: a step that was running when its
    process died runs again on resume with the same id, so use it as an idempotency key
    for side effects. Read it during the step; the context is reused for the next one.
    """
    run_id: str | None = field(default=None, repr=False, compare=False)
    """The id of the durable run this step belongs to, or `None` for a run kept in memory.

    It is the run's `GraphRun.run_id`: the same for every step of the run, and after the
    run is resumed (a forked run has its own). Step ids are unique only within a run, so
    `(run_id, step_id)` identifies a step across runs and re-runs of it.
    """
    attempt: int = field(default=1, repr=False, compare=False)
    """Which attempt of the step this is: 1, and one more on each retry of its retry policy."""
    answers: dict[str, tuple[str, Any]] | None = field(default=None, repr=False, compare=False)
    """The signals delivered to the run's waiting steps (set by the run; read by `wait_for`)."""
    store: RunStore | None = field(default=None, repr=False, compare=False)
    """The store the durable run is kept in (`None` for a run kept in memory); `run_child` keeps its children there."""

    def _child_scope(self) -> ChildScope:
        return ChildScope(self.store, self.run_id, self.step_id, self.attempt, self.answers)


class BaseNode(ABC, Generic[StateT, DepsT, NodeRunEndT]):
    """Base class of a graph's nodes.

    Subclass it (usually as a dataclass) and implement `run`. The return annotation of
    `run` names the nodes that may follow this one and, with `End[T]`, that the node may
    end the run with a `T`.
    """

    docstring_notes: ClassVar[bool] = False
    """If true, the class docstring is shown as a note on mermaid diagrams."""
    retry_policy: ClassVar[RetryPolicy | None] = None
    """How this node is retried when it raises (`None`: the graph's policy, if any, else never)."""
    step_timeout: ClassVar[float | None] = None
    """Seconds an attempt of this node may take before it is cancelled (`None`: the graph's, if any)."""
    child_graphs: ClassVar[Sequence[ChildGraph]] = ()
    """The graphs this node runs as child runs (`ctx.run_child`): its diagram state holds theirs. Drawing only."""
    _stands_for_any_node: ClassVar[bool] = True
    """Set in this class's own namespace only: in a return annotation it means "any node of the graph"."""

    @abstractmethod
    async def run(self, ctx: GraphRunContext[StateT, DepsT]) -> BaseNode[StateT, DepsT, Any] | End[NodeRunEndT]:
        """Run the node and return the next node to run, or `End` to finish the run."""
        ...

    def get_snapshot_id(self) -> str:
        """The id of this node's snapshot in the run's history, created on first use."""
        snapshot_id: str | None = self.__dict__.get(_SNAPSHOT_KEY)
        if snapshot_id is None:
            snapshot_id = self.__dict__[_SNAPSHOT_KEY] = new_snapshot_id(self.get_node_id())
        return snapshot_id

    def set_snapshot_id(self, snapshot_id: str) -> None:
        """Set the id of this node's snapshot (used when a node is loaded from storage)."""
        self.__dict__[_SNAPSHOT_KEY] = snapshot_id

    @classmethod
    def get_node_id(cls) -> str:
        """The id of this node in its graph; the class name unless overridden."""
        return cls.__name__

    @classmethod
    def get_note(cls) -> str | None:
        """The note shown on mermaid diagrams: the docstring when `docstring_notes` is true."""
        if not cls.docstring_notes:
            return None
        doc = cls.__doc__
        if not doc or _is_generated_dataclass_doc(cls, doc):
            return None
        return inspect.cleandoc(doc)

    @classmethod
    def get_node_def(cls, local_ns: dict[str, Any] | None) -> NodeDef:
        """Read this node's edges from the return annotation of `run`.

        Raises:
            GraphSetupError: the annotation cannot be resolved or names something that is
                neither a node nor `End`.
        """
        from railyard._introspect import node_def

        return node_def(cls, local_ns)

    def deep_copy(self) -> BaseNode[StateT, DepsT, NodeRunEndT]:
        """A deep copy of this node, without its snapshot id."""
        clone = copy.deepcopy(self)
        clone.__dict__.pop(_SNAPSHOT_KEY, None)
        return clone


def _is_generated_dataclass_doc(cls: type, doc: str) -> bool:
    """Whether `doc` is the signature text `dataclasses` writes when a class has none."""
    return doc.startswith(f"{cls.__name__}(") and doc.rstrip().endswith(")") and "\n" not in doc.strip()


@dataclass(frozen=True)
class Edge:
    """Annotation for an edge: `Annotated[NextNode, Edge(label='why')]`."""

    label: str | None
    """The label shown on the edge in mermaid diagrams."""


@dataclass(slots=True)
class NodeDef:
    """What a graph knows about one node class: its id, note and outgoing edges."""

    node: type[BaseNode[Any, Any, Any]]
    """The node class."""
    node_id: str
    """The node's id in the graph."""
    note: str | None
    """The note shown on diagrams."""
    next_node_edges: dict[str, Edge] = field(default_factory=dict[str, Edge])
    """The nodes this node may hand over to, by id, with their edge annotation."""
    next_node_classes: dict[str, type[BaseNode[Any, Any, Any]]] = field(
        default_factory=dict[str, type[BaseNode[Any, Any, Any]]], repr=False, compare=False
    )
    """The classes named in the return annotation, by node id."""
    end_edge: Edge | None = None
    """The edge to the end, if the node may end the run."""
    end_types: list[Any] = field(default_factory=list[Any], repr=False, compare=False)
    """The `T` of each `End[T]` in the return annotation."""
    returns_base_node: bool = False
    """Whether the annotation says plain `BaseNode`: any node of the graph may follow."""


def node_task(node: BaseNode[Any, Any, Any]) -> Task:
    """The runtime task that runs `node` (its id is the node's snapshot id)."""
    return Task(node.get_node_id(), node, (), node.get_snapshot_id())
