"""A built builder graph, and its runs: many tasks at once, forks, joins, bounded concurrency.

A run is the shared runtime's scheduler executing tasks (node id + inputs + fork stack).
Here many tasks run at once in an anyio task group; each task's fork stack says which
fork branches it belongs to, and a join fires once no task (and no unfinished map) is
left inside the fork it waits for.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Generator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from typing_extensions import TypeVar

from railyard._sync import refuse_running_loop
from railyard.builder.decision import Decision
from railyard.builder.durable import ResumePoint, StoreRecorder, closing_id
from railyard.builder.join import Join, JoinState, ReducerContext
from railyard.builder.node import START_ID, EndNode, Fork, StartNode
from railyard.builder.parent_forks import ParentFork
from railyard.builder.paths import DestinationMarker, Path, TransformMarker, _check_concurrency  # pyright: ignore[reportPrivateUsage]
from railyard.builder.step import NodeStep, Step, StepContext
from railyard.nodes import BaseNode, End, GraphRunContext
from railyard.runtime.recorder import Outcome
from railyard.runtime.scheduler import Scheduler
from railyard.runtime.tasks import ForkStack, ForkStackItem, Task
from railyard.store import RunStore
from railyard.tracing import active_tracer

__all__ = ("EndMarker", "ErrorMarker", "Graph", "GraphRun", "GraphTask", "GraphTaskRequest", "JoinItem")

StateT = TypeVar("StateT", default=None)
DepsT = TypeVar("DepsT", default=None)
InputT = TypeVar("InputT", default=None)
OutputT = TypeVar("OutputT", default=None)


class GraphTask(Task):
    """A task of a builder run: run `node_id` on `inputs` inside `fork_stack`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"GraphTask(node_id={self.node_id!r}, inputs={self.inputs!r})"


@dataclass
class GraphTaskRequest:
    """A task to run, given to `GraphRun.next` to replace the pending ones (gets a task id then)."""

    node_id: str
    inputs: Any
    fork_stack: ForkStack = field(default=(), repr=False)


@dataclass
class EndMarker(Generic[OutputT]):
    """The end of a run, with its output."""

    _value: OutputT

    @property
    def value(self) -> OutputT:
        """The run's output."""
        return self._value


@dataclass
class ErrorMarker:
    """A run stopped by a task's exception."""

    error: BaseException


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
    ) -> None:
        self.name = name
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
        self._branch_paths = branch_paths
        self._routes: dict[str, list[_Route]] = {
            source: [_compile(path) for path in paths] for source, paths in edges_by_source.items()
        }

    def get_parent_fork(self, join_id: str) -> ParentFork:
        """The fork `join_id` waits for.

        Raises:
            RuntimeError: `join_id` is not a join.
        """
        parent = self.parent_forks.get(join_id)
        if parent is None:
            raise RuntimeError(f"Node {join_id} is not a join node or did not have a dominating fork (this is a bug)")
        return parent

    @property
    def intermediate_join_nodes(self) -> dict[str, set[str]]:
        """For each join, the joins between its parent fork and itself."""
        return {
            join_id: {n for n in parent.intermediate_nodes if isinstance(self.nodes.get(n), Join)}
            for join_id, parent in self.parent_forks.items()
        }

    def is_final_join(self, join_id: str) -> bool:
        """Whether no join comes after `join_id` on the way to the end."""
        return not any(join_id in inner for inner in self.intermediate_join_nodes.values())

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
    ) -> OutputT:
        """Run the graph to its end and return its output (durably, in `store`, if given).

        Raises:
            Exception: a step's exception, as it was raised (its note names the step); the
                other branches are cancelled first.
            RuntimeError: the run finished without reaching the end node.
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
        ) as run:
            async for _ in run:
                pass
        return run.output  # type: ignore[return-value]  # the run reached the end

    def run_sync(
        self,
        *,
        state: StateT = None,  # type: ignore[assignment]
        deps: DepsT = None,  # type: ignore[assignment]
        inputs: InputT = None,  # type: ignore[assignment]
        infer_name: bool = True,
        max_concurrency: int | None = None,
    ) -> OutputT:
        """Run the graph from synchronous code (it starts an event loop).

        Raises:
            RuntimeError: called while an event loop is running in this thread.
        """
        refuse_running_loop("Graph.run_sync()", "await graph.run(...)")
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        return asyncio.run(
            self.run(state=state, deps=deps, inputs=inputs, infer_name=False, max_concurrency=max_concurrency)
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
    ) -> AbstractAsyncContextManager[GraphRun[StateT, DepsT, OutputT]]:
        """A context manager giving a `GraphRun`: iterate it to see each batch of tasks as it starts.

        With a `store`, the run is durable: recorded there under `run_id` (new if not given),
        so that `iter_resume` / `resume` can take it up after a crash.

        Raises:
            ValueError: `max_concurrency` is not a whole number of at least 1.
        """
        if infer_name and self.name is None:
            self._infer_name(inspect.currentframe())
        limit = _check_concurrency(max_concurrency, "Graph.iter()") or self.max_concurrency
        recorder = self._store_recorder(store, run_id)
        return GraphRun(
            self, state=state, deps=deps, inputs=inputs, span=span, max_concurrency=limit, recorder=recorder
        )

    def iter_resume(
        self,
        store: RunStore,
        run_id: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        span: AbstractContextManager[Any] | None = None,
        max_concurrency: int | None = None,
    ) -> AbstractAsyncContextManager[GraphRun[StateT, DepsT, OutputT]]:
        """Take up a stored run where it stopped: only the branches that had not finished run.

        Raises:
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
        )

    async def resume(
        self,
        store: RunStore,
        run_id: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        max_concurrency: int | None = None,
    ) -> OutputT:
        """Carry a stored run on to its end and return its output (see `iter_resume`)."""
        async with self.iter_resume(store, run_id, deps=deps, max_concurrency=max_concurrency) as run:
            async for _ in run:
                pass
        return run.output  # type: ignore[return-value]  # the run reached the end

    def _store_recorder(self, store: RunStore | None, run_id: str | None) -> StoreRecorder | None:
        if store is None:
            return None
        from railyard._ids import new_hex_id
        from railyard.builder.durable import builder_codec

        return StoreRecorder(store, run_id or new_hex_id(), builder_codec(self), exists=False)

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

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}\n{self.render()}\n>"


@dataclass
class _MapSource:
    """A map whose items have not all become tasks yet."""

    fork: Fork
    items: Iterator[Any] | AsyncIterator[Any]
    fork_stack: ForkStack
    node_run_id: str
    is_async: bool
    index: int = 0
    done: bool = False
    waiting: anyio.Event | None = None


@dataclass
class _RunContext:
    """What the scheduler holds for a builder run (its tasks get their own `StepContext`)."""

    state: Any
    deps: Any


class _NullRecorder:
    """Records nothing: builder runs are not persisted yet."""

    def tasks_created(self, tasks: Sequence[Task], state: Any) -> None:
        return None

    def step_started(self, task: Task, state: Any) -> None:
        return None

    def step_finished(self, task: Task, outcome: Outcome, state: Any, duration: float) -> None:
        return None

    def step_failed(self, task: Task, error: BaseException, duration: float) -> None:
        return None


class GraphRun(Generic[StateT, DepsT, OutputT]):
    """A builder run: async-iterate over the batches of tasks as they start, or drive it with `next`."""

    def __init__(
        self,
        graph: Graph[StateT, DepsT, Any, OutputT],
        *,
        state: StateT,
        deps: DepsT,
        inputs: Any,
        span: AbstractContextManager[Any] | None = None,
        max_concurrency: int | None = None,
        recorder: StoreRecorder | None = None,
        resume: bool = False,
    ) -> None:
        self.graph = graph
        self.state = state
        self.deps = deps
        self.inputs = inputs
        self._span = span
        self._limit = max_concurrency
        self._task_ids = itertools.count()
        self._recorder = recorder
        self._resuming = resume
        self._closed: set[str] = set()
        self._closes: list[tuple[str, str, list[GraphTask]]] = []
        start_item = ForkStackItem(START_ID, "task:0", 0)
        self._next: EndMarker[OutputT] | ErrorMarker | Sequence[GraphTask] = (
            [] if resume else [self._task(START_ID, inputs, (start_item,))]
        )
        self._started = False
        self._pulled = False
        self._output: OutputT | None = None
        self._live: Counter[str] = Counter()
        self._running: dict[str, tuple[GraphTask, Callable[[], Any]]] = {}
        self._completed: deque[tuple[str, Any]] = deque()
        self._continuations: set[asyncio.Task[None]] = set()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): every task runs in the task group
            self._loop = None
        self._queued: deque[GraphTask] = deque()
        self._joins: dict[tuple[str, str], JoinState] = {}
        self._sources: list[_MapSource] = []
        self._task_group: TaskGroup | None = None
        self._send: MemoryObjectSendStream[tuple[str, Any]]
        self._receive: MemoryObjectReceiveStream[tuple[str, Any]]
        self._scheduler = Scheduler(
            _Program(self),
            recorder if recorder is not None else _NullRecorder(),
            _RunContext(self.state, deps),
            tracer=active_tracer(graph.auto_instrument),
        )
        self._span_context: AbstractContextManager[Any] | None = None
        self._plain = recorder is None and self._scheduler.tracer is None
        self._count(self._next)

    def _apply(self, point: ResumePoint) -> None:
        """Take up a stored run where it stands: its state, pending tasks, open joins and maps."""
        self.state = point.state
        self._scheduler.ctx = _RunContext(point.state, self.deps)
        self._task_ids = itertools.count(point.next_task_number - 1)
        self._closed = set(point.closed)
        self._next = [GraphTask(t.node_id, t.inputs, t.fork_stack, t.task_id) for t in point.pending]
        self._count(self._next)
        for key, join_state in point.joins.items():
            self._joins[key] = join_state
            for item in self._join_holds(key, join_state.downstream_fork_stack):
                self._live[item.node_run_id] += 1
        for fork, items, fork_stack, node_run_id, start in point.maps:
            source = _MapSource(fork, iter(items), fork_stack, node_run_id, is_async=False, index=start)
            self._hold_source(source)
            self._sources.append(source)

    # -- the public API -----------------------------------------------------------------

    @property
    def next_task(self) -> EndMarker[OutputT] | ErrorMarker | Sequence[GraphTask]:
        """The batch of tasks about to start, or the end (or error) of the run."""
        return self._next

    @property
    def output(self) -> OutputT | None:
        """The run's output once it has ended, else `None`."""
        return self._output

    def override_next(self, value: Sequence[GraphTaskRequest] | EndMarker[OutputT]) -> None:
        """Replace the tasks about to start (or end the run with an `EndMarker`)."""
        if isinstance(self._next, Sequence) and not self._started:
            self._uncount(self._next)
        if isinstance(value, EndMarker):
            self._end(value)
            return
        tasks = [self._task(r.node_id, r.inputs, r.fork_stack) for r in value]
        self._count(tasks)
        self._next = tasks
        self._started = False

    async def next(
        self, value: EndMarker[OutputT] | Sequence[GraphTaskRequest] | None = None
    ) -> EndMarker[OutputT] | Sequence[GraphTask]:
        """Start the pending tasks (or `value` instead) and return the next batch, or the end."""
        if value is not None and value is not self._next:
            self.override_next(value)
        return await self.__anext__()

    def __aiter__(self) -> AsyncIterator[EndMarker[OutputT] | Sequence[GraphTask]]:
        return self

    async def __anext__(self) -> EndMarker[OutputT] | Sequence[GraphTask]:
        current = self._next
        if isinstance(current, EndMarker):
            raise StopAsyncIteration
        if isinstance(current, ErrorMarker):
            raise current.error
        if not self._started:
            self._started = True
            for task in current:
                self._start(task)
        try:
            batch = await self._advance()
        except BaseException as error:
            if not isinstance(error, anyio.get_cancelled_exc_class()):
                self._next = ErrorMarker(error)
            self._stop()
            raise
        if isinstance(batch, EndMarker):
            self._end(batch)
            return batch
        self._next = batch
        self._started = self._pulled
        self._pulled = False
        return batch

    # -- context ------------------------------------------------------------------------

    async def __aenter__(self) -> GraphRun[StateT, DepsT, OutputT]:
        tracer = self._scheduler.tracer
        span = self._span
        if span is None and tracer is not None:
            span = tracer.start_as_current_span(
                f"run graph {self.graph.name}", attributes={"graph_name": str(self.graph.name)}
            )
        if span is not None:
            span.__enter__()
            self._span_context = span
        if self._recorder is not None:
            await self._recorder.open(new=not self._resuming)
            try:
                if self._resuming:
                    from railyard.builder.durable import replay

                    self._apply(await replay(self.graph, self._recorder.store, self._recorder.run_id, self.deps))
                    self._recorder.exists = True
                elif isinstance(self._next, list):
                    await self._recorder.tasks_created(self._next, self.state)
            except BaseException:
                await self._recorder.close()
                raise
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, Any]](float("inf"))
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        self._stop()
        group, self._task_group = self._task_group, None
        try:
            if self._continuations:  # nothing keeps running after the run's block exits
                with anyio.CancelScope(shield=True):
                    await asyncio.gather(*self._continuations, return_exceptions=True)
            if group is not None:
                await group.__aexit__(None, None, None)
        finally:
            if self._recorder is not None:
                with anyio.CancelScope(shield=True):
                    await self._recorder.close()
            self._send.close()
            self._receive.close()
            if self._span_context is not None:
                self._span_context.__exit__(kind, error, traceback)
        return None

    # -- the engine -----------------------------------------------------------------------

    def _task(self, node_id: str, inputs: Any, fork_stack: ForkStack) -> GraphTask:
        return GraphTask(node_id, inputs, fork_stack, f"task:{next(self._task_ids) + 1}")

    def _count(self, tasks: Sequence[Task] | Any) -> None:
        if type(tasks) is list or isinstance(tasks, Sequence):
            live = self._live
            for task in tasks:
                for item in task.fork_stack:  # pyright: ignore[reportAttributeAccessIssue]
                    live[item.node_run_id] += 1

    def _uncount(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            for item in task.fork_stack:
                self._live[item.node_run_id] -= 1

    def _start(self, task: GraphTask) -> None:
        if self._limit is not None and len(self._running) >= self._limit:
            self._queued.append(task)
            return
        if self._loop is None:
            scope = anyio.CancelScope()
            self._running[task.task_id] = (task, scope.cancel)
            assert self._task_group is not None, "the run's `async with` block is open"
            self._task_group.start_soon(self._run_task, task, scope, name=f"railyard task {task.node_id}")
            return
        if self._plain and type(self.graph.nodes[task.node_id]) in _STRUCTURAL:
            # forks, decisions, joins, start and end never wait: with nothing to record or
            # trace, they run here and now
            self._running[task.task_id] = (task, _nothing)
            try:
                outcome = self._route(task, self._execute_structural(task))
            except Exception as error:
                self._completed.append(("error", (task, error)))
                return
            self._completed.append(("done", (task, outcome)))
            return
        # On asyncio a task runs at once, up to its first real wait: a step that never waits
        # finishes without a task of its own.
        node = self.graph.nodes[task.node_id]
        if self._plain and type(node) is Step and not node.stream:
            # nothing to record or trace: the step's own coroutine is the task; its value is
            # routed when it arrives
            kind = "value"
            step: Coroutine[Any, Any, Any] = node.call(
                StepContext(state=self.state, deps=self.deps, inputs=task.inputs, step_id=task.task_id)
            )
        else:
            kind = "done"
            step = self._scheduler.step(task)
        context = contextvars.copy_context()
        self._running[task.task_id] = (task, _nothing)
        try:
            waiting = context.run(step.send, None)
        except StopIteration as done:
            self._completed.append((kind, (task, done.value)))
            return
        except Exception as error:
            self._completed.append(("error", (task, error)))
            return
        resumed = _Continuation(
            step,
            waiting,
            lambda outcome, value: self._send.send_nowait((kind if outcome == "done" else outcome, (task, value))),
        )
        continuation = self._loop.create_task(resumed, context=context)
        self._continuations.add(continuation)
        continuation.add_done_callback(self._continuations.discard)
        self._running[task.task_id] = (task, continuation.cancel)

    def _noted(self, task: GraphTask, error: BaseException) -> BaseException:
        """Add a note naming the node that raised `error`."""
        node = self.graph.nodes.get(task.node_id)
        error.add_note(f"raised by node `{task.node_id}` ({type(node).__name__}) in task {task.task_id}")
        return error

    async def _run_task(self, task: GraphTask, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                outcome = await self._scheduler.step(task)
            except Exception as error:
                self._send.send_nowait(("error", (task, error)))
                return
            self._send.send_nowait(("done", (task, outcome)))

    async def _advance(self) -> EndMarker[OutputT] | list[GraphTask]:
        """Wait for tasks to finish until one leads somewhere: new tasks, or the end."""
        while True:
            produced = self._pull_sync_items()
            if produced:
                await self._record_created(produced)
                for task in produced:
                    self._start(task)
                self._pulled = True  # map items start as they are pulled
                return produced
            if not self._running and not self._queued and not self._completed and not self._async_sources_busy():
                produced = self._finish_joins()
                await self._record_closes()
                if produced:
                    return produced
                if self._next:  # nothing more will ever happen
                    return []
                raise RuntimeError(
                    "Graph run completed, but no result was produced. This is either a bug in the graph or a bug "
                    "in the graph runner."
                )
            if self._completed:
                kind, payload = self._completed.popleft()
            else:
                kind, payload = await self._receive.receive()
            outcome: EndMarker[OutputT] | list[GraphTask]
            if kind == "error":
                failed, error = payload
                raise self._noted(failed, error)
            if kind == "item":
                source, item = payload
                outcome = self._map_item(source, item)
                if outcome:
                    await self._record_created(outcome)
                    for task in outcome:
                        self._start(task)
                    self._pulled = True  # started as they are made: an event of their own
                    return outcome
            elif kind == "source_done":
                outcome = self._source_done(payload)
            elif kind == "value":  # a step's return value, still to be routed
                task, value = payload
                try:
                    routed = self._route(task, value)
                except Exception as error:
                    raise self._noted(task, error) from None
                outcome = self._finished(task, routed)
            else:
                task, result = payload
                outcome = self._finished(task, result)
            if isinstance(outcome, EndMarker):
                return outcome
            produced = outcome + self._finish_joins()
            await self._record_closes()
            if produced:
                return produced

    async def _record_created(self, tasks: list[GraphTask]) -> None:
        """Record tasks made outside a step (a map's items) before they start."""
        if self._recorder is not None:
            await self._recorder.tasks_created(tasks, self.state)

    async def _record_closes(self) -> None:
        """Record each join that closed, with the tasks its value went on to."""
        closes, self._closes = self._closes, []
        for close_id, join_id, tasks in closes:
            self._closed.add(close_id)
            if self._recorder is not None:
                await self._recorder.step_finished(Task(join_id, None, (), close_id), tasks, self.state, 0.0)

    def _finished(self, task: GraphTask, outcome: Outcome) -> EndMarker[OutputT] | list[GraphTask]:
        if self._running.pop(task.task_id, None) is None:
            return []  # cancelled (its fork was cut short) just as it finished: already let go of
        if isinstance(outcome, End):
            return EndMarker(outcome.data)
        produced = [t for t in outcome if isinstance(t, GraphTask)]
        self._count(produced)
        self._uncount([task])
        self._capacity_freed()
        return produced

    def _capacity_freed(self) -> None:
        while self._queued and (self._limit is None or len(self._running) < self._limit):
            self._start(self._queued.popleft())
        for source in self._sources:
            if source.waiting is not None:
                source.waiting.set()

    # maps

    def _map(self, fork: Fork, value: Any, task: GraphTask) -> list[GraphTask]:
        node_run_id = task.task_id  # the fork's task names its branches (so a resume can find them)
        if isinstance(value, AsyncIterable):
            items: Iterator[Any] | AsyncIterator[Any] = aiter(value)
            source = _MapSource(fork, items, task.fork_stack, node_run_id, is_async=True)
        else:
            try:
                items = iter(value)
            except TypeError:
                raise RuntimeError(f"Cannot map non-iterable value: {value!r}") from None
            source = _MapSource(fork, items, task.fork_stack, node_run_id, is_async=False)
        self._hold_source(source)
        self._sources.append(source)
        if source.is_async:
            assert self._task_group is not None
            self._task_group.start_soon(self._pump, source)
        return []

    def _hold_source(self, source: _MapSource) -> None:
        """A map holds its fork and the forks around it open until it is exhausted."""
        for item in source.fork_stack:
            self._live[item.node_run_id] += 1
        self._live[source.node_run_id] += 1

    def _map_capacity(self, source: _MapSource, pulled: int = 0) -> bool:
        limit = source.fork.max_concurrency
        if limit is not None and self._live[source.node_run_id] - 1 >= limit:  # less the map's own hold
            return False
        return self._limit is None or len(self._running) + len(self._queued) + pulled < self._limit

    def _pull_sync_items(self) -> list[GraphTask]:
        produced: list[GraphTask] = []
        for source in list(self._sources):
            if source.is_async or source.done:
                continue
            while self._map_capacity(source, len(produced)):
                items = source.items
                assert isinstance(items, Iterator)
                try:
                    item = next(items)
                except StopIteration:
                    produced += self._source_done(source)
                    break
                produced += self._map_item(source, item)
        if produced:
            self._started = True  # these tasks are started as they are pulled
        return produced

    async def _pump(self, source: _MapSource) -> None:
        """Pull an async iterable's items as capacity allows, handing each to the run."""
        items: AsyncIterator[Any] = source.items  # type: ignore[assignment]
        async for item in items:
            while not self._map_capacity(source) and not source.done:
                source.waiting = anyio.Event()
                await source.waiting.wait()
            if source.done:  # cancelled: its fork was cut short
                return
            self._live[source.node_run_id] += 1  # the item counts at once, so capacity holds
            await self._send.send(("item", (source, item)))
        await self._send.send(("source_done", source))

    def _async_sources_busy(self) -> bool:
        return any(source.is_async and not source.done for source in self._sources)

    def _map_item(self, source: _MapSource, item: Any) -> list[GraphTask]:
        stack = (*source.fork_stack, ForkStackItem(source.fork.id, source.node_run_id, source.index))
        source.index += 1
        tasks = self._follow(source.fork.id, item, stack)
        self._count(tasks)
        if source.is_async:
            self._live[source.node_run_id] -= 1  # the pump's reservation, now held by the tasks
            if source.done:
                self._uncount(tasks)
                return []
        return tasks

    def _source_done(self, source: _MapSource) -> list[GraphTask]:
        if source.done:
            return []
        source.done = True
        self._sources.remove(source)
        produced: list[GraphTask] = []
        if source.index == 0 and source.fork.downstream_join_id is not None:
            # mapping nothing: the join downstream still produces its initial value
            join = self.graph.nodes[source.fork.downstream_join_id]
            key, downstream = self._join_key(join, source.fork_stack)
            self._open_join(join, key, downstream)
        for item in source.fork_stack:
            self._live[item.node_run_id] -= 1
        self._live[source.node_run_id] -= 1
        return produced

    # joins

    def _join_key(self, join: Join[Any], fork_stack: ForkStack) -> tuple[tuple[str, str], ForkStack]:
        return join_key(self.graph, join, fork_stack)

    def _open_join(self, join: Join[Any], key: tuple[str, str], downstream: ForkStack) -> JoinState | None:
        state = self._joins.get(key)
        if state is None:
            if closing_id(*key) in self._closed:
                return None  # closed before a resume: its value has gone on already
            state = self._joins[key] = JoinState(join.initial_factory(), downstream)
            for item in self._join_holds(key, downstream):  # an open join holds the forks around it open
                self._live[item.node_run_id] += 1
        return state

    @staticmethod
    def _join_holds(key: tuple[str, str], downstream: ForkStack) -> ForkStack:
        """The forks around a join's own fork, which an open join keeps from finishing."""
        return tuple(item for item in downstream if item.node_run_id != key[1])

    def _reduce(self, join: Join[Any], task: GraphTask) -> None:
        key, downstream = self._join_key(join, task.fork_stack)
        state = self._open_join(join, key, downstream)
        if state is None:
            return
        fork_run_id = key[1]

        def cancel() -> None:
            self._cancel_fork(fork_run_id, keep=task.task_id)

        context: ReducerContext[Any] = ReducerContext(state=self.state, deps=self.deps, join_state=state, cancel=cancel)
        state.current = join.reduce(context, state.current, task.inputs)

    def _finish_joins(self) -> list[GraphTask]:
        """Joins whose fork has no task left: their values go on."""
        produced: list[GraphTask] = []
        for key, state in list(self._joins.items()):
            join_id, fork_run_id = key
            if self._live[fork_run_id] > 0:
                continue
            del self._joins[key]
            for item in self._join_holds(key, state.downstream_fork_stack):
                self._live[item.node_run_id] -= 1
            tasks = self._follow(join_id, state.current, state.downstream_fork_stack)
            self._count(tasks)
            self._closes.append((closing_id(join_id, fork_run_id), join_id, tasks))
            produced += tasks
        return produced

    def _cancel_fork(self, fork_run_id: str, *, keep: str) -> None:
        """Cancel every task and unfinished map inside fork run `fork_run_id` (but `keep`)."""
        for task_id, (running, cancel) in list(self._running.items()):
            if task_id != keep and any(item.node_run_id == fork_run_id for item in running.fork_stack):
                cancel()
                del self._running[task_id]
                self._uncount([running])
        for queued in list(self._queued):
            if any(item.node_run_id == fork_run_id for item in queued.fork_stack):
                self._queued.remove(queued)
                self._uncount([queued])
        for source in list(self._sources):
            if any(item.node_run_id == fork_run_id for item in (*source.fork_stack, _stack_item(source))):
                source.done = True
                self._sources.remove(source)
                for item in source.fork_stack:
                    self._live[item.node_run_id] -= 1
                self._live[source.node_run_id] -= 1
                if source.waiting is not None:
                    source.waiting.set()

    # routing

    def _follow(self, source_id: str, value: Any, fork_stack: ForkStack) -> list[GraphTask]:
        routes = self.graph._routes.get(source_id)  # pyright: ignore[reportPrivateUsage]
        if routes is None:
            return []
        if len(routes) == 1 and not routes[0][0] and routes[0][1] is not None:  # straight to one node
            return [self._task(routes[0][1], value, fork_stack)]
        return self._along(routes, value, fork_stack)

    def _follow_paths(self, paths: Sequence[Path], value: Any, fork_stack: ForkStack) -> list[GraphTask]:
        return self._along([_compile(path) for path in paths], value, fork_stack)

    def _along(self, routes: Sequence[_Route], value: Any, fork_stack: ForkStack) -> list[GraphTask]:
        tasks: list[GraphTask] = []
        for transforms, destination in routes:
            current = value
            for transform in transforms:
                current = transform(StepContext(state=self.state, deps=self.deps, inputs=current))
            if destination is not None:
                tasks.append(self._task(destination, current, fork_stack))
        return tasks

    def _route(self, task: GraphTask, result: Any) -> Outcome:
        node = self.graph.nodes[task.node_id]
        if isinstance(node, EndNode):
            return End(result)
        if isinstance(node, Fork):
            if node.is_map:
                return self._map(node, result, task)
            node_run_id = task.task_id
            tasks: list[GraphTask] = []
            for index, path in enumerate(self.graph.edges_by_source.get(node.id, [])):
                stack = (*task.fork_stack, ForkStackItem(node.id, node_run_id, index))
                tasks += self._follow_paths([path], result, stack)
            return tasks
        if isinstance(node, Decision):
            branch = node.choose(result)
            paths = self.graph._branch_paths[node.id][node.branches.index(branch)]  # pyright: ignore[reportPrivateUsage]
            return self._follow_paths(paths, result, task.fork_stack)
        if isinstance(node, Join):
            return []
        return self._follow(task.node_id, result, task.fork_stack)

    async def _execute(self, task: GraphTask) -> Any:
        node = self.graph.nodes[task.node_id]
        if isinstance(node, NodeStep):
            instance: BaseNode[Any, Any, Any] = task.inputs
            return await instance.run(GraphRunContext(state=self.state, deps=self.deps, step_id=task.task_id))
        if isinstance(node, Step):
            context = StepContext(state=self.state, deps=self.deps, inputs=task.inputs, step_id=task.task_id)
            if node.stream:
                return node.call(context)  # its items flow on through a map as they are yielded
            return await node.call(context)
        return self._execute_structural(task)

    def _execute_structural(self, task: GraphTask) -> Any:
        node = self.graph.nodes[task.node_id]
        if isinstance(node, Join):
            self._reduce(node, task)
            return None
        if isinstance(node, StartNode | EndNode | Fork | Decision):
            return task.inputs
        raise RuntimeError(f"Node `{task.node_id}` ({node!r}) cannot be run")

    def _end(self, marker: EndMarker[OutputT]) -> None:
        self._next = marker
        self._output = marker.value
        self._stop()

    def _stop(self) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
        for continuation in self._continuations:
            continuation.cancel()


def join_key(
    graph: Graph[Any, Any, Any, Any], join: Join[Any], fork_stack: ForkStack
) -> tuple[tuple[str, str], ForkStack]:
    """The join instance a branch's value belongs to, and the fork stack the joined value continues with.

    The joined value leaves the join's parent fork: it continues with the stack outside
    that fork (the start of the run, the outermost fork, is never left).
    """
    fork_id = graph.get_parent_fork(join.id).fork_id
    for index in range(len(fork_stack) - 1, -1, -1):
        if fork_stack[index].fork_id == fork_id:
            return (join.id, fork_stack[index].node_run_id), fork_stack[: max(index, 1)]
    return (join.id, fork_stack[0].node_run_id), fork_stack[:1]


_STRUCTURAL = frozenset({StartNode, EndNode, Fork, Decision, Join})

_Route = tuple[tuple[Callable[[StepContext[Any, Any, Any]], Any], ...], str | None]
"""A path, compiled: the transforms to apply, then the destination."""


def _compile(path: Path) -> _Route:
    transforms = tuple(item.transform for item in path.items if isinstance(item, TransformMarker))
    destination = next((item.destination_id for item in path.items if isinstance(item, DestinationMarker)), None)
    return transforms, destination


def _nothing() -> None:
    """Cancels a task that has already finished: nothing to do."""


class _Continuation(Coroutine[Any, Any, None]):
    """The rest of a step that was started eagerly, as a coroutine an asyncio task can run.

    The step is already waiting on something: the task's first `send` hands that on; a
    cancellation thrown in, even before the task first runs, reaches the step as it would
    through `await`. The step's outcome, or its exception, goes to `deliver`.
    """

    __slots__ = ("deliver", "started", "step", "waiting")

    def __init__(self, step: Coroutine[Any, Any, Any], waiting: Any, deliver: Callable[[str, Any], None]) -> None:
        self.step = step
        self.waiting = waiting
        self.deliver = deliver
        self.started = False

    def _outcome(self, advance: Callable[[], Any]) -> Any:
        try:
            return advance()
        except StopIteration as done:
            self.deliver("done", done.value)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # the run (the task that drives it) raises it, whatever it is
            self.deliver("error", error)
        raise StopIteration

    def send(self, value: Any) -> Any:
        if not self.started:
            self.started = True
            return self.waiting
        return self._outcome(lambda: self.step.send(value))

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self.started = True
        error = (
            typ
            if isinstance(typ, BaseException)
            else typ(val)
            if val is None or not isinstance(val, BaseException)
            else val
        )
        return self._outcome(lambda: self.step.throw(error))

    def close(self) -> None:
        self.step.close()

    def __await__(self) -> Generator[Any, Any, None]:
        raise TypeError("a _Continuation is run as a task, not awaited")


def _stack_item(source: _MapSource) -> ForkStackItem:
    return ForkStackItem(source.fork.id, source.node_run_id, -1)


class _Program:
    """A builder run as the scheduler's program: execute a task's node, route its result."""

    __slots__ = ("run",)

    def __init__(self, run: GraphRun[Any, Any, Any]) -> None:
        self.run = run

    @property
    def name(self) -> str | None:
        return self.run.graph.name

    def execute(self, task: Task, ctx: Any) -> Any:
        return self.run._execute(task)  # type: ignore[arg-type]  # pyright: ignore[reportPrivateUsage, reportArgumentType]

    def route(self, task: Task, result: Any) -> Outcome:
        return self.run._route(task, result)  # type: ignore[arg-type]  # pyright: ignore[reportPrivateUsage, reportArgumentType]
