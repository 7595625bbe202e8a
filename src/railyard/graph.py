"""The node API front end: `Graph`, `GraphRun` and `GraphRunResult`.

A `Graph` is built from `BaseNode` classes; running it compiles nothing: the node API
is the case of the shared runtime where exactly one task is pending at a time, so a
`GraphRun` drives a `Scheduler` one step per `next()`.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from railyard import _introspect
from railyard._ids import new_snapshot_id
from railyard._introspect import UNSET, NodeDef, Unset
from railyard._mermaid_defaults import DEFAULT_HIGHLIGHT_CSS
from railyard._sync import refuse_running_loop
from railyard.exceptions import GraphRuntimeError, GraphSetupError
from railyard.nodes import BaseNode, DepsT, End, GraphRunContext, RunEndT, StateT, node_task
from railyard.persistence import BaseStatePersistence
from railyard.persistence._schema import node_types
from railyard.runtime._tasks import Task

# What only a run, a diagram or a history needs (the runtime loop, the in-memory log,
# tracing, the mermaid code and service) is imported where it is first used: in the
# functions that start a run, draw or dump, never on the per-step path.
if TYPE_CHECKING:
    from pathlib import Path

    import pydantic
    from opentelemetry.trace import Span
    from typing_extensions import Unpack

    from railyard import mermaid
    from railyard.persistence.in_mem import SimpleStatePersistence
    from railyard.runtime._executor import Executor
    from railyard.runtime._loop import Loop
    from railyard.runtime._recorder import Outcome
    from railyard.runtime._tasks import ForkStack
    from railyard.state import HistoryStep
    from railyard.store import RunStore

__all__ = ("Graph", "GraphRun", "GraphRunResult")

AnyNode = BaseNode[Any, Any, Any]
_SNAPSHOT_KEY = "__snapshot_id"


class Graph(Generic[StateT, DepsT, RunEndT]):
    """A graph of nodes: built from `BaseNode` classes, whose return hints are its edges.

    ```python
    graph = Graph(nodes=[CountDown])
    result = await graph.run(CountDown(), state=CountDownState(counter=3))
    ```

    Raises:
        GraphSetupError: a node is not a `BaseNode` subclass, two nodes share an id, a
            return annotation cannot be resolved or names a node missing from the graph.
    """

    name: str | None
    """The graph's name: given, or inferred from the variable it is assigned to."""
    node_defs: dict[str, NodeDef]
    """Every node of the graph, by id."""
    auto_instrument: bool
    """Whether runs create OpenTelemetry spans (when an SDK is configured)."""

    _history_by_default: ClassVar[bool] = False
    """Whether a run given no persistence keeps its whole history (the seeds' API does)."""
    _run_class: ClassVar[type[GraphRun[Any, Any, Any]]]
    """The class of the runs this graph creates."""
    _context_class: ClassVar[type[GraphRunContext[Any, Any]]] = GraphRunContext
    """The class of the context its nodes get."""

    def __init__(
        self,
        *,
        nodes: Sequence[type[BaseNode[StateT, DepsT, RunEndT]]],
        name: str | None = None,
        state_type: type[StateT] | Unset = UNSET,
        run_end_type: type[RunEndT] | Unset = UNSET,
        auto_instrument: bool = True,
        snapshot_state: Callable[[StateT], StateT] | None = None,
    ) -> None:
        self.name = name
        self._state_type = state_type
        self._run_end_type = run_end_type
        self.auto_instrument = auto_instrument
        if snapshot_state is None:
            from railyard._copy import deep_copy

            snapshot_state = deep_copy
        self._snapshot_state: Callable[[Any], Any] = snapshot_state
        frame = inspect.currentframe()
        local_ns = _introspect.parent_namespace(frame.f_back if frame is not None else None)
        self.node_defs = {}
        for node in nodes:
            self._register(node, local_ns)
        self._validate_edges()
        self._routes = {node_id: _Route(self, node_def) for node_id, node_def in self.node_defs.items()}

    def _register(self, node: Any, local_ns: dict[str, Any] | None) -> None:
        if isinstance(node, BaseNode):
            node = type(node)
        if not (isinstance(node, type) and issubclass(node, BaseNode)):
            raise GraphSetupError(
                f"{node!r} is not a node: Graph(nodes=[...]) takes `BaseNode` subclasses, got a {type(node).__name__}."
            )
        node_class: type[AnyNode] = node
        node_id = node_class.get_node_id()
        existing = self.node_defs.get(node_id)
        if existing is not None:
            raise GraphSetupError(f"Node ID `{node_id}` is not unique — found on {existing.node} and {node_class}")
        self.node_defs[node_id] = node_class.get_node_def(local_ns)

    def _validate_edges(self) -> None:
        missing: dict[str, list[str]] = {}
        for node_id, node_def in self.node_defs.items():
            for next_id in node_def.next_node_edges:
                if next_id not in self.node_defs:
                    missing.setdefault(next_id, []).append(node_id)
        if not missing:
            return
        if len(missing) == 1:
            ((next_id, referrers),) = missing.items()
            raise GraphSetupError(
                f"`{next_id}` is referenced by {_comma_and(referrers)} but not included in the graph."
            )
        lines = "\n".join(f" `{next_id}` is referenced by {_comma_and(refs)}" for next_id, refs in missing.items())
        raise GraphSetupError(f"Nodes are referenced in the graph but not included in the graph:\n{lines}")

    def get_nodes(self) -> Sequence[type[BaseNode[StateT, DepsT, RunEndT]]]:
        """The node classes of the graph, in the order given."""
        return [node_def.node for node_def in self.node_defs.values()]

    @cached_property
    def inferred_types(self) -> tuple[type[StateT], type[RunEndT]]:
        """The state and result types: given, else read from the nodes' type hints."""
        state_type: Any = self._state_type
        if isinstance(state_type, Unset):
            state_type = next(
                (t for d in self.node_defs.values() if (t := _introspect.infer_state_type(d.node)) is not UNSET), None
            )
        run_end_type: Any = self._run_end_type
        if isinstance(run_end_type, Unset):
            run_end_type = _infer_run_end_type(self.node_defs.values())
        return state_type, run_end_type

    # -- running ------------------------------------------------------------------------

    async def run(
        self,
        start_node: BaseNode[StateT, DepsT, RunEndT],
        *,
        state: StateT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        deps: DepsT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        persistence: BaseStatePersistence[StateT, RunEndT] | None = None,
        infer_name: bool = True,
        max_steps: int | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> GraphRunResult[StateT, RunEndT]:
        """Run the graph from `start_node` to its end and return the result.

        With a `store`, the run is durable: recorded there as run `run_id` (a new id if
        none is given) before its first node runs, so `resume(store, run_id)` can carry
        it on in any process. `persistence=` is pydantic-graph's spelling of the same.

        Raises:
            GraphRuntimeError: a node returned something that is not a node of the graph
                its annotation allows, or `End`.
            GraphStepLimitError: the run took more than `max_steps` steps.
            RunExists: `store` already holds a run `run_id`.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        async with self.iter(
            start_node,
            state=state,
            deps=deps,
            persistence=persistence,
            infer_name=False,
            max_steps=max_steps,
            store=store,
            run_id=run_id,
            executor=executor,
        ) as graph_run:
            await graph_run._run_to_end()  # pyright: ignore[reportPrivateUsage]
        result = graph_run.result
        assert result is not None, "a run that stops iterating has ended"
        return result

    def run_sync(
        self,
        start_node: BaseNode[StateT, DepsT, RunEndT],
        *,
        state: StateT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        deps: DepsT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        persistence: BaseStatePersistence[StateT, RunEndT] | None = None,
        infer_name: bool = True,
        max_steps: int | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> GraphRunResult[StateT, RunEndT]:
        """Run the graph to its end from synchronous code (it starts an event loop); see `run`.

        Raises:
            RuntimeError: called while an event loop is running in this thread; use
                `await graph.run(...)` there instead.
        """
        refuse_running_loop("Graph.run_sync()", "await graph.run(...)")
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        import asyncio

        return asyncio.run(
            self.run(
                start_node,
                state=state,
                deps=deps,
                persistence=persistence,
                infer_name=False,
                max_steps=max_steps,
                store=store,
                run_id=run_id,
                executor=executor,
            )
        )

    def iter(
        self,
        start_node: BaseNode[StateT, DepsT, RunEndT],
        *,
        state: StateT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        deps: DepsT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        persistence: BaseStatePersistence[StateT, RunEndT] | None = None,
        span: AbstractContextManager[Any] | None = None,
        infer_name: bool = True,
        max_steps: int | None = None,
        history: list[HistoryStep[StateT, RunEndT]] | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> AbstractAsyncContextManager[GraphRun[StateT, DepsT, RunEndT]]:
        """A context manager giving a `GraphRun` to iterate over, or drive with `next()`.

        ```python
        async with graph.iter(CountDown(), state=state) as run:
            async for node in run:
                print(node)
        ```

        The first node yielded is `start_node` itself, then each node it leads to, and
        finally the `End`. `store`, `run_id` and `executor` are as for `run`.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        return _RunContext(
            self,
            start_node,
            state=state,
            deps=deps,
            persistence=_durable(persistence, store, run_id, "Graph.iter()"),
            span=span,
            max_steps=max_steps,
            history=history,
            snapshot_id=None,
            record_start=True,
            executor=executor,
        )

    def iter_from_persistence(
        self,
        persistence: BaseStatePersistence[StateT, RunEndT],
        *,
        deps: DepsT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        span: AbstractContextManager[Any] | None = None,
        infer_name: bool = True,
        max_steps: int | None = None,
        executor: Executor | None = None,
    ) -> AbstractAsyncContextManager[GraphRun[StateT, DepsT, RunEndT]]:
        """Resume a run from `persistence`: its next node, with the state stored with it.

        Raises:
            GraphRuntimeError: the persistence holds no node that is waiting to run.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        return _ResumeContext(self, persistence, deps=deps, span=span, max_steps=max_steps, executor=executor)

    def iter_resume(
        self,
        store: RunStore,
        run_id: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        span: AbstractContextManager[Any] | None = None,
        max_steps: int | None = None,
        executor: Executor | None = None,
    ) -> AbstractAsyncContextManager[GraphRun[StateT, DepsT, RunEndT]]:
        """Take up stored run `run_id` where it stopped, as a `GraphRun` to iterate or drive.

        Raises:
            RunNotFound: the store has no such run.
            RunEnded: the run has ended.
            RunLocked: another driver is advancing the run.
        """
        from railyard.durable import DurablePersistence

        return _ResumeContext(
            self, DurablePersistence(store, run_id), deps=deps, span=span, max_steps=max_steps, executor=executor
        )

    async def resume(
        self,
        persistence: BaseStatePersistence[StateT, RunEndT] | RunStore,
        run_id: str | None = None,
        *,
        deps: DepsT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        infer_name: bool = True,
        max_steps: int | None = None,
        executor: Executor | None = None,
    ) -> GraphRunResult[StateT, RunEndT]:
        """Carry a stored run on to its end: `resume(store, run_id)`, or `resume(persistence)`.

        Raises:
            RunEnded: the run has already ended (durable runs).
            RunLocked: another driver is advancing the run.
            RunNotFound: the store has no such run.
            GraphRuntimeError: the persistence holds no node waiting to run.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if isinstance(persistence, BaseStatePersistence):
            if run_id is not None:
                raise TypeError(
                    "Graph.resume() takes a store and a run id, or a persistence alone; got a persistence and "
                    f"run_id={run_id!r}."
                )
            context = self.iter_from_persistence(
                persistence, deps=deps, infer_name=False, max_steps=max_steps, executor=executor
            )
        else:
            if run_id is None:
                raise TypeError(
                    f"Graph.resume({persistence!r}) needs the id of the run to resume: resume(store, run_id)."
                )
            context = self.iter_resume(persistence, run_id, deps=deps, max_steps=max_steps, executor=executor)
        async with context as run:
            await run._run_to_end()  # pyright: ignore[reportPrivateUsage]
        result = run.result
        assert result is not None, "a run that stops iterating has ended"
        return result

    async def fork(self, store: RunStore, run_id: str, at_step: int, *, new_run_id: str | None = None) -> str:
        """Start a new run from step `at_step` of a stored run (0 = its start); return its id.

        The new run starts with the state and the next node recorded after that step, under
        its own id; the old run is not changed. Carry it on with `graph.resume(store, new_id)`.

        Raises:
            ValueError: the run has no such step, or that step ended it.
            RunExists: `new_run_id` is taken.
        """
        from railyard.durable import fork_run
        from railyard.store.codec import RecordCodec

        state_type, run_end_type = self.inferred_types
        codec = RecordCodec(self.get_nodes(), state_type, run_end_type)
        return await fork_run(store, run_id, at_step, codec, new_run_id=new_run_id, graph=self.name)

    async def initialize(
        self,
        node: BaseNode[StateT, DepsT, RunEndT],
        persistence: BaseStatePersistence[StateT, RunEndT] | None = None,
        *,
        state: StateT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        infer_name: bool = True,
        store: RunStore | None = None,
        run_id: str | None = None,
    ) -> str | None:
        """Record `node` as the next node to run, without running it; return the run's id (durable runs).

        With `store=`, this creates run `run_id` (new if not given) for a worker, or a
        later `resume(store, run_id)`, to carry on.

        Raises:
            RunExists: `store` already holds a run `run_id`.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        target = _durable(persistence, store, run_id, "Graph.initialize()")
        if target is None:
            raise TypeError("Graph.initialize() needs a persistence or a store= to record the node in.")
        target.set_graph_types(self)
        await target._open_run(new=True)  # pyright: ignore[reportPrivateUsage]
        try:
            await target.snapshot_node(state, node)
        finally:
            await target._close_run()  # pyright: ignore[reportPrivateUsage]
        recorded = getattr(target, "run_id", None)
        return recorded if isinstance(recorded, str) else None

    async def next(
        self,
        node: BaseNode[StateT, DepsT, RunEndT],
        history: list[HistoryStep[StateT, RunEndT]],
        *,
        state: StateT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        deps: DepsT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        infer_name: bool = True,
    ) -> BaseNode[StateT, DepsT, Any] | End[RunEndT]:
        """Run one node and append its step to `history` (the seeds' API).

        Returns the next node to run, or the `End` of the run.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if isinstance(node, End):
            raise GraphRuntimeError(f"Cannot call `next` with an `End` node: {node!r}.")
        async with _RunContext(
            self,
            node,
            state=state,
            deps=deps,
            persistence=None,
            span=None,
            max_steps=None,
            history=history,
            snapshot_id=None,
            record_start=True,
        ) as graph_run:
            return await graph_run.next()

    # -- history (the seeds' API) -----------------------------------------------------

    def history_type_adapter(self) -> pydantic.TypeAdapter[list[HistoryStep[StateT, RunEndT]]]:
        """The TypeAdapter that reads and writes this graph's run histories."""
        from railyard.state import history_type_adapter

        state_type, run_end_type = self.inferred_types
        adapter: pydantic.TypeAdapter[list[HistoryStep[StateT, RunEndT]]] = history_type_adapter(
            state_type, run_end_type
        )
        return adapter

    def dump_history(self, history: list[HistoryStep[StateT, RunEndT]], *, indent: int | None = None) -> bytes:
        """A run's history as JSON."""
        with node_types(self.get_nodes()):
            return self.history_type_adapter().dump_json(history, indent=indent)

    def load_history(self, json_bytes: str | bytes | bytearray) -> list[HistoryStep[StateT, RunEndT]]:
        """A run's history read back from JSON written by `dump_history`."""
        with node_types(self.get_nodes()):
            return self.history_type_adapter().validate_json(json_bytes)

    # -- diagrams -------------------------------------------------------------------------

    def mermaid_code(
        self,
        *,
        start_node: Sequence[mermaid.NodeIdent] | mermaid.NodeIdent | None = None,
        title: str | bool | None = None,
        edge_labels: bool = True,
        notes: bool = True,
        highlighted_nodes: Sequence[mermaid.NodeIdent] | mermaid.NodeIdent | None = None,
        highlight_css: str = DEFAULT_HIGHLIGHT_CSS,
        infer_name: bool = True,
        direction: mermaid.StateDiagramDirection | None = None,
    ) -> str:
        """The graph as a mermaid `stateDiagram-v2`."""
        from railyard import mermaid

        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if title is None and self.name:
            title = self.name
        return mermaid.generate_code(
            self,
            start_node=start_node,
            title=title if isinstance(title, str) and title else None,
            edge_labels=edge_labels,
            notes=notes,
            highlighted_nodes=highlighted_nodes,
            highlight_css=highlight_css,
            direction=direction,
        )

    def mermaid_image(self, infer_name: bool = True, **kwargs: Unpack[mermaid.MermaidConfig]) -> bytes:
        """The graph's diagram rendered as an image by the mermaid rendering service.

        Raises:
            MermaidServiceError: the service could not be reached or refused the diagram.
        """
        from railyard import mermaid

        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if "title" not in kwargs and self.name:
            kwargs["title"] = self.name
        return mermaid.request_image(self, **kwargs)

    def mermaid_save(
        self, path: Path | str, /, *, infer_name: bool = True, **kwargs: Unpack[mermaid.MermaidConfig]
    ) -> None:
        """Save the graph's diagram: mermaid text for `.md`/`.mmd`, else an image by suffix."""
        from railyard import mermaid

        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if "title" not in kwargs and self.name:
            kwargs["title"] = self.name
        mermaid.save_image(path, self, **kwargs)

    # -- helpers --------------------------------------------------------------------------

    def _infer_name(self, frame: types.FrameType | None) -> None:
        caller = frame.f_back if frame is not None else None
        name = _introspect.infer_name(self, caller)
        if name is not None:
            self.name = name

    def _check_in_graph(self, node: AnyNode) -> None:
        if isinstance(node, End):
            return
        if node.get_node_id() not in self.node_defs:
            raise GraphRuntimeError(f"Node `{node!r}` is not in the graph.")

    def __repr__(self) -> str:
        return f"Graph(name={self.name!r}, node_defs={self.node_defs!r})"


def _comma_and(items: Sequence[str]) -> str:
    quoted = [f"`{item}`" for item in items]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _infer_run_end_type(node_defs: Any) -> Any:
    for node_def in node_defs:
        for base in _introspect._generic_bases(node_def.node):  # pyright: ignore[reportPrivateUsage]
            args: tuple[Any, ...] = getattr(base, "__args__", ())
            origin = getattr(base, "__origin__", None)
            if (
                isinstance(origin, type)
                and issubclass(origin, BaseNode)
                and len(args) == 3
                and args[2] not in _introspect.NEVER_TYPES
                and not isinstance(args[2], TypeVar)
            ):
                return args[2]
    end_types: list[Any] = []
    for node_def in node_defs:
        for end_type in node_def.end_types:
            if end_type not in end_types:
                end_types.append(end_type)
    if not end_types:
        return None
    if len(end_types) == 1:
        return end_types[0]
    union: Any = end_types[0]
    for end_type in end_types[1:]:
        union = union | end_type
    return union


class _Route:
    """Where a node's result may go: checks it against the graph and the node's annotation.

    Built once per node at graph construction; `__call__` is on the per-step path.
    """

    __slots__ = ("allowed", "any_node", "graph", "source")

    def __init__(self, graph: Graph[Any, Any, Any], node_def: NodeDef) -> None:
        self.graph = graph
        self.source = node_def.node_id
        self.allowed: dict[type, str] = {cls: node_id for node_id, cls in node_def.next_node_classes.items()}
        self.any_node = node_def.returns_base_node

    def __call__(self, result: Any) -> Outcome:
        node_id = self.allowed.get(type(result))
        if node_id is None:
            if isinstance(result, End):
                return result
            node_id = self._check(result)
        # every step gets a new id, even when a node returns itself or an earlier node
        snapshot_id = result.__dict__[_SNAPSHOT_KEY] = new_snapshot_id(node_id)
        return [Task(node_id, result, (), snapshot_id)]

    def _check(self, result: Any) -> str:
        if not isinstance(result, BaseNode):
            raise GraphRuntimeError(
                f"Invalid node return type: `{type(result).__name__}`. Expected `BaseNode` or `End`. "
                f"`{self.source}.run` returned {result!r}."
            )
        node: AnyNode = result
        node_id = node.get_node_id()
        node_def = self.graph.node_defs.get(node_id)
        if node_def is None or node_def.node is not type(node):
            raise GraphRuntimeError(f"Node `{node!r}` is not in the graph.")
        if not self.any_node:
            allowed = ", ".join(f"`{name}`" for name in self.allowed.values()) or "no node"
            raise GraphRuntimeError(
                f"`{self.source}.run` returned `{node!r}`, but its return annotation does not allow "
                f"`{node_id}` (it allows {allowed}). Add `{node_id}` to the annotation or return "
                f"an allowed node."
            )
        return node_id


class _NodeProgram:
    """The node API as a runtime program: every task is a step whose result leads to at most one task."""

    __slots__ = ("graph", "kinds", "routes")

    def __init__(self, graph: Graph[Any, Any, Any]) -> None:
        from railyard.runtime._program import NodeKind

        self.graph = graph
        self.routes: dict[str, _Route] = graph._routes  # pyright: ignore[reportPrivateUsage]
        self.kinds: dict[str, NodeKind] = dict.fromkeys(graph.node_defs, NodeKind.STEP)
        """Every node is a step."""

    @property
    def name(self) -> str | None:
        """The graph's name."""
        return self.graph.name

    def runner(self, run: Loop) -> Callable[[Task], Any]:
        """Calls the node's `run` on the run's one context (one task at a time: it can carry the step id)."""
        ctx = run.ctx

        def call(task: Task) -> Any:
            ctx.step_id = task.task_id
            return task.inputs.run(ctx)

        return call

    def inline(self, task: Task, run: Loop) -> Any:
        """Never called: node graphs have only steps."""
        raise AssertionError("node graphs have no inline nodes")

    def route(self, task: Task, result: Any, run: Loop) -> Outcome:
        """The next node's task, or the `End`; checked against the graph and the node's annotation."""
        return self.routes[task.node_id](result)

    def follow(self, source_id: str, value: Any, fork_stack: ForkStack, run: Loop) -> list[Task]:
        """Never called: node graphs have no maps or joins."""
        raise AssertionError("node graphs have no maps or joins")

    def join_key(self, join_id: str, fork_stack: ForkStack) -> tuple[tuple[str, str], ForkStack]:
        """Never called: node graphs have no joins."""
        raise AssertionError("node graphs have no joins")

    def join_initial(self, join_id: str) -> Any:
        """Never called: node graphs have no joins."""
        raise AssertionError("node graphs have no joins")

    def reduce(self, task: Task, state: Any, run: Loop, cancel: Any) -> Any:
        """Never called: node graphs have no joins."""
        raise AssertionError("node graphs have no joins")

    def error_note(self, task: Task) -> str | None:
        """A node's exception propagates as it was raised, as in pydantic-graph."""
        return None


@dataclass(init=False)
class GraphRunResult(Generic[StateT, RunEndT]):
    """The result of a finished run: its output and final state."""

    output: RunEndT
    """The data of the `End` the run finished with."""
    state: StateT
    """The final state of the run."""
    persistence: BaseStatePersistence[StateT, RunEndT] = field(repr=False)
    """Where the run was recorded."""

    def __init__(
        self,
        output: RunEndT,
        state: StateT,
        persistence: BaseStatePersistence[StateT, RunEndT],
        traceparent: str | None = None,
        history: list[HistoryStep[StateT, RunEndT]] | Callable[[], list[HistoryStep[StateT, RunEndT]]] | None = None,
    ) -> None:
        self.output = output
        self.state = state
        self.persistence = persistence
        self._traceparent = traceparent
        self._history = history

    @property
    def history(self) -> list[HistoryStep[StateT, RunEndT]]:
        """The run's history, step by step (the seeds' API)."""
        if self._history is None:
            return []
        if callable(self._history):
            self._history = self._history()
        return self._history


class GraphRun(Generic[StateT, DepsT, RunEndT]):
    """A run in progress: async-iterate over it, or drive it node by node with `next()`.

    Get one from `Graph.iter` or `Graph.iter_from_persistence`.
    """

    def __init__(
        self,
        *,
        graph: Graph[StateT, DepsT, RunEndT],
        start_node: BaseNode[StateT, DepsT, RunEndT],
        persistence: BaseStatePersistence[StateT, RunEndT],
        state: StateT,
        deps: DepsT,
        traceparent: str | None = None,
        snapshot_id: str | None = None,
        max_steps: int | None = None,
        history: list[HistoryStep[StateT, RunEndT]] | None = None,
        tracer: Any = None,
        executor: Executor | None = None,
    ) -> None:
        from railyard.persistence.in_mem import LogPersistence
        from railyard.runtime._loop import Loop
        from railyard.state import HistoryView

        self.graph = graph
        self.persistence = persistence
        self.state = state
        self.deps = deps
        self._traceparent = traceparent
        if snapshot_id is not None:
            start_node.set_snapshot_id(snapshot_id)
        elif isinstance(start_node, BaseNode):
            # a new run's first step gets a new id, even if this node object started a run before
            start_node.set_snapshot_id(new_snapshot_id(start_node.get_node_id()))
        self._next_node: BaseNode[StateT, DepsT, RunEndT] | End[RunEndT] = start_node
        self._next_task: Task | None = None if isinstance(start_node, End) else node_task(start_node)
        self._recorder = persistence._recorder(graph)  # pyright: ignore[reportPrivateUsage]
        self._loop = Loop(
            _NodeProgram(graph),
            graph._context_class(state=state, deps=deps),  # pyright: ignore[reportPrivateUsage]
            recorder=self._recorder,
            tracer=tracer,
            executor=executor,
            max_steps=max_steps,
        )
        if self._next_task is not None:
            self._loop.schedule((self._next_task,))
        log = persistence._log if isinstance(persistence, LogPersistence) else None  # pyright: ignore[reportPrivateUsage]
        self._history = HistoryView(log, history) if log is not None else None
        self._user_history = history
        self._result: GraphRunResult[StateT, RunEndT] | None = None
        if isinstance(start_node, End):
            self._result = GraphRunResult(start_node.data, state, persistence, traceparent)
        self._yielded_start = False
        self._closed = False

    @property
    def next_node(self) -> BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]:
        """The node that runs next, or the `End` once the run has ended."""
        return self._next_node

    @property
    def run_id(self) -> str | None:
        """The run's id in its store (`None` for a run that is not recorded durably)."""
        run_id = getattr(self.persistence, "run_id", None)
        return run_id if isinstance(run_id, str) else None

    @property
    def ctx(self) -> GraphRunContext[StateT, DepsT]:
        """The context the run's nodes get: its state and dependencies."""
        return self._loop.ctx  # type: ignore[no-any-return]

    @property
    def result(self) -> GraphRunResult[StateT, RunEndT] | None:
        """The run's result once it has ended, else `None`."""
        return self._result

    @property
    def history(self) -> list[HistoryStep[StateT, RunEndT]]:
        """The steps run so far (the seeds' API), with the state after each step."""
        if self._history is None:
            return self._user_history if self._user_history is not None else []
        return cast("list[HistoryStep[StateT, RunEndT]]", self._history.sync())

    async def next(
        self, node: BaseNode[StateT, DepsT, RunEndT] | None = None
    ) -> BaseNode[StateT, DepsT, Any] | End[RunEndT]:
        """Run `node` (by default `next_node`) and return the node after it, or the `End`.

        Passing a node other than `next_node` runs that node instead: the run goes on from
        whatever it returns.

        Raises:
            TypeError: called with an `End`, or after the run has ended.
            GraphRuntimeError: the node is not in the graph, or returned something invalid.
        """
        if self._closed:
            raise GraphRuntimeError(
                f"This run of graph `{self.graph.name}` can no longer go on: its `async with` block has "
                f"exited (and let go of the run). Resume it with `graph.iter_from_persistence(...)`."
            )
        if node is None or node is self._next_node:
            task = self._next_task
            if task is None:
                raise TypeError(f"`next` must be called with a `BaseNode` instance, got {self._next_node!r}.")
        else:
            if not isinstance(node, BaseNode):
                raise TypeError(f"`next` must be called with a `BaseNode` instance, got {node!r}.")
            self.graph._check_in_graph(node)  # pyright: ignore[reportPrivateUsage]
            task = node_task(node)
            pending = self._recorder.tasks_created((task,), self.state)
            if pending is not None:
                await pending
            self._loop.schedule((task,))
        return self._went_to(await self._loop.advance())

    def _went_to(self, outcome: list[Task] | End[Any]) -> BaseNode[StateT, DepsT, Any] | End[RunEndT]:
        """Take in where the step led: the next node, or the end of the run."""
        if not isinstance(outcome, list):
            self._next_task = None
            self._next_node = outcome
            if self._user_history is not None and self._history is not None:
                self._history.sync()
            self._result = GraphRunResult(
                outcome.data, self.state, self.persistence, self._traceparent, history=lambda: self.history
            )
            return outcome
        next_task = outcome[0]
        self._next_task = next_task
        self._next_node = next_task.inputs
        if self._user_history is not None and self._history is not None:
            self._history.sync()  # the caller's list gets each step as it happens
        return self._next_node

    async def _run_to_end(self) -> None:
        """Drive the run until it ends (`Graph.run`: no node is handed out, so none is yielded)."""
        loop = self._loop
        if self._user_history is None:  # nobody looks at the steps as they happen
            if self._next_task is not None:
                self._went_to(await loop.run_to_end())
            return
        while self._next_task is not None:
            self._went_to(await loop.advance())

    def __aiter__(self) -> AsyncIterator[BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]]:
        return self

    async def __anext__(self) -> BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]:
        """The next node: first the current `next_node`, then what each step leads to."""
        if not self._yielded_start:
            self._yielded_start = True
            return self._next_node
        if self._next_task is None:
            raise StopAsyncIteration
        if self._closed:
            return await self.next()  # which says why the run cannot go on
        return self._went_to(await self._loop.advance())

    def __repr__(self) -> str:
        return f"<GraphRun graph={self.graph.name or '[unnamed]'}>"


Graph._run_class = GraphRun  # pyright: ignore[reportPrivateUsage]


class _RunContext(Generic[StateT, DepsT, RunEndT]):
    """`Graph.iter`'s context manager: sets up recording and spans around a `GraphRun`."""

    def __init__(
        self,
        graph: Graph[StateT, DepsT, RunEndT],
        start_node: BaseNode[StateT, DepsT, RunEndT],
        *,
        state: StateT,
        deps: DepsT,
        persistence: BaseStatePersistence[StateT, RunEndT] | None,
        span: AbstractContextManager[Any] | None,
        max_steps: int | None,
        history: list[HistoryStep[StateT, RunEndT]] | None,
        snapshot_id: str | None,
        record_start: bool,
        executor: Executor | None = None,
    ) -> None:
        self.graph = graph
        self.start_node = start_node
        self.executor = executor
        self.state = state
        self.deps = deps
        self.persistence = persistence
        self.span = span
        self.max_steps = max_steps
        self.history = history
        self.snapshot_id = snapshot_id
        self.record_start = record_start
        self._stack = ExitStack()
        self._opened: BaseStatePersistence[StateT, RunEndT] | None = None
        self._run: GraphRun[StateT, DepsT, RunEndT] | None = None

    async def __aenter__(self) -> GraphRun[StateT, DepsT, RunEndT]:
        graph = self.graph
        graph._check_in_graph(self.start_node)  # pyright: ignore[reportPrivateUsage]
        persistence = self.persistence
        if persistence is None:
            persistence = _default_persistence(graph, keep_history=self.history is not None)
        persistence.set_graph_types(graph)
        if self.record_start:
            await persistence._open_run(new=True)  # pyright: ignore[reportPrivateUsage]
        self._opened = persistence
        try:
            return await self._start(persistence)
        except BaseException:
            await persistence._close_run()  # pyright: ignore[reportPrivateUsage]
            raise

    async def _start(self, persistence: BaseStatePersistence[StateT, RunEndT]) -> GraphRun[StateT, DepsT, RunEndT]:
        from railyard.tracing import active_tracer

        graph = self.graph
        tracer = active_tracer(graph.auto_instrument)
        run_span: AbstractContextManager[Any] | None = self.span
        if run_span is None and tracer is not None:
            run_span = tracer.start_as_current_span(
                f"run graph {graph.name}", attributes={"graph_name": str(graph.name)}
            )
        self._span: Span | None = self._stack.enter_context(run_span) if run_span is not None else None
        graph_run = graph._run_class(
            graph=graph,
            start_node=self.start_node,
            persistence=persistence,
            state=self.state,
            deps=self.deps,
            snapshot_id=self.snapshot_id,
            max_steps=self.max_steps,
            history=self.history,
            tracer=tracer,
            executor=self.executor,
        )
        self._run = graph_run
        if self.record_start and graph_run._next_task is not None:  # pyright: ignore[reportPrivateUsage]
            pending = graph_run._recorder.tasks_created((graph_run._next_task,), self.state)  # pyright: ignore[reportPrivateUsage]
            if pending is not None:
                await pending
        return graph_run

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._run is not None:
            self._run._closed = True  # pyright: ignore[reportPrivateUsage]
        try:
            self._stack.__exit__(*exc_info)
        finally:
            if self._opened is not None:
                await self._opened._close_run()  # pyright: ignore[reportPrivateUsage]


class _ResumeContext(Generic[StateT, DepsT, RunEndT]):
    """`Graph.iter_from_persistence`'s context manager: loads the next node, then runs."""

    def __init__(
        self,
        graph: Graph[StateT, DepsT, RunEndT],
        persistence: BaseStatePersistence[StateT, RunEndT],
        *,
        deps: DepsT,
        span: AbstractContextManager[Any] | None,
        max_steps: int | None,
        executor: Executor | None = None,
    ) -> None:
        self.graph = graph
        self.persistence = persistence
        self.deps = deps
        self.span = span
        self.max_steps = max_steps
        self.executor = executor
        self._inner: _RunContext[StateT, DepsT, RunEndT] | None = None

    async def __aenter__(self) -> GraphRun[StateT, DepsT, RunEndT]:
        persistence = self.persistence
        persistence.set_graph_types(self.graph)
        await persistence._open_run(new=False)  # pyright: ignore[reportPrivateUsage]
        try:
            return await self._resume()
        except BaseException:
            await persistence._close_run()  # pyright: ignore[reportPrivateUsage]
            raise

    async def _resume(self) -> GraphRun[StateT, DepsT, RunEndT]:
        snapshot = await self.persistence.load_next()
        if snapshot is None:
            raise GraphRuntimeError("Unable to restore snapshot from state persistence.")
        snapshot.node.set_snapshot_id(snapshot.id)
        self._inner = _RunContext(
            self.graph,
            snapshot.node,
            state=snapshot.state,
            deps=self.deps,
            persistence=self.persistence,
            span=self.span,
            max_steps=self.max_steps,
            history=None,
            snapshot_id=snapshot.id,
            record_start=False,
            executor=self.executor,
        )
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._inner is not None:
            await self._inner.__aexit__(*exc_info)


def _durable(
    persistence: BaseStatePersistence[Any, Any] | None, store: RunStore | None, run_id: str | None, where: str
) -> BaseStatePersistence[Any, Any] | None:
    """The persistence of a run given `persistence=` (pydantic-graph's spelling) or `store=` and `run_id=`."""
    if store is None:
        if run_id is not None:
            raise TypeError(f"{where} was given run_id={run_id!r} but no store: pass store= to record the run.")
        return persistence
    if persistence is not None:
        raise TypeError(f"{where} takes persistence= or store=, not both.")
    from railyard.durable import DurablePersistence

    return DurablePersistence(store, run_id)


def _default_persistence(graph: Graph[Any, Any, Any], *, keep_history: bool) -> SimpleStatePersistence[Any, Any]:
    """The persistence of a run given none: the latest snapshot, and the history if asked for.

    The history (a copy of the state at every step) is kept when the caller passes
    `history=` or the graph keeps it by default (`railyard.v0`); otherwise only the
    latest snapshot is, which keeps a run's cost per step flat and small.
    """
    from railyard.persistence.in_mem import SimpleStatePersistence

    persistence: SimpleStatePersistence[Any, Any] = SimpleStatePersistence()
    if keep_history or graph._history_by_default:  # pyright: ignore[reportPrivateUsage]
        persistence._use_history_log(graph._snapshot_state)  # pyright: ignore[reportPrivateUsage]
    return persistence
