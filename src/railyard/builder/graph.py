"""A built builder graph: its nodes and edges, compiled once; `run`, `iter`, `resume` and `fork` start its runs.

A run is the shared runtime's loop executing tasks (node id + inputs + fork stack): many
tasks at once, each fork stack saying which fork branches a task belongs to, a join
firing once no task (and no unfinished map) is left inside the fork it waits for. The
run's face, `GraphRun`, and the values it hands out live in `railyard.builder._run` and
are public from here.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from railyard._sync import refuse_running_loop
from railyard.builder._program import BuilderProgram
from railyard.builder._run import DepsT, EndMarker, ErrorMarker, GraphRun, GraphTask, GraphTaskRequest, OutputT, StateT
from railyard.builder.decision import Decision
from railyard.builder.id_types import ForkID, ForkStack, ForkStackItem, JoinID, NodeID, NodeRunID, TaskID
from railyard.builder.join import Join, JoinNode, JoinState, ReducerContext
from railyard.builder.node import EndNode, Fork, StartNode
from railyard.builder.node_types import AnyNode
from railyard.builder.parent_forks import ParentFork
from railyard.builder.paths import (
    BroadcastMarker,
    DestinationMarker,
    LabelMarker,
    MapMarker,
    Path,
    TransformMarker,
    _check_concurrency,  # pyright: ignore[reportPrivateUsage]
)
from railyard.builder.step import NodeStep, Step, StepContext, StepNode
from railyard.builder.util import infer_name, unpack_type_expression
from railyard.nodes import BaseNode, End
from railyard.retries import RetryPolicy

# The runtime loop, tracing, anyio and the durable machinery load when a run starts (in
# `GraphRun` and the methods that start one), not when a graph is built.
if TYPE_CHECKING:
    from railyard._run_log import StoreRecorder
    from railyard.runtime._executor import Executor
    from railyard.store import RunStore
    from railyard.versioning import Migration

__all__ = (
    "AnyNode",
    "BaseExceptionGroup",
    "BaseNode",
    "BroadcastMarker",
    "Decision",
    "DestinationMarker",
    "End",
    "EndMarker",
    "EndNode",
    "ErrorMarker",
    "Fork",
    "ForkID",
    "ForkStack",
    "ForkStackItem",
    "Graph",
    "GraphRun",
    "GraphTask",
    "GraphTaskRequest",
    "JoinID",
    "JoinItem",
    "JoinNode",
    "JoinState",
    "LabelMarker",
    "MapMarker",
    "NodeID",
    "NodeRunID",
    "NodeStep",
    "ReducerContext",
    "StartNode",
    "Step",
    "StepContext",
    "StepNode",
    "TaskID",
    "TransformMarker",
    "infer_obj_name",
    "unpack_type_expression",
)

BaseExceptionGroup = BaseExceptionGroup  # noqa: PLW0127  # the builtin, where pydantic-graph's module offers it
infer_obj_name = infer_name
"""The name of the variable holding an object, `depth` frames up (pydantic-graph's name for `util.infer_name`)."""

InputT = TypeVar("InputT", default=None)


@dataclass
class JoinItem:
    """A value arriving at a join, with the fork stack of the branch it comes from."""

    join_id: str
    inputs: Any
    fork_stack: ForkStack


class Graph(Generic[StateT, DepsT, InputT, OutputT]):
    """A built graph of steps, forks, decisions and joins; run it with `run` or `iter`."""

    def __init__(
        self,
        *,
        name: str | None,
        state_type: Any,
        deps_type: Any,
        input_type: Any,
        output_type: Any,
        auto_instrument: bool,
        nodes: dict[str, Any],
        edges_by_source: dict[str, list[Path]],
        branch_paths: dict[str, list[list[Path]]],
        parent_forks: dict[str, ParentFork],
        max_concurrency: int | None = None,
        retry_policy: RetryPolicy | None = None,
        step_timeout: float | None = None,
        run_timeout: float | None = None,
        version: int = 1,
        migrations: Sequence[Migration] = (),
    ) -> None:
        self.name = name
        self._defined_in: str | None = None
        """The module its `GraphBuilder` was made in, if known (names the spans of an unnamed graph)."""
        self.run_timeout = run_timeout
        """How long a run may take, in seconds from its start, resumes included (`None`: no limit)."""
        self.version = version
        """The graph's version, recorded with each run it creates (`railyard.versioning`)."""
        self.migrations: tuple[Migration, ...] = tuple(migrations)
        """How runs stored by older versions are upgraded as they are read, one per older version."""
        if version != 1 or self.migrations:
            from railyard.versioning import check_migrations

            check_migrations(version, self.migrations, nodes, "GraphBuilder")
        self.retry_policy = retry_policy
        """The retry policy of every step that declares none of its own."""
        self.step_timeout = step_timeout
        """The timeout of each attempt of a step that declares none of its own, in seconds."""
        """The graph's name (inferred from the variable holding it on first run)."""
        self.state_type = state_type
        self.deps_type = deps_type
        self.input_type = input_type
        self.output_type = output_type
        self.auto_instrument = auto_instrument
        """Whether runs create OpenTelemetry spans (when an SDK is configured)."""
        self.nodes = nodes
        """Every node, by id: start, steps, forks, decisions, joins, end."""
        self.edges_by_source = edges_by_source
        """The paths leaving each node."""
        self.parent_forks = parent_forks
        """Each join's parent fork."""
        self.max_concurrency = max_concurrency
        """At most this many tasks run at once in a run (`None`: no limit)."""
        self.intermediate_join_nodes: dict[str, set[str]] = {
            join_id: {n for n in parent.intermediate_nodes if isinstance(nodes.get(n), Join)}
            for join_id, parent in parent_forks.items()
        }
        """For each join, the joins among its intermediate nodes (between its parent fork and itself)."""
        self._inner_joins = {inner for joins in self.intermediate_join_nodes.values() for inner in joins}
        self._branch_paths = branch_paths
        self._program = BuilderProgram(self, branch_paths)

    def get_parent_fork(self, join_id: str) -> ParentFork:
        """The fork `join_id` waits for.

        Raises:
            RuntimeError: `join_id` is not a join.
        """
        parent = self.parent_forks.get(join_id)
        if parent is None:
            raise RuntimeError(f"Node {join_id} is not a join node or did not have a dominating fork (this is a bug)")
        return parent

    def is_final_join(self, join_id: str) -> bool:
        """Whether `join_id` is no other join's intermediate node (no join waits for what it gives)."""
        return join_id not in self._inner_joins

    # -- running ------------------------------------------------------------------------

    async def run(
        self,
        *,
        state: StateT = None,  # type: ignore[assignment]  # the TypeVar defaults to None
        deps: DepsT = None,  # type: ignore[assignment]
        inputs: InputT = None,  # type: ignore[assignment]
        span: AbstractContextManager[Any] | None = None,
        infer_name: bool = True,
        max_concurrency: int | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> OutputT:
        """Run the graph to its end and return its output.

        With a `store`, the run is durable: recorded there as run `run_id` (a new id if
        none is given) before its first step, so `resume(store, run_id)` can carry it on
        in any process. `executor` decides where the steps run (in this process on the
        run's event loop by default).

        Raises:
            Exception: a step's exception, as it was raised (its note names the step); the
                other branches are cancelled first.
            RuntimeError: the run finished without reaching the end node.
            RunExists: `store` already holds a run `run_id`.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        async with self.iter(
            state=state,
            deps=deps,
            inputs=inputs,
            span=span,
            infer_name=False,
            max_concurrency=max_concurrency,
            store=store,
            run_id=run_id,
            executor=executor,
        ) as run:
            await run._run_to_end()  # pyright: ignore[reportPrivateUsage]
        return run.output  # type: ignore[return-value]  # the run reached the end

    def run_sync(
        self,
        *,
        state: StateT = None,  # type: ignore[assignment]
        deps: DepsT = None,  # type: ignore[assignment]
        inputs: InputT = None,  # type: ignore[assignment]
        infer_name: bool = True,
        max_concurrency: int | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> OutputT:
        """Run the graph from synchronous code (it starts an event loop); see `run`.

        Raises:
            RuntimeError: called while an event loop is running in this thread.
        """
        refuse_running_loop("Graph.run_sync()", "await graph.run(...)")
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        import asyncio

        return asyncio.run(
            self.run(
                state=state,
                deps=deps,
                inputs=inputs,
                infer_name=False,
                max_concurrency=max_concurrency,
                store=store,
                run_id=run_id,
                executor=executor,
            )
        )

    def iter(
        self,
        *,
        state: StateT = None,  # type: ignore[assignment]
        deps: DepsT = None,  # type: ignore[assignment]
        inputs: InputT = None,  # type: ignore[assignment]
        span: AbstractContextManager[Any] | None = None,
        infer_name: bool = True,
        max_concurrency: int | None = None,
        store: RunStore | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> AbstractAsyncContextManager[GraphRun[StateT, DepsT, OutputT]]:
        """A context manager giving a `GraphRun`: iterate it to see each batch of tasks as it starts.

        `store`, `run_id` and `executor` are as for `run`.

        Raises:
            ValueError: `max_concurrency` is not a whole number of at least 1.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        if store is None and run_id is not None:
            raise TypeError(f"Graph.iter() was given run_id={run_id!r} but no store: pass store= to record the run.")
        limit = _check_concurrency(max_concurrency, "Graph.iter()") or self.max_concurrency
        recorder = self._store_recorder(store, run_id)
        return GraphRun(
            self,
            state=state,
            deps=deps,
            inputs=inputs,
            span=span,
            max_concurrency=limit,
            recorder=recorder,
            executor=executor,
        )

    def iter_resume(
        self,
        store: RunStore,
        run_id: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        span: AbstractContextManager[Any] | None = None,
        max_concurrency: int | None = None,
        executor: Executor | None = None,
    ) -> AbstractAsyncContextManager[GraphRun[StateT, DepsT, OutputT]]:
        """Take up a stored run where it stopped: only the branches that had not finished run.

        Raises:
            GraphVersionError: the graph changed in ways the run needs (nothing is stored): see
                `railyard.versioning`.
            RunNotFound: the store has no such run.
            RunEnded: the run has ended.
            RunLocked: another driver is running it.
        """
        limit = _check_concurrency(max_concurrency, "Graph.iter_resume()") or self.max_concurrency
        recorder = self._store_recorder(store, run_id)
        return GraphRun(
            self,
            state=None,  # type: ignore[arg-type]  # replaced by the stored state
            deps=deps,
            inputs=None,
            span=span,
            max_concurrency=limit,
            recorder=recorder,
            resume=True,
            executor=executor,
        )

    async def resume(
        self,
        store: RunStore,
        run_id: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        max_concurrency: int | None = None,
        executor: Executor | None = None,
    ) -> OutputT:
        """Carry a stored run on to its end and return its output (see `iter_resume`)."""
        async with self.iter_resume(
            store, run_id, deps=deps, max_concurrency=max_concurrency, executor=executor
        ) as run:
            await run._run_to_end()  # pyright: ignore[reportPrivateUsage]
        return run.output  # type: ignore[return-value]  # the run reached the end

    async def initialize(
        self,
        store: RunStore,
        run_id: str | None = None,
        *,
        state: StateT = None,  # type: ignore[assignment]
        inputs: InputT = None,  # type: ignore[assignment]
        infer_name: bool = True,
    ) -> str:
        """Create a run in `store` without running it, for a worker (or `resume`) to carry on.

        Returns:
            The run's id (`run_id`, or a new one).

        Raises:
            RunExists: `store` already holds a run `run_id`.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        async with self.iter(state=state, inputs=inputs, store=store, run_id=run_id, infer_name=False) as run:
            created = run.run_id
        assert created is not None, "a run given a store has an id"
        return created

    async def fork(self, store: RunStore, run_id: str, at_step: int, *, new_run_id: str | None = None) -> str:
        """Start a new run from where stored run `run_id` stood after `at_step` steps (0 = its start).

        The new run holds what the old one held then: the state, the tasks waiting or in
        flight, the values that had reached each join and how far each map had got. The
        old run is not changed. Carry the new one on with `graph.resume(store, new_id)`:
        only what had not finished by step `at_step` runs.

        Returns:
            The new run's id.

        Raises:
            ValueError: the run has no step `at_step`, or had ended by then.
            RunExists: `new_run_id` is taken.
        """
        from railyard.builder._durable import fork_builder_run

        return await fork_builder_run(self, store, run_id, at_step, new_run_id=new_run_id)

    def _store_recorder(self, store: RunStore | None, run_id: str | None) -> StoreRecorder | None:
        if store is None:
            return None
        from railyard._ids import new_hex_id
        from railyard.builder._durable import builder_codec
        from railyard.durable import ShapedRecorder
        from railyard.versioning import graph_version

        version = graph_version(self)
        recorder = ShapedRecorder(
            store,
            run_id or new_hex_id(),
            builder_codec(self),
            exists=False,
            graph=self.name,
            fingerprint=version.fingerprint,
        )
        recorder.shape = version.shape
        return recorder

    def _span_name(self) -> str:
        """The graph's name in its run spans: `name`, else the variable holding it in its builder's module.

        Never `None`: a graph found nowhere is named after that module (`graph` if unknown).
        """
        if self.name is not None:
            return self.name
        import sys

        module = sys.modules.get(self._defined_in) if self._defined_in is not None else None
        if module is not None:
            for variable, value in vars(module).items():
                if value is self:
                    return variable
        return self._defined_in or "graph"

    def _infer_name(self, frame: Any) -> None:
        from railyard._introspect import infer_name

        name = infer_name(self, frame.f_back if frame is not None else None)
        if name is not None:
            self.name = name

    # -- diagrams -------------------------------------------------------------------------

    def render(self, *, title: str | None = None, direction: str | None = None) -> str:
        """The graph as a mermaid `stateDiagram-v2`: forks, joins, decisions and labels."""
        from railyard.builder.mermaid import render

        return render(self, title=title, direction=direction)

    # `Any`: the options are `railyard.builder.mermaid.MermaidConfig`'s; the functions called here
    # are typed with it and refuse an unknown option at run time (this module does not import it).
    def mermaid_image(self, **kwargs: Any) -> bytes:
        """The diagram (`render`'s text) drawn as an image by the mermaid rendering service.

        A railyard addition: pydantic-graph's builder graphs only `render`. Takes the node
        API's image options (`image_type`, `pdf_fit`, `pdf_landscape`, `pdf_paper`,
        `background_color`, `theme`, `width`, `height`, `scale`, `httpx_client`,
        `base_url`) and `render`'s `title` and `direction`; see
        `railyard.builder.mermaid.MermaidConfig`. Needs `pip install 'railyard-graph[image]'`.

        Raises:
            TypeError: an option is not one of `railyard.builder.mermaid.MermaidConfig`'s.
            MermaidServiceError: the service could not be reached, or answered with an error.
        """
        from railyard.builder.mermaid import mermaid_image

        return mermaid_image(self, **kwargs)

    def mermaid_save(self, path: Any, /, **kwargs: Any) -> None:
        """Save the diagram to `path`: `render`'s text for `.md`/`.mmd`/`.mermaid`, else an image.

        A railyard addition. `path` is a `str` or a `pathlib.Path`; the options are
        `mermaid_image`'s, and the image format comes from `image_type`, or else from the
        file suffix. A text file needs no service.

        Raises:
            TypeError: an option is not one of `railyard.builder.mermaid.MermaidConfig`'s.
            MermaidServiceError: an image was needed and the service could not render it.
        """
        from railyard.builder.mermaid import mermaid_save

        mermaid_save(self, path, **kwargs)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}\n{self.render()}\n>"
