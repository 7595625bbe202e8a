"""The link between a `BranchExecutor` and its database: a thread with an event loop and sessions of its own.

`BranchClient.submit` queues one task (a row of `railyard_tasks`) and gives a future of its
answer; `cancel` takes back one no longer waited for. Both may be called from any thread
(a run's event loop, usually); the rest runs on the client's thread: tasks submitted
together go in one statement, answers come by LISTEN/NOTIFY (polled too, in case a
notification is missed), and a thread that stops fails what waited, with its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

import anyio
import psycopg
import pydantic_core

from railyard.exceptions import GraphRuntimeError, PersistenceError
from railyard.retries import NonRetryable
from railyard.store._postgres_tasks import ANSWERS, CANCEL, SET_LIMIT, SUBMIT, TASK_DONE, ensure_tasks
from railyard.store.postgres import PostgresStore

__all__ = ("Answer", "BranchClient", "NotDurable")

logger = logging.getLogger("railyard.branches")

_CHUNK = 1000
"""Tasks per statement (submitting, polling)."""


class NotDurable(GraphRuntimeError, NonRetryable):
    """A step was sent to branch workers from a run that is not stored: they could not find it."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A task's row as it was answered: its state (done, failed, lost, cancelled), answer and last owner."""

    state: str
    answer: Any
    owner: str | None


class _Refused(Exception):
    """The database cannot hold branch tasks (a foreign table, a newer layout): no submission can succeed."""

    def __init__(self, error: PersistenceError) -> None:
        super().__init__(str(error))
        self.error = error


class BranchClient:
    """The executor's link to the database: a thread with an event loop and sessions of its own.

    `submit` and `cancel` are called from any thread; everything else runs on the client's.
    """

    def __init__(self, conninfo: str, queue: str, concurrency: int | None, poll_interval: float) -> None:
        self.conninfo = conninfo
        self.queue = queue
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._incoming: list[tuple[dict[str, Any], Future[Answer]]] = []
        self._cancels: list[Future[Answer]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        self._ready = threading.Event()
        self._waiting: dict[int, Future[Answer]] = {}
        """Submitted tasks not yet answered, by task id (the client's thread alone reads and writes it)."""
        self._ids: dict[Future[Answer], int] = {}
        self._broken: BaseException | None = None
        """Why no task can be submitted (a foreign table, a newer layout): every submission fails with it."""
        self._by = uuid.uuid4().hex
        """This client's name on the tasks it submits: it cancels only tasks still its own."""
        self._in_flight: list[tuple[dict[str, Any], Future[Answer]]] = []
        """The batch being submitted now (resolved, or failed, if the client stops meanwhile)."""
        self._early: set[int] = set()
        """Answered task ids heard before their submission came back (a fast worker)."""

    def submit(self, row: dict[str, Any]) -> Future[Answer]:
        future: Future[Answer] = Future()
        with self._lock:
            self._start()
            self._incoming.append((row, future))
        self._poke()
        return future

    def cancel(self, future: Future[Answer]) -> None:
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

    async def _submit(self, store: PostgresStore, batch: list[tuple[dict[str, Any], Future[Answer]]]) -> None:
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
                _resolve(future, Answer(state, answer, None))
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
                    _resolve(future, Answer(state, answer, owner))


def _heard(heard: set[int], payload: str) -> None:
    """Take in one notification's task id (a payload that is none is not railyard's: ignored)."""
    with contextlib.suppress(ValueError):
        heard.add(int(payload))


def _resolve(future: Future[Answer], answer: Answer) -> None:
    with contextlib.suppress(CancelledError, Exception):
        if not future.done():
            future.set_result(answer)


def _fail(future: Future[Answer], error: BaseException) -> None:
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
