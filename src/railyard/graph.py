"""The node API front end: `Graph`, `GraphRun` and `GraphRunResult`.

A `Graph` is built from `BaseNode` classes whose return hints are its edges. A run is
the shared runtime's `Loop` with the node API's `Program` (`_node_program.py`): each
step leads to at most one task, and a `GraphRun` (`_node_run.py`) advances the loop
one step per `next()`.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from railyard import _introspect
from railyard._introspect import UNSET, Unset
from railyard._mermaid_defaults import DEFAULT_HIGHLIGHT_CSS
from railyard._node_program import Route
from railyard._node_run import (
    GraphRun,
    GraphRunResult,
    ResumeContext,
    RunContext,
    durable_persistence,
)
from railyard._node_schema import node_types
from railyard._sync import refuse_running_loop
from railyard.exceptions import GraphRuntimeError, GraphSetupError
from railyard.nodes import BaseNode, DepsT, End, GraphRunContext, NodeDef, RunEndT, StateT
from railyard.persistence import BaseStatePersistence
from railyard.retries import RetryPolicy

# What only a run, a diagram or a history needs (the runtime loop, the in-memory log,
# tracing, the mermaid code and service) is imported where it is first used: in the
# functions that start a run, draw or dump, never on the per-step path.
if TYPE_CHECKING:
    from pathlib import Path

    import pydantic
    from typing_extensions import Unpack

    from railyard import mermaid
    from railyard.runtime._executor import Executor
    from railyard.state import HistoryStep
    from railyard.store import RunStore
    from railyard.versioning import Migration

__all__ = ("Graph", "GraphRun", "GraphRunResult")

AnyNode = BaseNode[Any, Any, Any]


class Graph(Generic[StateT, DepsT, RunEndT]):
    """A graph of nodes: built from `BaseNode` classes, whose return hints are its edges.

    ```python
    graph = Graph(nodes=[CountDown])
    result = await graph.run(CountDown(), state=CountDownState(counter=3))
    ```

    `version` and `migrations` let stored runs resume on changed code: see
    `railyard.versioning`.

    Raises:
        GraphSetupError: a node is not a `BaseNode` subclass, two nodes share an id, a
            return annotation cannot be resolved or names a node missing from the graph;
            `version` or `migrations` cannot work (two migrations from one version, say).
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
        retry_policy: RetryPolicy | None = None,
        step_timeout: float | None = None,
        run_timeout: float | None = None,
        version: int = 1,
        migrations: Sequence[Migration] = (),
    ) -> None:
        self.name = name
        self.run_timeout = _run_timeout(run_timeout)
        """How long a run may take, in seconds from its start, resumes included (`None`: no limit).

        A run that takes longer has its running steps cancelled and is stored cancelled;
        its driver gets `RunTimedOut`."""
        self.version = version
        """The graph's version, recorded with each run it creates (`railyard.versioning`)."""
        self.migrations: tuple[Migration, ...] = tuple(migrations)
        """How runs stored by older versions are upgraded as they are read, one per older version."""
        self.retry_policy = retry_policy
        """The retry policy of every node that declares none of its own (`None`: a node runs once)."""
        self.step_timeout = step_timeout
        """The timeout of each attempt of a node that declares none of its own, in seconds."""
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
        if version != 1 or self.migrations:
            from railyard.versioning import check_migrations

            check_migrations(version, self.migrations, self.node_defs, "Graph")
        self._routes = {node_id: Route(self, node_def) for node_id, node_def in self.node_defs.items()}

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
        return RunContext(
            self,
            start_node,
            state=state,
            deps=deps,
            persistence=durable_persistence(persistence, store, run_id, "Graph.iter()"),
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
        return ResumeContext(self, persistence, deps=deps, span=span, max_steps=max_steps, executor=executor)

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

        return ResumeContext(
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
            GraphVersionError: the graph changed in ways the run needs (durable runs; nothing is
                stored): see `railyard.versioning`.
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
        from railyard.versioning import graph_version

        state_type, run_end_type = self.inferred_types
        codec = RecordCodec(self.get_nodes(), state_type, run_end_type)
        version = graph_version(self)
        return await fork_run(
            store,
            run_id,
            at_step,
            codec,
            new_run_id=new_run_id,
            graph=self.name,
            fingerprint=version.fingerprint,
            version=version,
        )

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
        target = durable_persistence(persistence, store, run_id, "Graph.initialize()")
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
        async with RunContext(
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
    """The result type: the third argument a node gives `BaseNode`, else the union of its `End[T]`s."""
    run_end_type = generic_run_end_type(node_defs)
    return _union_of_end_types(node_defs) if run_end_type is UNSET else run_end_type


def generic_run_end_type(node_defs: Any) -> Any:
    """The third argument the first node that gives one gives `BaseNode`, else `UNSET`."""
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
    return UNSET


def _union_of_end_types(node_defs: Any) -> Any:
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


Graph._run_class = GraphRun  # pyright: ignore[reportPrivateUsage]


def __getattr__(name: str) -> Any:
    """`SimpleStatePersistence`, imported on first use (as pydantic-graph's `graph` module re-exports it)."""
    if name == "SimpleStatePersistence":
        from railyard.persistence.in_mem import SimpleStatePersistence

        return SimpleStatePersistence
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _run_timeout(value: float | None) -> float | None:
    """Check a graph's `run_timeout`.

    Raises:
        GraphSetupError: it is not a number of seconds more than 0.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        from railyard.exceptions import GraphSetupError

        raise GraphSetupError(f"run_timeout={value!r}: a run timeout is a number of seconds, more than 0.")
    return float(value)
