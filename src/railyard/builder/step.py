"""Steps: async functions that take a `StepContext` and return the value that flows on."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, overload

from typing_extensions import TypeVar

from railyard.builder.id_types import NodeID
from railyard.children import ChildScope, StepActions
from railyard.nodes import BaseNode, End, GraphRunContext
from railyard.retries import RetryPolicy

if TYPE_CHECKING:
    from railyard.children import ChildGraph
    from railyard.store import RunStore

__all__ = (
    "AnyStepFunction",
    "End",
    "GraphRunContext",
    "NodeID",
    "NodeStep",
    "Step",
    "StepContext",
    "StepFunction",
    "StepNode",
    "StreamFunction",
)

StateT = TypeVar("StateT", default=None)
DepsT = TypeVar("DepsT", default=None)
InputT = TypeVar("InputT", default=Any)
OutputT = TypeVar("OutputT", default=Any)


class StepContext(StepActions, Generic[StateT, DepsT, InputT]):
    """What a step gets: the run's state and dependencies, the value flowing into it, its run and step ids."""

    __slots__ = ("_answers", "_deps", "_inputs", "_state", "attempt", "run_id", "step_id", "store")

    def __init__(
        self,
        *,
        state: StateT,
        deps: DepsT,
        inputs: InputT,
        step_id: str = "",
        run_id: str | None = None,
        attempt: int = 1,
        answers: dict[str, tuple[str, Any]] | None = None,
        store: RunStore | None = None,
    ) -> None:
        self._answers = answers
        self.store = store
        """The store the durable run is kept in (`None` in memory); `run_child` keeps the step's children there."""
        self._state = state
        self._deps = deps
        self._inputs = inputs
        self.attempt = attempt
        """Which attempt of the step this is: 1, and one more on each retry of its retry policy."""
        self.step_id = step_id
        """The id of this step's task: the same on every attempt of it (an idempotency key)."""
        self.run_id = run_id
        """The id of the durable run this step belongs to, or `None` for a run kept in memory.

        It is the run's `GraphRun.run_id`: the same for every step of the run, and after the
        run is resumed (a forked run has its own). Step ids are unique only within a run, so
        `(run_id, step_id)` identifies a step across runs and re-runs of it.
        """

    @property
    def state(self) -> StateT:
        """The run's state; steps may change it."""
        return self._state

    def _child_scope(self) -> ChildScope:
        return ChildScope(self.store, self.run_id, self.step_id, self.attempt, self._answers)

    @property
    def deps(self) -> DepsT:
        """The run's dependencies."""
        return self._deps

    @property
    def inputs(self) -> InputT:
        """The value flowing into this step."""
        return self._inputs

    def __repr__(self) -> str:
        return f"StepContext(_state={self._state!r}, _deps={self._deps!r}, _inputs={self._inputs!r})"


StepFunction = Callable[[StepContext[Any, Any, Any]], Awaitable[Any]]
"""An async function taking a `StepContext`: the body of a step."""
StreamFunction = Callable[[StepContext[Any, Any, Any]], AsyncIterable[Any]]
"""An async generator function taking a `StepContext`: a step whose items flow on as yielded."""
AnyStepFunction = StepFunction
"""A step function of any state, dependencies, input and output."""


class Step(Generic[StateT, DepsT, InputT, OutputT]):
    """A step of a builder graph: an id, an optional label, and the function it runs."""

    __slots__ = ("_call", "child_graphs", "id", "label", "retry_policy", "step_timeout", "stream")

    def __init__(
        self,
        *,
        id: str,
        call: Callable[..., Any],
        label: str | None = None,
        stream: bool = False,
        retry_policy: RetryPolicy | None = None,
        step_timeout: float | None = None,
        child_graphs: Sequence[ChildGraph] = (),
    ) -> None:
        self.id = id
        self.child_graphs: tuple[ChildGraph, ...] = tuple(child_graphs)
        """The graphs the step runs as child runs (`ctx.run_child`): its diagram state holds theirs. Drawing only."""
        self.retry_policy = retry_policy
        """How the step is retried when it raises (`None`: the graph's policy, if any, else never)."""
        self.step_timeout = step_timeout
        """Seconds an attempt may take before it is cancelled (`None`: the graph's, if any)."""
        """The step's node id."""
        self._call = call
        self.label = label
        """The label shown on diagrams."""
        self.stream = stream
        """Whether the step is an async generator whose items flow on as they are yielded."""

    @property
    def call(self) -> Callable[..., Any]:
        """The function the step runs."""
        return self._call

    @overload
    def as_node(self, inputs: None = None) -> StepNode[StateT, DepsT]: ...
    @overload
    def as_node(self, inputs: InputT) -> StepNode[StateT, DepsT]: ...
    def as_node(self, inputs: InputT | None = None) -> StepNode[StateT, DepsT]:
        """A node-API value that leads to this step with `inputs`: return it from a node's `run`.

        The node's `run` annotation names the step: `-> Annotated[StepNode[S, D], my_step]`.
        """
        return StepNode(self, inputs)

    def __repr__(self) -> str:
        return f"Step(id={self.id!r}, _call={self._call!r}, label={self.label!r})"


@dataclass
class StepNode(BaseNode[StateT, DepsT, Any]):
    """What a node-API node returns to go on to a builder step: the step and the value it gets.

    It is a marker, not a node to run: the builder sends `inputs` to `step`.
    """

    step: Step[StateT, DepsT, Any, Any]
    """The step to go on to."""
    inputs: Any
    """The value the step gets."""

    async def run(self, ctx: GraphRunContext[StateT, DepsT]) -> BaseNode[StateT, DepsT, Any] | End[Any]:
        """Not meant to be run: the builder routes a returned `StepNode` to its step.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "`StepNode` is not meant to be run directly, it is meant to be used in `BaseNode` subclasses to "
            "indicate a transition to v2-style steps."
        )


class NodeStep(Step[Any, Any, Any, Any]):
    """A node-API class (`BaseNode` subclass) inside a builder graph."""

    __slots__ = ("node_type",)

    def __init__(
        self, node_type: type[BaseNode[Any, Any, Any]], *, id: str | None = None, label: str | None = None
    ) -> None:
        super().__init__(id=id or node_type.get_node_id(), call=node_type.run, label=label)
        self.node_type = node_type
        """The node class."""

    def __repr__(self) -> str:
        return f"NodeStep(id={self.id!r}, node_type={self.node_type.__qualname__}, label={self.label!r})"
