"""A builder run's face: the `GraphRun` a caller iterates or drives, and the values it hands out.

The run itself is the shared runtime's `Loop`; this module turns its batches into
`GraphTask`s, its end into an `EndMarker`, and holds the run's recorder (durable runs)
and span. The names here are public from `railyard.builder.graph` (and `railyard.builder`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from railyard.builder.node import START_ID
from railyard.runtime._tasks import ForkStack, ForkStackItem, Task

if TYPE_CHECKING:
    from types import TracebackType

    from railyard._replay import Position
    from railyard._run_log import StoreRecorder
    from railyard.builder.graph import Graph
    from railyard.runtime._executor import Executor
    from railyard.store import RunStore

__all__ = ("EndMarker", "ErrorMarker", "GraphRun", "GraphTask", "GraphTaskRequest")

StateT = TypeVar("StateT", default=None)
DepsT = TypeVar("DepsT", default=None)
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
class _RunContext:
    """What the loop holds for a builder run (its tasks get their own `StepContext`)."""

    state: Any
    deps: Any
    run_id: str | None
    store: RunStore | None = None


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
        executor: Executor | None = None,
    ) -> None:
        from railyard.runtime._loop import Loop
        from railyard.tracing import active_tracer

        self.graph = graph
        self.inputs = inputs
        self._span = span
        self._recorder = recorder
        self._resuming = resume
        self._override_record: Awaitable[None] | None = None
        self._loop = Loop(
            graph._program,  # pyright: ignore[reportPrivateUsage]
            _RunContext(
                state,
                deps,
                recorder.run_id if recorder is not None else None,
                recorder.store if recorder is not None else None,
            ),
            recorder=recorder,
            tracer=active_tracer(graph.auto_instrument),
            executor=executor,
            max_concurrency=max_concurrency,
            task_class=GraphTask,
        )
        if not resume:
            self._loop.schedule([self._loop.new_task(START_ID, inputs, (ForkStackItem(START_ID, "task:0", 0),))])
        self._error: ErrorMarker | None = None
        self._end_marker: EndMarker[OutputT] | None = None
        self._handed_out = resume
        """Whether a batch has been handed out (a resumed run's pending batch counts as one)."""
        self._span_context: AbstractContextManager[Any] | None = None

    @property
    def state(self) -> StateT:
        """The run's state."""
        return self._loop.ctx.state  # type: ignore[no-any-return]

    @property
    def deps(self) -> DepsT:
        """The run's dependencies."""
        return self._loop.ctx.deps  # type: ignore[no-any-return]

    @property
    def run_id(self) -> str | None:
        """The run's id in its store (`None` for a run that is not recorded)."""
        return self._recorder.run_id if self._recorder is not None else None

    def _apply(self, point: Position) -> None:
        """Take up a stored run where it stands: its state, pending tasks, open joins and maps."""
        loop = self._loop
        loop.ctx = _RunContext(point.state, self.deps, self.run_id, self._loop.ctx.store)
        loop.number_tasks_from(point.next_task_number)
        loop.closed = set(point.closed)
        loop.schedule([GraphTask(t.node_id, t.inputs, t.fork_stack, t.task_id) for t in point.pending])
        for key, join_state in point.joins.items():
            loop.restore_join(key, join_state)
        for spec, fork_stack, node_run_id, start in point.maps:
            loop.restore_map(spec, fork_stack, node_run_id, start)
        if point.attempts:
            loop.restore_attempts(point.attempts)
        loop.answers.update(point.answers)
        if point.started_at is not None:
            loop.started_at = point.started_at  # its run timeout counts from its start

    # -- the public API -----------------------------------------------------------------

    @property
    def next_task(self) -> EndMarker[OutputT] | ErrorMarker | Sequence[GraphTask]:
        """The batch of tasks about to start, or the end (or error) of the run."""
        if self._end_marker is not None:
            return self._end_marker
        if self._error is not None:
            return self._error
        return self._loop.ready  # type: ignore[return-value]  # the loop makes GraphTasks

    @property
    def output(self) -> OutputT | None:
        """The run's output once it has ended, else `None`."""
        return self._end_marker.value if self._end_marker is not None else None

    def override_next(self, value: Sequence[GraphTaskRequest] | EndMarker[OutputT]) -> None:
        """Replace the tasks about to start (or end the run with an `EndMarker`).

        Exactly the tasks given run next, each once (with new task ids); the ones they
        replace never run. After a step raised (`next_task` is an `ErrorMarker`), this is
        how a caller recovers: the run goes on with the given tasks (the branches the error
        cancelled stay cancelled; joins keep the values they had). Call it between
        iterations, not while one is in flight.
        """
        loop = self._loop
        if self._error is not None:
            self._error = None
            loop.recover()
        if isinstance(value, EndMarker):
            self._end_marker = value
            loop.stop()
            return
        pending = {id(task): task for task in loop.ready}
        tasks: list[Task] = [
            pending[id(request)]
            if id(request) in pending
            else loop.new_task(request.node_id, request.inputs, request.fork_stack)
            for request in value
        ]
        kept = {id(task) for task in tasks}
        replaced = tuple(task.task_id for task in loop.ready if id(task) not in kept)
        created = [task for task in tasks if id(task) not in pending]
        loop.schedule(tasks)
        if self._recorder is not None and (created or replaced):
            # recorded before they start: queued when the run is open, else written before the next batch
            # (a filter creates nothing: the kept tasks, scheduled again, carry what it replaced)
            self._override_record = self._recorder.tasks_created(created or tasks, self.state, replaced)

    async def next(
        self, value: EndMarker[OutputT] | Sequence[GraphTaskRequest] | None = None
    ) -> EndMarker[OutputT] | Sequence[GraphTask]:
        """Start the pending tasks (or `value` instead) and return the next batch, or the end.

        Handing back the pending batch itself (`run.next(run.next_task)`) runs it as it is.
        As in pydantic-graph, a first `next()` before any batch was handed out runs the
        start's batch first, then the one after it (or `value` in its place).

        Raises:
            StopAsyncIteration: the run has ended (`value` an `EndMarker` ends it so).
            Exception: a step's exception, until the caller recovers with `override_next`.
        """
        if not self._handed_out:
            await self.__anext__()  # the start's batch, run before `value` takes the place of what follows it
        if value is not None and value is self.next_task:
            value = None  # the pending batch, handed back: run it as it is
        if value is not None:
            self.override_next(value)
        return await self.__anext__()

    def __aiter__(self) -> AsyncIterator[EndMarker[OutputT] | Sequence[GraphTask]]:
        return self

    async def _run_to_end(self) -> None:
        """Drive the run to its end without handing out batches (`Graph.run`, `Graph.resume`)."""
        if self._end_marker is not None:
            return
        if self._error is not None:
            raise self._error.error
        try:
            end = await self._loop.run_to_end()
        except BaseException as error:
            import anyio

            if not isinstance(error, anyio.get_cancelled_exc_class()):
                self._error = ErrorMarker(error)
            raise
        self._end_marker = EndMarker(end.data)

    async def __anext__(self) -> EndMarker[OutputT] | Sequence[GraphTask]:
        self._handed_out = True
        if self._end_marker is not None:
            raise StopAsyncIteration
        if self._error is not None:
            raise self._error.error
        recording, self._override_record = self._override_record, None
        if recording is not None:
            await recording
        try:
            batch = await self._loop.advance()
        except BaseException as error:
            import anyio

            if not isinstance(error, anyio.get_cancelled_exc_class()):
                self._error = ErrorMarker(error)
            raise
        if isinstance(batch, list):
            return batch  # type: ignore[return-value]  # the loop makes GraphTasks
        self._end_marker = EndMarker(batch.data)
        return self._end_marker

    # -- context ------------------------------------------------------------------------

    async def __aenter__(self) -> GraphRun[StateT, DepsT, OutputT]:
        tracer = self._loop.tracer
        span = self._span
        if span is None and tracer is not None:
            from railyard.tracing import run_attributes

            name = self.graph._span_name()  # pyright: ignore[reportPrivateUsage]
            attributes = run_attributes(name, self.run_id)
            self._loop.trace_attributes = dict(attributes)
            attributes["graph_name"] = name  # pydantic-graph's name for it
            span = tracer.start_as_current_span(f"run graph {name}", attributes=attributes)
        if span is not None:
            span.__enter__()
            self._span_context = span
        if self._recorder is not None:
            await self._recorder.open(new=not self._resuming)
            try:
                if self._resuming:
                    from railyard.builder._durable import replay

                    self._apply(await replay(self.graph, self._recorder.store, self._recorder.run_id, self.deps))
                    self._recorder.exists = True
                else:
                    pending = self._recorder.tasks_created(self._loop.ready, self.state)
                    if pending is not None:
                        await pending
                    pending = self._recorder.flush()  # the run exists once its block is entered
                    if pending is not None:
                        await pending
            except BaseException:
                await self._recorder.close()
                raise
        await self._loop.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        try:
            await self._loop.__aexit__(kind, error, traceback)
        finally:
            if self._recorder is not None:
                import anyio

                with anyio.CancelScope(shield=True):
                    await self._recorder.close()
            if self._span_context is not None:
                self._span_context.__exit__(kind, error, traceback)
        return None


for _public in (GraphTask, GraphTaskRequest, EndMarker, ErrorMarker, GraphRun):
    _public.__module__ = "railyard.builder.graph"  # where users (and pydantic-graph's code) import them from
