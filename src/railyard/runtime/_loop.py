"""The one scheduler loop: every run of every API — node, builder, agent — goes through it.

See `railyard.runtime` for the picture. The loop owns a run's tasks: the batch about to
start, the running and queued tasks, the concurrency limits, map sources pulled lazily,
join accumulators keyed by fork, and cancellation. A front end's `Program` says what a
task is and where its result leads; the `Executor` runs a step's node; the `Recorder`
hears one event per step; the tracer opens one span per step. Recording and tracing are
hooks on the one path (free when absent), never a second path.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import Sequence
from time import perf_counter, time
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from railyard import tracing
from railyard._ids import new_hex_id
from railyard.exceptions import GraphStepLimitError
from railyard.retries import StepTimeout
from railyard.runtime._end import End
from railyard.runtime._executor import Executor, InProcessExecutor
from railyard.runtime._joins import JoinKey, JoinState, closing_id, join_holds
from railyard.runtime._lanes import Lanes
from railyard.runtime._maps import MapSource, MapSources
from railyard.runtime._program import MapItems, NodeKind, Program, StepRules
from railyard.runtime._recorder import Recorder
from railyard.runtime._stopping import Stopping
from railyard.runtime._tasks import ForkStack, Task
from railyard.suspension import RunSuspended, Waiting, WaitRequested, type_path

__all__ = ("Loop",)

_IN_PROCESS = InProcessExecutor()
_STEP = NodeKind.STEP
_PARKED = object()
"""What a step that waits for a signal leads to (for now): nothing, while it holds its fork run open."""


class Loop(MapSources, Stopping):
    """Runs one graph run: starts its tasks, routes their results, and records every step.

    A front end keeps one `Loop` per run. `ready` is the batch of tasks about to start;
    `advance()` starts it and returns the next batch (the tasks that finished steps led
    to, or a map's items as they are pulled) or the run's end. Use it as an async context
    manager: on exit nothing it started keeps running.
    """

    def __init__(
        self,
        program: Program,
        ctx: Any,
        *,
        recorder: Recorder | None = None,
        tracer: trace.Tracer | None = None,
        executor: Executor | None = None,
        max_concurrency: int | None = None,
        max_steps: int | None = None,
        task_class: type[Task] = Task,
    ) -> None:
        self.program = program
        """The compiled graph."""
        self.ctx = ctx
        """The run's context as its front end shapes it: it has `state` and `deps`."""
        self.recorder = recorder
        """Hears every event of the run (`None`: nothing is recorded)."""
        self.tracer = tracer
        """Opens a span per step (`None`: tracing is off)."""
        self.trace_attributes: dict[str, AttributeValue] | None = None
        """What every step span carries of the run (graph name, run id): set by the front end that
        opens the run span, else made from the program's name and the context's `run_id` at the first step."""
        if tracer is not None and hasattr(recorder, "traced"):
            recorder.traced = True  # type: ignore[union-attr]  # a store recorder: its commits become span events
        self.executor: Executor = executor if executor is not None else _IN_PROCESS
        """Runs the steps' nodes."""
        self.limit = max_concurrency
        """At most this many tasks run at once (`None`: no limit)."""
        self.max_steps = max_steps
        """At most this many steps in the run (`None`: no limit)."""
        self.steps = 0
        """Steps started so far."""
        self.task_class = task_class
        self.ready: list[Task] = []
        """The batch of tasks about to start (or started, once `advance` has been called)."""
        self.started = False
        """Whether `ready` has been started."""
        self.closed: set[str] = set()
        """The closing ids of the joins that have closed (see `closing_id`)."""
        self.joins: dict[JoinKey, JoinState] = {}
        """The open joins, by join instance."""
        self._pulled = False
        self._task_ids = itertools.count()
        self._id_suffix = new_hex_id()
        self._closes: list[tuple[str, str, list[Task]]] = []
        self._live: Counter[str] = Counter()
        self._at: Counter[tuple[str, str]] = Counter()
        # the nodes whose presences in a join's fork run keep it open (None: any presence does)
        self._blocking = getattr(program, "join_blocking", None)
        self._running: dict[str, Task] = {}
        self._queued: deque[Task] = deque()
        self._completed: deque[tuple[str, Any]] = deque()
        self._inline: deque[Task] = deque()
        self._starting: list[Task] = []
        """Steps started in this pass of the driver whose start is not recorded yet (see `_launch`)."""
        self._start_recorded: set[str] = set()
        self._lanes = Lanes(self._step, self._arrive)
        self._sources: list[MapSource] = []
        self._pumps: list[anyio.CancelScope] = []
        self._kinds = program.kinds
        self._rules: dict[str, StepRules] = getattr(program, "step_rules", None) or {}
        self._collect = getattr(program, "collect_failure", None)
        """For a failed task: the task taking its failure on (a map with `on_error="collect"`), or `None`."""
        """Retry policy and timeout of the steps that have either (none: the plain path)."""
        self.attempts: dict[str, int] = {}
        """The attempt number of each step on its second attempt or later (a first attempt is absent)."""
        self.parked: dict[str, Waiting] = {}
        """The steps that wait for a signal, by task id (they hold their fork runs open)."""
        self.answers: dict[str, tuple[str, Any]] = {}
        """Signals delivered to waiting steps: `{key: (step id, payload as JSON)}` (see `railyard.suspension`)."""
        self._retry_due: dict[str, float] = {}
        """When the next attempt of a step taken up from a stored run is due (a POSIX timestamp)."""
        self._run_node = self.executor.bind(program.runner(self))
        self._task_group: TaskGroup | None = None
        self._wakeup: anyio.Event | None = None
        self.cancel_reason: str | None = None
        """Why the run was cancelled while driven (`cancel`), or `None`."""
        self._cancel_recorded = False
        self._own: anyio.CancelScope | None = None
        """The scope of the step the driver runs itself, while it runs (cancelled by `cancel`)."""
        self.run_timeout: float | None = getattr(program, "run_timeout", None)
        """How long the run may take, in seconds from its start (`None`: no limit)."""
        self.started_at = time()
        """When the run started (a POSIX timestamp; a resumed run's is its first record's)."""
        self._timed_out = False
        self._watched = self.run_timeout is not None or (recorder is not None and hasattr(recorder, "on_cancel"))
        """Whether the run may be stopped from outside its steps: a store that another process asks to cancel
        it, or its run timeout."""
        if recorder is not None and hasattr(recorder, "on_cancel"):
            recorder.on_cancel = self.cancel

    # -- what the front ends use --------------------------------------------------------

    @property
    def state(self) -> Any:
        """The run's state."""
        return self.ctx.state

    @property
    def deps(self) -> Any:
        """The run's dependencies."""
        return self.ctx.deps

    def new_task(self, node_id: str, inputs: Any, fork_stack: ForkStack) -> Task:
        """A task with a new id: `task:N:<hex>`, numbered in the run and unique across runs.

        The id is the step's `ctx.step_id`, an idempotency key: it must not repeat in
        another run of the same graph, and stays the same when the step is run again.
        """
        return self.task_class(node_id, inputs, fork_stack, f"task:{next(self._task_ids) + 1}:{self._id_suffix}")

    def number_tasks_from(self, number: int) -> None:
        """Give the next new task the id `task:{number}` (a resumed run goes on with its numbering)."""
        self._task_ids = itertools.count(number - 1)

    def schedule(self, tasks: Sequence[Task]) -> None:
        """Make `tasks` the batch about to start, in place of the `ready` one.

        A ready task that is among `tasks` (the same object) is kept as it is: if it has
        started (a map's items start as they are pulled) it goes on, else it starts with the
        others. A ready task left out never runs: one that has started is cancelled (before
        it runs, unless the caller has waited since the batch was handed out).
        """
        kept = {id(task) for task in tasks}
        ready = self.ready
        if not self.started:
            self._uncount(ready)
            self.ready = list(tasks)
            self._count(self.ready)
        else:
            for task in ready:
                if id(task) not in kept:
                    self._drop(task)
            running = {id(task) for task in ready}
            self.ready = [task for task in tasks if id(task) not in running]
            self._count(self.ready)
        self.started = False

    def _drop(self, task: Task) -> None:
        """Let go of a started task: it is cancelled where it is, and no longer counts."""
        if self._running.pop(task.task_id, None) is not None:
            self._lanes.cancel(task)
            if task in self._starting:
                self._starting.remove(task)
        else:
            for waiting in (self._queued, self._inline):
                if task in waiting:
                    waiting.remove(task)
                    break
            else:
                return  # finished already: what it led to has been taken in
        self._start_recorded.discard(task.task_id)
        self._uncount([task])

    def restore_join(self, key: JoinKey, state: JoinState) -> None:
        """Hold an open join taken up from a stored run."""
        self.joins[key] = state
        self._hold_join(key, state.downstream_fork_stack, 1)

    def restore_map(self, spec: MapItems, fork_stack: ForkStack, node_run_id: str, start: int) -> None:
        """Go on with a map part-way through: its remaining items, the first of them numbered `start`."""
        source = MapSource(
            spec.fork_id,
            spec.max_concurrency,
            spec.downstream_join_id,
            iter(spec.items),  # type: ignore[arg-type]  # a list, read from the store
            fork_stack,
            node_run_id,
            is_async=False,
            index=start,
        )
        self._hold_source(source)
        self._sources.append(source)

    async def __aenter__(self) -> Loop:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._task_group = group
        self._lanes.open(group)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop()
        group, self._task_group = self._task_group, None
        if group is not None:
            group.cancel_scope.cancel()
        try:
            if self._lanes.tasks:  # nothing keeps running after the run's block exits
                with anyio.CancelScope(shield=True):
                    await asyncio.gather(*self._lanes.tasks, return_exceptions=True)
            if group is not None:
                await group.__aexit__(None, None, None)
        finally:
            self._completed.clear()

    async def advance(self) -> list[Task] | End[Any]:
        """Start the `ready` batch (unless started) and return the next batch, or the run's end.

        What the run recorded up to here is durable when this returns (the recorder's `flush`).

        Raises:
            Exception: a step's exception, as raised (with the program's note); the other
                tasks are cancelled first.
        """
        outcome = await self._next_batch()
        recorder = self.recorder
        if recorder is not None:
            pending = recorder.flush()
            if pending is not None:
                await pending
        return outcome

    def recover(self) -> None:
        """Forget the work a failure cut short, so the run can go on with the tasks scheduled next.

        After a step raised, the loop has cancelled everything else that was running; a
        caller that recovers (`GraphRun.override_next` after an error) schedules what runs
        instead. Open joins keep the values they had.
        """
        self.stop()
        self._running.clear()
        self._queued.clear()
        self._completed.clear()
        for source in self._sources:
            source.done = True
        self._sources.clear()
        self._live.clear()
        self._at.clear()
        for key, state in self.joins.items():
            self._hold_join(key, state.downstream_fork_stack, 1)
        self.ready = []
        self.started = True

    async def _next_batch(self) -> list[Task] | End[Any]:
        """`advance` without the flush."""
        if self.run_timeout is not None and time() >= self.started_at + self.run_timeout:
            self._time_out()
        if self.cancel_reason is not None:
            raise await self._cancelled()
        ready = self.ready
        if not self.started:
            self.started = True
            if len(ready) == 1 and not (
                self._running or self._queued or self._completed or self._inline or self._sources
            ):
                # the only work there is: the driver runs it itself (no lane; the caller's context)
                task = ready[0]
                try:
                    routed = await (self._own_step(task) if self._watched else self._step(task))
                except BaseException as error:
                    self._failed(task, error)
                    raise
                led_to = self._took_alone(task, routed)
                if led_to is not None:
                    return led_to
            else:
                for task in ready:
                    self._start(task)
        return await self._go_on()

    async def run_to_end(self) -> End[Any]:
        """Advance until the run ends and return its end, for a caller that looks at no batch.

        The same as calling `advance` until it returns the end, but a run of lone tasks
        (the node API's every run) goes round here without a coroutine per step, and a
        step's finish is committed with the next step's start.

        Raises:
            Exception: as `advance`.
        """
        if not self._watched or self._own is not None:
            return await self._run_to_end()
        with anyio.CancelScope(deadline=self._deadline()) as scope:  # one for the whole drive, not one a step
            self._own = scope
            try:
                return await self._run_to_end()
            finally:
                self._own = None
        self._time_out()  # the scope took the cancellation (or its deadline passed): the run stops here
        raise await self._cancelled()

    async def _run_to_end(self) -> End[Any]:
        while True:
            ready = self.ready
            if (
                not self.started
                and len(ready) == 1
                and not (self._running or self._queued or self._completed or self._inline or self._sources)
                and self.cancel_reason is None
            ):
                self.started = True
                task = ready[0]
                try:
                    routed = await (self._own_step(task) if self._watched else self._step(task))
                except BaseException as error:
                    self._failed(task, error)
                    raise
                outcome = self._took_alone(task, routed)
                if outcome is None:
                    outcome = await self._go_on()
            else:
                outcome = await self._next_batch()
            if type(outcome) is not list:
                recorder = self.recorder
                if recorder is not None:
                    pending = recorder.flush()
                    if pending is not None:
                        await pending
                return outcome  # type: ignore[return-value]  # not a batch: the end

    def _took_alone(self, task: Task, routed: Any) -> list[Task] | End[Any] | None:
        """Take in what the driver's own step led to: the next batch or the end, or `None` to go on waiting."""
        if type(routed) is list and routed and not task.fork_stack and not self.joins:
            # where the node API always is: one task led to the next, outside any fork
            for next_task in routed:
                if next_task.fork_stack:  # never for the node API: no call on its hot path
                    self._count((next_task,))
            self.ready = routed
            self.started = False
            return routed
        produced = self._took(task, routed)
        if type(produced) is not list:
            self.stop()
            return produced
        if produced and not self.joins:
            self.ready = produced
            self.started = False
            return produced
        self._completed.append(("led to", produced))
        return None

    async def _go_on(self) -> list[Task] | End[Any]:
        """Wait for the started tasks until something leads on; that is the next batch, or the end."""
        try:
            outcome = await self._advance()
            if self._starting:
                await self._launch()  # what this pass started runs while the caller looks at the batch
        except BaseException:
            self.stop()
            raise
        if type(outcome) is not list:
            self.stop()
            return outcome
        self.ready = outcome
        self.started = self._pulled
        self._pulled = False
        return outcome

    def _failed(self, task: Task, error: BaseException) -> None:
        """The driver's own step raised: stop the run, and name the node on the error."""
        self.stop()
        if isinstance(error, Exception) and not isinstance(error, RunSuspended) and self.cancel_reason is None:
            self._noted(task, error)

    def stop(self) -> None:
        """Cancel every task and map still running (the run has ended or failed, or its block exits).

        Only the run's own tasks are cancelled: the caller's code in the run's `async with`
        block goes on.
        """
        self._lanes.cancel_all()
        self._starting.clear()
        self._start_recorded.clear()
        for scope in self._pumps:
            scope.cancel()
        self._inline.clear()

    # -- running a step -------------------------------------------------------------------

    async def _step(self, task: Task) -> Any:
        """Run one task and record it; return where it leads (the program's routing).

        The recorder hears `step_started` before the node runs and `step_finished` (with
        the outcome and the state) before this returns; if the node raises, it hears
        `step_failed` and the exception propagates unchanged.
        """
        self.steps += 1
        if self.max_steps is not None and self.steps > self.max_steps:
            raise GraphStepLimitError(
                f"Graph `{self.program.name}` exceeded max_steps={self.max_steps}: about to run "
                f"`{task.node_id}` as step {self.steps}. Raise max_steps if the run is meant to be "
                f"this long, or check the graph for a loop that never ends.",
                self.max_steps,
            )
        program = self.program
        recorder = self.recorder
        state = self.ctx.state
        start = 0.0
        if recorder is not None:
            if task.task_id in self._start_recorded:  # recorded with the others started beside it
                self._start_recorded.discard(task.task_id)
                pending = None
            elif self._kinds[task.node_id] is _STEP:
                pending = recorder.step_started(task, state)
            else:
                pending = recorder.structural_started(task, state)
            if pending is not None:
                await pending
            if self.cancel_reason is not None:  # asked while its start was written: it never runs
                await anyio.lowlevel.checkpoint()
            start = perf_counter()
        try:
            rules = self._rules.get(task.node_id) if self._rules else None
            if self.tracer is None:
                kind = self._kinds[task.node_id]
                if rules is not None:
                    result = await self._attempts_of(task, rules, state)
                else:
                    result = await self._run_node(task) if kind is _STEP else self._structural(task, kind)
            elif (kind := self._kinds[task.node_id]) is not _STEP:
                # structure is an event on the enclosing span, not a span: a 20-item join is 20 events
                trace.get_current_span().add_event(
                    "railyard.join" if kind is NodeKind.JOIN else "railyard.route",
                    {tracing.NODE_ID: task.node_id, tracing.STEP_ID: task.task_id},
                )
                result = (
                    await self._attempts_of(task, rules, state) if rules is not None else self._structural(task, kind)
                )
            else:
                with self.tracer.start_as_current_span(
                    f"run node {task.node_id}", attributes=self._span_attributes(task)
                ) as span:
                    if rules is not None:
                        try:
                            result = await self._attempts_of(task, rules, state)
                        finally:
                            span.set_attribute(tracing.ATTEMPT, self.attempts.get(task.task_id, 1))
                    else:
                        result = await self._run_node(task)
            outcome = program.route(task, result, self)
        except WaitRequested as wait:
            await self._park(task, wait)
            return _PARKED  # the step waits: its siblings go on, and its fork stays open
        except BaseException as error:
            attempt = self.attempts.pop(task.task_id, 1) if self.attempts else 1
            collect = self._collect
            if collect is not None and isinstance(error, Exception) and (led := collect(task, error, self)) is not None:
                # a failed branch of a collecting map: it goes on to the map's join as its failure
                outcome = [led]
            else:
                if recorder is not None:
                    pending = recorder.step_failed(task, error, perf_counter() - start, attempt)
                    if pending is not None:
                        await pending
                raise
        if self.attempts:
            self.attempts.pop(task.task_id, None)
        if recorder is not None:
            told: Any = () if type(outcome) is MapItems else outcome  # the items are told as they are pulled
            pending = recorder.step_finished(task, told, state, perf_counter() - start)
            if pending is not None:
                await pending
        return outcome

    def _span_attributes(self, task: Task) -> dict[str, AttributeValue]:
        """The attributes of a step's span: the run's (graph, run id), the step's, and pydantic-graph's names."""
        base = self.trace_attributes
        if base is None:
            name = self.program.name
            base = self.trace_attributes = tracing.run_attributes(
                name if name is not None else "graph", getattr(self.ctx, "run_id", None)
            )
        return {
            **base,
            tracing.NODE_ID: task.node_id,
            tracing.STEP_ID: task.task_id,
            tracing.ATTEMPT: self.attempts.get(task.task_id, 1),
            "node_id": task.node_id,
            "node_snapshot_id": task.task_id,
        }

    async def _attempts_of(self, task: Task, rules: StepRules, state: Any) -> Any:
        """Run a step under its retry policy and timeout; return the value of the attempt that succeeded.

        Each failed attempt the policy retries is recorded (with when the next is due)
        before the wait, and each next attempt's start before it runs; the last attempt's
        exception propagates.
        """
        policy, timeout = rules
        attempt = self.attempts.get(task.task_id, 1)
        due = self._retry_due.pop(task.task_id, None)
        if due is not None and (wait := due - time()) > 0:
            await anyio.sleep(wait)  # taken up from a stored run before its next attempt was due
        while True:
            began = perf_counter()
            try:
                if timeout is None:
                    return await self._run_node(task)
                with anyio.move_on_after(timeout):
                    return await self._run_node(task)
                raise StepTimeout(task.node_id, timeout)
            except Exception as error:
                if policy is None or not policy.retries(error, attempt):
                    raise
                delay = policy.delay(attempt)
                recorder = self.recorder
                if self.tracer is not None:
                    trace.get_current_span().add_event(
                        "railyard.attempt_failed",
                        {
                            tracing.ATTEMPT: attempt,
                            "error.type": type(error).__qualname__,
                            "railyard.retry_at": time() + delay,
                        },
                    )
                if recorder is not None:
                    pending = recorder.attempt_failed(task, error, perf_counter() - began, attempt, time() + delay)
                    if pending is not None:
                        await pending
                await anyio.sleep(delay)
                attempt += 1
                self.attempts[task.task_id] = attempt
                if recorder is not None:
                    pending = recorder.step_started(task, state)
                    if pending is not None:
                        await pending

    async def _park(self, task: Task, wait: WaitRequested) -> None:
        """Store that `task` waits for a signal, and hold it: the run suspends once nothing else can go on.

        The task keeps its fork run open (a join after it waits for it); once answered, it
        runs again from its start on resume.
        """
        import pydantic

        schema = pydantic.TypeAdapter(wait.payload_type).json_schema()
        waiting = Waiting(wait.key, task.task_id, type_path(wait.payload_type), schema, wait.prompt, wait.wake_at)
        recorder = self.recorder
        if recorder is not None:
            pending = recorder.step_suspended(task, waiting)
            if pending is not None:
                await pending
        self.attempts.pop(task.task_id, None)
        self.parked[task.task_id] = waiting

    def restore_attempts(self, attempts: dict[str, tuple[int, float]]) -> None:
        """Go on with the attempts a stored run had reached: `{task id: (next attempt, when due)}`."""
        for task_id, (attempt, due) in attempts.items():
            self.attempts[task_id] = attempt
            self._retry_due[task_id] = due

    def _structural(self, task: Task, kind: NodeKind) -> Any:
        """The value of a task the loop runs itself: an inline node's, or a join's (reduced here)."""
        if kind is NodeKind.INLINE:
            return self.program.inline(task, self)
        self._reduce(task)
        return None

    def _start(self, task: Task) -> None:
        """Start a task: a step in a lane of its own (a task of the event loop), the loop's own work in order."""
        if self._kinds[task.node_id] is not _STEP:
            self._inline.append(task)  # forks, decisions, joins: the driver runs them, in order
            return
        if self.limit is not None and len(self._running) >= self.limit:
            self._queued.append(task)
            return
        self._running[task.task_id] = task
        if self.recorder is None:
            self._lanes.start(task)
        else:
            self._starting.append(task)  # launched once the pass's starts are recorded

    async def _launch(self) -> None:
        """Record the start of every step started in this pass, in one commit, then run them.

        Group commit for concurrent branches: however many steps a pass starts (a map's
        items, a fork's branches), their starts are durable together before any of them
        runs, and no step holds a lane while it waits for its record.
        """
        starting = self._starting
        if not starting:
            return
        self._starting = []
        assert self.recorder is not None, "steps wait to launch only when a recorder records their start"
        pending = self.recorder.steps_started(starting, self.ctx.state)
        if pending is not None:
            await pending
        running = self._running
        for task in starting:
            if task.task_id in running:  # not cancelled meanwhile
                self._start_recorded.add(task.task_id)
                self._lanes.start(task)

    def _arrive(self, kind: str, payload: Any) -> None:
        """Hand the driver something that happened in a lane or a pump (it may be waiting for it)."""
        self._completed.append((kind, payload))
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def _noted(self, task: Task, error: BaseException) -> BaseException:
        note = self.program.error_note(task)
        if note is not None:
            error.add_note(note)
        return error

    # -- the driver -------------------------------------------------------------------------

    async def _advance(self) -> list[Task] | End[Any]:
        """Wait for tasks to finish until one leads somewhere: new tasks, or the end."""
        while True:
            produced = self._pull_sync_items()
            if produced:
                await self._record_created(produced)
                self._start_pulled(produced)
                return produced
            if self._inline:
                task = self._inline.popleft()
                try:
                    routed = await self._step(task)
                except Exception as error:
                    self._noted(task, error)
                    raise
                self._completed.append(("led to", self._took(task, routed)))
            if not (self._running or self._queued or self._completed or self._inline or self._async_sources_busy()):
                produced = self._finish_joins()
                await self._record_closes()
                if produced:
                    return produced
                if self.parked:  # what is left waits for signals: the run is suspended
                    waits = list(self.parked.values())
                    recorder = self.recorder
                    if recorder is not None:
                        pending = recorder.run_suspended(waits)
                        if pending is not None:
                            await pending
                    raise RunSuspended(self.ctx.run_id, waits)
                if self.ready:  # nothing more will ever happen
                    return []
                raise RuntimeError(
                    "Graph run completed, but no result was produced. This is either a bug in the graph or a bug "
                    "in the graph runner."
                )
            if self._starting:
                await self._launch()
            if not self._completed and self.recorder is not None:
                # nothing to do but wait: make what finished so far durable now, not with the next start
                # (an unbounded map starts no step while its branches finish)
                pending = self.recorder.flush()
                if pending is not None:
                    await pending
            while not self._completed:
                self._wakeup = wakeup = anyio.Event()
                if self.run_timeout is None:
                    await wakeup.wait()
                else:
                    with anyio.move_on_at(self._deadline()):
                        await wakeup.wait()
                    if not wakeup.is_set():
                        self._time_out()
            kind, payload = self._completed.popleft()
            outcome: list[Task] | End[Any]
            if kind == "cancelled":
                raise await self._cancelled()
            if kind == "error":
                failed, raised = payload
                raise self._noted(failed, raised)
            if kind == "item":
                source, item = payload
                outcome = self._map_item(source, item)
                if outcome:
                    await self._record_created(outcome)
                    self._start_pulled(outcome)
                    return outcome
            elif kind == "source_done":
                outcome = self._source_done(payload)
            elif kind == "led to":  # the driver's own step: already finished
                outcome = payload
            else:
                task, result = payload
                outcome = self._finished(task, result)
            if type(outcome) is not list:
                return outcome
            if self.joins:
                outcome += self._finish_joins()
                await self._record_closes()
            if outcome:
                return outcome

    def _start_pulled(self, tasks: list[Task]) -> None:
        """A map's items start as they are pulled: the batch `advance` hands out is running already.

        A caller replacing it (`schedule`) cancels the ones it drops before they run, as long
        as it does so before it next waits.
        """
        for task in tasks:
            self._start(task)
        self._pulled = True

    def _finished(self, task: Task, outcome: Any) -> list[Task] | End[Any]:
        if self._running.pop(task.task_id, None) is None:
            return []  # cancelled (its fork was cut short) just as it finished: already let go of
        return self._took(task, outcome)

    def _took(self, task: Task, outcome: Any) -> list[Task] | End[Any]:
        """Take in a finished task's outcome: count the tasks it led to, start a map, or end."""
        kind = type(outcome)
        if outcome is _PARKED:
            if self._queued or self._sources:
                self._capacity_freed()
            return []  # still counted in its fork run: a join after it waits for its answer
        if kind is MapItems:
            self._map(task, outcome)
            produced: list[Task] = []
        elif kind is list or kind is tuple or isinstance(outcome, Sequence):
            produced = outcome if kind is list else list(outcome)
            if produced:
                self._count(produced)
        else:
            return outcome  # type: ignore[no-any-return]  # the end of the run
        live = self._live
        for item in task.fork_stack:
            live[item.node_run_id] -= 1
        if self._blocking is not None:
            self._count_at((task,), -1)
        if self._queued or self._sources:
            self._capacity_freed()
        return produced

    async def _record_created(self, tasks: list[Task]) -> None:
        """Record tasks made outside a step (a map's items) before they start."""
        if self.recorder is not None:
            pending = self.recorder.tasks_created(tasks, self.ctx.state)
            if pending is not None:
                await pending

    async def _record_closes(self) -> None:
        """Record each join that closed, with the tasks its value went on to."""
        closes, self._closes = self._closes, []
        for close_id, join_id, tasks in closes:
            self.closed.add(close_id)
            if self.recorder is not None:
                pending = self.recorder.join_closed(join_id, close_id, tasks, self.ctx.state)
                if pending is not None:
                    await pending

    def _capacity_freed(self) -> None:
        while self._queued and (self.limit is None or len(self._running) < self.limit):
            self._start(self._queued.popleft())
        for source in self._sources:
            if source.waiting is not None:
                source.waiting.set()

    # -- joins ------------------------------------------------------------------------------

    def _open_join(self, join_id: str, key: JoinKey, downstream: ForkStack) -> JoinState | None:
        state = self.joins.get(key)
        if state is None:
            if closing_id(*key) in self.closed:
                return None  # closed before a resume: its value has gone on already
            state = self.joins[key] = JoinState(self.program.join_initial(join_id), downstream)
            self._hold_join(key, downstream, 1)  # an open join holds the forks around it open
        return state

    def _hold_join(self, key: JoinKey, downstream: ForkStack, change: int) -> None:
        """An open join is at its node in the forks around its own: it keeps their joins after it open."""
        live, at, tracked, join_id = self._live, self._at, self._blocking is not None, key[0]
        for item in join_holds(key, downstream):
            live[item.node_run_id] += change
            if tracked:
                at[item.node_run_id, join_id] += change

    def _join_blocked(self, join_id: str, fork_run_id: str) -> bool:
        """Whether something in fork run `fork_run_id` may still reach join `join_id`."""
        blocking = self._blocking
        if blocking is None:
            return self._live[fork_run_id] > 0
        on_the_way = blocking(join_id)
        if self._live[fork_run_id] > 0:
            at = self._at
            if any(at[fork_run_id, node_id] > 0 for node_id in on_the_way):
                return True
        # a join on the way, open for the same fork run, has values still to pass on
        return any(run == fork_run_id and other != join_id and other in on_the_way for other, run in self.joins)

    def _reduce(self, task: Task) -> None:
        key, downstream = self.program.join_key(task.node_id, task.fork_stack)
        state = self._open_join(task.node_id, key, downstream)
        if state is None:
            return
        fork_run_id = key[1]

        def cancel() -> None:
            self._cancel_fork(fork_run_id, keep=task.task_id)

        state.current = self.program.reduce(task, state, self, cancel)

    def _finish_joins(self) -> list[Task]:
        """Joins whose fork has no task left: their values go on."""
        produced: list[Task] = []
        for key, state in list(self.joins.items()):
            join_id, fork_run_id = key
            if self._join_blocked(join_id, fork_run_id):
                continue
            del self.joins[key]
            self._hold_join(key, state.downstream_fork_stack, -1)
            tasks = self.program.follow(join_id, state.current, state.downstream_fork_stack, self)
            self._count(tasks)
            self._closes.append((closing_id(join_id, fork_run_id), join_id, tasks))
            produced += tasks
        return produced

    def _cancel_fork(self, fork_run_id: str, *, keep: str) -> None:
        """Cancel every task and unfinished map inside fork run `fork_run_id` (but `keep`)."""
        for task_id, running in list(self._running.items()):
            if task_id != keep and any(item.node_run_id == fork_run_id for item in running.fork_stack):
                self._lanes.cancel(running)
                del self._running[task_id]
                self._uncount([running])
                if running in self._starting:
                    self._starting.remove(running)
                self._start_recorded.discard(task_id)
        for waiting in (self._queued, self._inline):
            for queued in list(waiting):
                if any(item.node_run_id == fork_run_id for item in queued.fork_stack):
                    waiting.remove(queued)
                    self._uncount([queued])
        for source in list(self._sources):
            if source.inside(fork_run_id):
                self._release_source(source)
                if source.waiting is not None:
                    source.waiting.set()
