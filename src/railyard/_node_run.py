"""The node API's runs: `GraphRun` (iterated, or driven with `next`), its result, and what opens and closes them."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, cast

from railyard import _logging  # noqa: F401  # puts the NullHandler on the `railyard` logger at import
from railyard._node_program import NodeProgram
from railyard.exceptions import GraphRuntimeError
from railyard.nodes import BaseNode, DepsT, End, GraphRunContext, RunEndT, StateT, node_task
from railyard.persistence import BaseStatePersistence
from railyard.runtime._tasks import Task

# What only a run, a diagram or a history needs (the runtime loop, the in-memory log,
# tracing, the mermaid code and service) is imported where it is first used: in the
# functions that start a run, draw or dump, never on the per-step path.
if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from railyard.graph import Graph
    from railyard.persistence.in_mem import SimpleStatePersistence
    from railyard.runtime._executor import Executor
    from railyard.state import HistoryStep
    from railyard.store import RunStore


__all__ = ("GraphRun", "GraphRunResult", "ResumeContext", "RunContext", "default_persistence", "durable_persistence")


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
        """The run's history, step by step (the seeds' API).

        Raises:
            AttributeError: the run kept no history (pydantic-graph 1.x's results have none).
        """
        if self._history is None:
            raise AttributeError(
                "This run kept no history: pydantic-graph 1.x's `GraphRunResult` has none. Read the "
                "steps from a `FullStatePersistence` (`persistence.history`), pass `history=[]` to "
                "`Graph.iter`, or use `railyard.v0`, whose runs keep one."
            )
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
            start_node.get_snapshot_id()  # made now if the node has none (a node object keeps its id, as upstream)
        self._next_node: BaseNode[StateT, DepsT, RunEndT] | End[RunEndT] = start_node
        self._next_task: Task | None = None if isinstance(start_node, End) else node_task(start_node)
        self._recorder = persistence._recorder(graph)  # pyright: ignore[reportPrivateUsage]
        ctx = graph._context_class(state=state, deps=deps)  # pyright: ignore[reportPrivateUsage]
        ctx.run_id = self.run_id  # set, not passed: a subclass's __init__ (railyard.v0's) may not take it
        ctx.store = getattr(persistence, "store", None)  # where `run_child` keeps the children of a durable run
        self._loop = Loop(
            NodeProgram(graph),
            ctx,
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
        """The context the run's nodes get: its state, dependencies and `run_id`."""
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
            replaced = () if self._next_task is None else (self._next_task.task_id,)
            pending = self._recorder.tasks_created((task,), self.state, replaced)
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


class RunContext(Generic[StateT, DepsT, RunEndT]):
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
            persistence = default_persistence(graph, keep_history=self.history is not None)
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
        from railyard.tracing import active_tracer, run_attributes

        graph = self.graph
        tracer = active_tracer(graph.auto_instrument)
        run_span: AbstractContextManager[Any] | None = self.span
        if run_span is None and tracer is not None:
            run_id = getattr(persistence, "run_id", None)
            attributes = run_attributes(str(graph.name), run_id if isinstance(run_id, str) else None)
            attributes["graph_name"] = str(graph.name)  # pydantic-graph's name for it
            run_span = tracer.start_as_current_span(f"run graph {graph.name}", attributes=attributes)
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
            recorder = graph_run._recorder  # pyright: ignore[reportPrivateUsage]
            pending = recorder.tasks_created((graph_run._next_task,), self.state)  # pyright: ignore[reportPrivateUsage]
            if pending is not None:
                await pending
            pending = recorder.flush()  # the run exists once its block is entered
            if pending is not None:
                await pending
        return graph_run

    async def __aexit__(self, *exc_info: Any) -> None:
        durable = sys.modules.get("railyard.durable")  # not imported: no run of this process is on a store
        if self._run is not None and durable is not None and isinstance(self._opened, durable.DurablePersistence):
            # the block let go of the stored run (its lock); an in-memory run may go on, as upstream
            self._run._closed = True  # pyright: ignore[reportPrivateUsage]
        try:
            self._stack.__exit__(*exc_info)
        finally:
            if self._opened is not None:
                await self._opened._close_run()  # pyright: ignore[reportPrivateUsage]


class ResumeContext(Generic[StateT, DepsT, RunEndT]):
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
        self._inner: RunContext[StateT, DepsT, RunEndT] | None = None

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
        self._inner = RunContext(
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
        run = await self._inner.__aenter__()
        attempts: dict[str, tuple[int, float]] = getattr(self.persistence, "resume_attempts", None) or {}
        if attempts:
            run._loop.restore_attempts(attempts)  # pyright: ignore[reportPrivateUsage]
        answers: dict[str, tuple[str, Any]] = getattr(self.persistence, "resume_answers", None) or {}
        run._loop.answers.update(answers)  # pyright: ignore[reportPrivateUsage]
        started: float | None = getattr(self.persistence, "resume_started", None)
        if started is not None:
            run._loop.started_at = started  # pyright: ignore[reportPrivateUsage]
        return run

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._inner is not None:
            await self._inner.__aexit__(*exc_info)


def durable_persistence(
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


def default_persistence(graph: Graph[Any, Any, Any], *, keep_history: bool) -> SimpleStatePersistence[Any, Any]:
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


GraphRun.__module__ = GraphRunResult.__module__ = "railyard.graph"  # where users import them from
