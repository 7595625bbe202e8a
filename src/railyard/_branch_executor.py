"""`BranchExecutor`: a run's steps (or the ones you name) as branch tasks in PostgreSQL.

The loop hands each step attempt to the executor; this one writes it as a row of
`railyard_tasks` (`railyard.store._postgres_tasks`) and waits for a branch worker's
answer, so the loop records each branch's result as it comes, exactly as in process:
the driver keeps the run's log, workers only run steps. A task is named by its run,
step id and attempt: a driver restarted mid-map submits the same tasks again and gets
the answers of those that finished meanwhile without running them again.

The executor's database work runs on a thread of its own, with an event loop and two
sessions of its own (one writes and polls, one listens for answers): tasks submitted
together go in one statement, answers come by LISTEN/NOTIFY (polled too, in case a
notification is missed), and the run's event loop only waits on futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Collection
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
import pydantic_core

from railyard._step_codec import (
    StepCode,
    StepLost,
    ValueCannotCross,
    apply_state,
    code_of,
    describe_step,
    dump,
    error_from_json,
    load,
    load_result,
    wait_future,
)
from railyard.exceptions import GraphRuntimeError, PersistenceError
from railyard.retries import NonRetryable
from railyard.runtime._executor import StepCall, StepFunction
from railyard.runtime._tasks import Task
from railyard.store._postgres_tasks import ANSWERS, CANCEL, SET_LIMIT, SUBMIT, TASK_DONE, ensure_tasks
from railyard.store.postgres import PostgresStore

__all__ = ("BranchExecutor", "NotDurable")

logger = logging.getLogger("railyard.branches")

WHERE = "as a branch task"
_CHUNK = 1000
"""Tasks per statement (submitting, polling)."""


class NotDurable(GraphRuntimeError, NonRetryable):
    """A step was sent to branch workers from a run that is not stored: they could not find it."""


@dataclass(frozen=True, slots=True)
class _Answer:
    state: str
    answer: Any
    owner: str | None


@dataclass(slots=True)
class _Bound:
    """What one run of an executor holds: its in-flight limit and each step's code."""

    limiter: anyio.Semaphore | None = None
    codes: dict[tuple[Any, ...], StepCode] = field(default_factory=dict[tuple[Any, ...], StepCode])


class BranchExecutor:
    """Runs a durable run's steps as branch tasks in PostgreSQL, for branch workers on any machine.

    ```python
    store = PostgresStore("postgresql://...")
    executor = BranchExecutor(store, steps=["summarise"], queue="summaries", concurrency=16)
    await graph.run(inputs=documents, store=store, executor=executor)
    # elsewhere, as many as you like:  railyard worker app:graph --store postgresql://... --branches 4
    ```

    Each attempt of a chosen step becomes one task row in the queue; a worker started
    with branch slots (`run_worker(..., branches=N)`, `railyard worker --branches N`)
    claims it, runs the step with its own copy of the graph and its own `deps`, and
    writes the answer, which the driver reads back and records like any step's:

    - The run must be stored in the same PostgreSQL database (`store=` on `run`); the
      workers need the graph by the run's graph name.
    - Inputs, the result and the state cross as JSON through pydantic, by the step's
      annotated types (as for `RayExecutor`); a value that cannot cross fails the step with
      `ValueCannotCross`, never retried. Dependencies do not cross: the worker's own are used.
    - The step's exception comes back as itself when its class is imported in the driver
      and its arguments are JSON; otherwise as `RemoteStepError` with its type, message and
      the worker's traceback. The step's retry policy decides, as for any error.
    - A worker that dies or is cut off loses its tasks once their lease runs out (the
      store's `lease`); another worker takes them, up to `max_claims` times in all; then the
      attempt fails with `StepLost`.
    - Cancelling the wait cancels the task: a worker running it stops it at its next lease
      renewal, and its answer is never delivered.
    - `concurrency` is the queue's limit over all workers and runs (set in the database
      when this executor first submits; `None` leaves the queue's limit as it is, no limit
      for a new queue); `max_in_flight` bounds the tasks of one run not yet answered.

    Streaming steps and anything the loop runs itself (forks, joins, decisions) stay in the
    driver, and so do steps not in `steps` when it is given. Close the executor (or use it
    as a context manager) to end its thread and sessions; the process ending does too.
    """

    def __init__(
        self,
        store: PostgresStore,
        steps: Collection[str] | None = None,
        *,
        queue: str = "default",
        concurrency: int | None = None,
        max_in_flight: int | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        """Send every step to branch workers (`steps=None`), or only those named.

        Args:
            store: The PostgreSQL store the runs are stored in (its database holds the tasks).
            steps: The node ids of the steps that run as branch tasks; `None`: every step.
            queue: The queue the tasks go in (workers may take some queues only).
            concurrency: At most this many tasks of the queue run at once, over every worker.
            max_in_flight: At most this many tasks of one run not yet answered.
            poll_interval: Seconds between looks for answers a notification did not bring.

        Raises:
            TypeError: `store` is not a `PostgresStore`, or `steps` is one string.
            ValueError: a number is out of range, or the queue name is empty.
        """
        if not isinstance(store, PostgresStore):
            raise TypeError(
                f"BranchExecutor needs the PostgresStore the runs are stored in (its database holds the tasks), "
                f"got {store!r}"
            )
        if isinstance(steps, str):
            raise TypeError(f"BranchExecutor(steps=...) takes node ids, not one string: write steps=[{steps!r}]")
        for name, value in (("concurrency", concurrency), ("max_in_flight", max_in_flight)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"BranchExecutor({name}=...) must be a whole number of at least 1 or None, got {value!r}"
                )
        if not isinstance(queue, str) or not queue:
            raise ValueError(f"BranchExecutor(queue=...) must be a name, got {queue!r}")
        if not poll_interval > 0:
            raise ValueError(f"BranchExecutor(poll_interval={poll_interval!r}): a number of seconds, more than 0")
        self.store = store
        """The store whose database holds the runs and their tasks."""
        self.steps: frozenset[str] | None = None if steps is None else frozenset(steps)
        """The steps that run as branch tasks, by node id (`None`: every step)."""
        self.queue = queue
        """The queue the tasks go in."""
        self.concurrency = concurrency
        """The queue's limit over all workers (`None`: left as the database has it)."""
        self.max_in_flight = max_in_flight
        """At most this many tasks of one run not yet answered (`None`: no limit of the executor's own)."""
        self._client = _Client(store.conninfo, queue, concurrency, poll_interval)

    def bind(self, run: StepFunction) -> StepFunction:
        """The function the loop calls per step attempt: it queues the chosen steps, runs the rest here."""
        bound = _Bound()

        async def execute(task: Task) -> Any:
            chosen = self.steps is None or task.node_id in self.steps
            call = describe_step(run, task) if chosen else None
            if call is None:
                return await run(task)
            if bound.limiter is None and self.max_in_flight is not None:  # made on the run's own event loop
                bound.limiter = anyio.Semaphore(self.max_in_flight)
            if bound.limiter is None:
                return await self._remote(call, bound)
            async with bound.limiter:
                return await self._remote(call, bound)

        return execute

    async def _remote(self, call: StepCall, bound: _Bound) -> Any:
        """Queue one attempt, wait for its answer, apply its state, give its result."""
        if call.run_id is None:
            raise NotDurable(
                f"Step `{call.node_id}` runs as a branch task, but its run is not stored: branch workers find a "
                f"task's run in the database. Give the run the PostgreSQL store: run(..., store=store)."
            )
        code = self._code(call, bound)
        try:
            state_json = None if code.state_type is None else dump(call.node_id, "state", code.state_type, call.state)
            inputs = dump(call.node_id, "inputs", code.input_type, call.inputs)
        except ValueCannotCross as err:
            raise err.moved("BranchExecutor") from None
        payload = {
            "inputs": inputs,
            "state": state_json,
            "step_id": call.step_id,
            "run_id": call.run_id,
            "attempt": call.attempt,
        }
        row = {
            "run_id": call.run_id,
            "step_id": call.step_id,
            "attempt": call.attempt,
            "node_id": call.node_id,
            "payload": payload,
        }
        future = self._client.submit(row)
        try:
            await wait_future(future)
        except BaseException:  # cancelled (or failed) while it waits: the task is cancelled, its answer unread
            self._client.cancel(future)
            raise
        if future.cancelled():
            raise GraphRuntimeError(
                f"Step `{call.node_id}` ({call.step_id}) was waiting for its branch task when {self!r} was closed"
            )
        got = future.result()
        if got.state == "done":
            try:
                result = load_result(code, got.answer["result"])
                if "state" in got.answer:
                    new_state = load(call.node_id, "state", code.state_type, got.answer["state"])
                    apply_state(call, state_json, new_state, got.answer["state"])
            except ValueCannotCross as err:
                raise err.moved("BranchExecutor") from None
            return result
        if got.state == "failed":
            error = error_from_json(call.node_id, call.step_id, got.answer["error"], f"on branch worker {got.owner}")
            if isinstance(error, ValueCannotCross):
                error = error.moved("BranchExecutor")
            raise error
        if got.state == "lost":
            claims = got.answer.get("claims") if isinstance(got.answer, dict) else None
            holder = got.answer.get("lost") if isinstance(got.answer, dict) else None
            raise StepLost(
                call.node_id,
                call.step_id,
                f"its lease ran out {claims} times, the last time held by {holder}",
                WHERE,
            )
        raise StepLost(call.node_id, call.step_id, "its task was cancelled by someone else", WHERE)

    def _code(self, call: StepCall, bound: _Bound) -> StepCode:
        state_type = None if call.state is None else call.state_type
        what: Any = call.function if call.function is not None else type(call.inputs)
        key = (call.node_id, what, state_type)
        made = bound.codes.get(key)
        if made is None:
            made = bound.codes[key] = code_of(call)
        return made

    def close(self) -> None:
        """End the executor's thread and sessions.

        Steps still waiting for their tasks fail (`GraphRuntimeError`); the tasks' rows stay as
        they are, so a resume of their runs gets their answers.
        """
        self._client.close()

    def __enter__(self) -> BranchExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = [repr(self.store)]
        if self.steps is not None:
            parts.append(f"steps={sorted(self.steps)!r}")
        parts.append(f"queue={self.queue!r}")
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency}")
        if self.max_in_flight is not None:
            parts.append(f"max_in_flight={self.max_in_flight}")
        return f"BranchExecutor({', '.join(parts)})"


class _Refused(Exception):
    """The database cannot hold branch tasks (a foreign table, a newer layout): no submission can succeed."""

    def __init__(self, error: PersistenceError) -> None:
        super().__init__(str(error))
        self.error = error


class _Client:
    """The executor's link to the database: a thread with an event loop and sessions of its own.

    `submit` and `cancel` are called from any thread; everything else runs on the client's.
    """

    def __init__(self, conninfo: str, queue: str, concurrency: int | None, poll_interval: float) -> None:
        self.conninfo = conninfo
        self.queue = queue
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._incoming: list[tuple[dict[str, Any], Future[_Answer]]] = []
        self._cancels: list[Future[_Answer]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._waiting: dict[int, Future[_Answer]] = {}
        """Submitted tasks not yet answered, by task id (the client's thread alone reads and writes it)."""
        self._ids: dict[Future[_Answer], int] = {}
        self._broken: BaseException | None = None
        """Why no task can be submitted (a foreign table, a newer layout): every submission fails with it."""
        self._by = uuid.uuid4().hex
        """This client's name on the tasks it submits: it cancels only tasks still its own."""
        self._in_flight: list[tuple[dict[str, Any], Future[_Answer]]] = []
        """The batch being submitted now (resolved, or failed, if the client stops meanwhile)."""
        self._early: set[int] = set()
        """Answered task ids heard before their submission came back (a fast worker)."""

    def submit(self, row: dict[str, Any]) -> Future[_Answer]:
        future: Future[_Answer] = Future()
        with self._lock:
            self._start()
            self._incoming.append((row, future))
        self._poke()
        return future

    def cancel(self, future: Future[_Answer]) -> None:
        if future.done():
            return
        with self._lock:
            self._cancels.append(future)
        self._poke()

    def close(self) -> None:
        with self._lock:  # (the thread clears `_thread` itself as it ends: a submit meanwhile is cancelled)
            thread, loop, closing = self._thread, self._loop, self._closing
        if thread is None or loop is None or closing is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(closing.set)
        thread.join()

    def _start(self) -> None:
        if self._thread is not None:
            return
        self._ready.clear()
        thread = threading.Thread(target=self._main, name="railyard-branches", daemon=True)
        self._thread = thread
        thread.start()
        self._ready.wait()

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: `close` cancelled what waited
                loop.call_soon_threadsafe(wake.set)

    def _main(self) -> None:
        died: BaseException | None = None
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # a bug: the tasks waiting hear of it, and the next submit starts anew
            logger.exception("the branch executor's thread stopped")
            died = error
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
                self._loop = self._wake = self._closing = None
                left = [future for _, future in self._incoming]
                self._incoming.clear()
            for future in left:
                if died is None:
                    future.cancel()
                else:
                    _fail(future, GraphRuntimeError(f"the branch executor's thread stopped: {died!r}"))

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._ready.set()
        store = PostgresStore(self.conninfo, min_size=1, max_size=2, statement_timeout=None)
        crashed: BaseException | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._flush, store)
                group.start_soon(self._listen, store)
                group.start_soon(self._poll, store)
                await self._closing.wait()
                group.cancel_scope.cancel()
        except BaseException as error:
            crashed = error
            raise
        finally:
            with self._lock:
                left = [future for _, future in self._incoming + self._in_flight] + list(self._waiting.values())
                self._incoming.clear()
            self._in_flight = []
            for future in left:  # closed: cancelled (their rows stay, for a resume); crashed: failed with why
                if crashed is None:
                    future.cancel()
                else:
                    _fail(future, GraphRuntimeError(f"the branch executor's thread stopped: {crashed!r}"))
            self._waiting.clear()
            self._ids.clear()
            with anyio.CancelScope(shield=True):
                await store.aclose()

    async def _flush(self, store: PostgresStore) -> None:
        """Submit what came in and cancel what is no longer waited for, a batch at a time."""
        assert self._wake is not None
        prepared = False
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._incoming = self._incoming, []
                cancels, self._cancels = self._cancels, []
            dropped = set(cancels)
            batch = [(row, future) for row, future in batch if future not in dropped]
            self._in_flight = batch
            for future in dropped:
                future.cancel()
            if self._broken is not None:
                for _, future in batch:
                    _fail(future, self._broken)
                continue
            try:
                if not prepared and batch:
                    await self._prepare(store)
                    prepared = True
                if cancels:
                    ids = [self._ids[future] for future in cancels if future in self._ids]
                    if ids:
                        await _execute(store, CANCEL, {"ids": ids, "by": self._by})
                    for future in cancels:  # (dropped once the cancel is written: else tried again)
                        task_id = self._ids.pop(future, None)
                        if task_id is not None:
                            self._waiting.pop(task_id, None)
                for start in range(0, len(batch), _CHUNK):
                    await self._submit(store, batch[start : start + _CHUNK])
                self._in_flight = []
                delay = 0.1
            except _Refused as refused:
                self._broken = refused.error
                for _, future in batch:
                    _fail(future, refused.error)
                self._in_flight = []
            except PersistenceError as error:
                logger.warning("could not queue branch tasks (%s); trying again in %.2g s", error, delay)
                with self._lock:  # put back, in order, in front of what came meanwhile
                    self._incoming[:0] = [(row, future) for row, future in batch if not future.done()]
                    self._cancels[:0] = [future for future in cancels if future in self._ids]
                self._in_flight = []
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._wake.set()

    async def _prepare(self, store: PostgresStore) -> None:
        pool = await store._connection_pool()
        try:
            async with pool.connection() as connection:
                await ensure_tasks(connection, repr(store))
        except psycopg.Error as err:
            raise PersistenceError(f"{store!r}: {type(err).__name__}: {str(err).strip()}") from err
        except PersistenceError as err:  # tables railyard did not make, or a newer layout
            raise _Refused(err) from err
        await _execute(
            store,
            SET_LIMIT,
            {"queue": self.queue, "concurrency": self.concurrency, "set": self.concurrency is not None},
        )

    async def _submit(self, store: PostgresStore, batch: list[tuple[dict[str, Any], Future[_Answer]]]) -> None:
        if not batch:
            return
        tasks = pydantic_core.to_json([row for row, _ in batch]).decode()
        try:
            rows = await _fetch(store, SUBMIT, {"tasks": tasks, "queue": self.queue, "by": self._by})
        except PersistenceError as error:
            if len(batch) > 1 and isinstance(error.__cause__, psycopg.errors.ForeignKeyViolation):
                for one in batch:  # one of them names a run this database does not have
                    await self._submit(store, [one])
                return
            if isinstance(error.__cause__, psycopg.errors.ForeignKeyViolation):
                row, future = batch[0]
                _fail(
                    future,
                    NotDurable(
                        f"Step `{row['node_id']}` runs as a branch task, but its run {row['run_id']!r} is not stored "
                        f"in {store!r}: give the run the same PostgreSQL store as the BranchExecutor."
                    ),
                )
                return
            raise
        by_key = {(row["run_id"], row["step_id"], row["attempt"]): future for row, future in batch}
        early: list[int] = []
        for task_id, run_id, step_id, attempt, state, answer, _ in rows:
            future = by_key[(run_id, step_id, attempt)]
            if state == "done":
                _resolve(future, _Answer(state, answer, None))
            else:
                self._waiting[task_id] = future
                self._ids[future] = task_id
                if task_id in self._early:
                    early.append(task_id)
        if early:  # answered before the statement that queued them came back
            self._early.difference_update(early)
            await self._collect(store, early)

    async def _listen(self, store: PostgresStore) -> None:
        """Take in the answers workers announce; after a gap in listening, look for those missed."""
        delay = 0.1
        while True:
            try:
                connection = await store._session("railyard-branches-listen")
            except PersistenceError as error:
                logger.warning("could not listen for branch answers (%s); polling meanwhile", error)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                await connection.execute(f"LISTEN {TASK_DONE}")
                await self._collect(store, list(self._waiting))  # what was answered while nobody listened
                delay = 0.1
                while True:
                    heard: set[int] = set()
                    async for notice in connection.notifies(timeout=self.poll_interval, stop_after=1):
                        _heard(heard, notice.payload)
                    if not heard:
                        continue
                    async for notice in connection.notifies(timeout=0.002):  # the rest of the burst
                        _heard(heard, notice.payload)
                    ours = [task_id for task_id in heard if task_id in self._waiting]
                    if len(self._early) > 10_000:  # (others' answers, mostly)
                        self._early.clear()
                    self._early.update(heard.difference(ours))
                    await self._collect(store, ours)
            except (psycopg.Error, PersistenceError) as error:
                logger.warning("lost the session listening for branch answers (%s); listening again", error)
                await store._drop("railyard-branches-listen", connection)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _poll(self, store: PostgresStore) -> None:
        """Look for answers now and then, in case a notification went missing."""
        while True:
            await anyio.sleep(self.poll_interval * 5)
            if self._waiting:
                try:
                    await self._collect(store, list(self._waiting))
                except PersistenceError as error:
                    logger.warning("could not look for branch answers (%s)", error)

    async def _collect(self, store: PostgresStore, ids: list[int]) -> None:
        for start in range(0, len(ids), _CHUNK):
            rows = await _fetch(store, ANSWERS, {"ids": ids[start : start + _CHUNK]})
            for task_id, state, answer, owner in rows:
                future = self._waiting.pop(task_id, None)
                if future is not None:
                    self._ids.pop(future, None)
                    _resolve(future, _Answer(state, answer, owner))


def _heard(heard: set[int], payload: str) -> None:
    """Take in one notification's task id (a payload that is none is not railyard's: ignored)."""
    with contextlib.suppress(ValueError):
        heard.add(int(payload))


def _resolve(future: Future[_Answer], answer: _Answer) -> None:
    with contextlib.suppress(CancelledError, Exception):
        if not future.done():
            future.set_result(answer)


def _fail(future: Future[_Answer], error: BaseException) -> None:
    with contextlib.suppress(CancelledError, Exception):
        if not future.done():
            future.set_exception(error)


async def _execute(store: PostgresStore, statement: str, params: dict[str, Any]) -> None:
    await _fetch(store, statement, params, rows=False)


async def _fetch(store: PostgresStore, statement: str, params: dict[str, Any], *, rows: bool = True) -> list[Any]:
    """Run one statement on the store's pool; a failure as `PersistenceError` (its cause: psycopg's error)."""
    pool = await store._connection_pool()
    try:
        async with pool.connection() as connection:
            cursor = await connection.execute(statement, params)
            return list(await cursor.fetchall()) if rows and cursor.description is not None else []
    except psycopg.Error as err:
        raise PersistenceError(f"{store!r}: {type(err).__name__}: {str(err).strip()}") from err
