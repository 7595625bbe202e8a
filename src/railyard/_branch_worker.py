"""A worker's branch slots: claim branch tasks (`railyard.branches`) and run their steps.

A task names its run's graph and its step's node id; the worker finds the step's code in
its own copy of the graph, reads the values the driver wrote (`railyard._step_codec`),
runs the step on a thread of its own (so a step that blocks never stalls the lease
renewals) with the worker's `deps`, and writes the answer while its claim still holds.

Claims are renewed together, every third of the lease. A claim that does not come back
(the driver cancelled the task, or it was taken over) stops its step; so does every
claim once the renewals have failed for nearly a lease (the worker is cut off), so a
step never runs on past the time another worker may take its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import psycopg
import pydantic_core

from railyard._step_codec import StepCode, call_step, error_json, node_results, step_types
from railyard.exceptions import GraphRuntimeError, PersistenceError
from railyard.retries import NonRetryable
from railyard.store._postgres_tasks import (
    CLAIM,
    FINISH,
    LOSE_EXPIRED,
    QUEUE_LOCK,
    RELEASE,
    RENEW,
    SWEEP,
    TASK_QUEUED,
    ensure_tasks,
)
from railyard.store.postgres import PostgresStore

__all__ = ("BranchSlots", "UnknownStep", "step_code")

logger = logging.getLogger("railyard.branches")

_SWEEP_EVERY = 60.0
"""Seconds between sweeps of the tasks of runs that are over."""


class UnknownStep(GraphRuntimeError, NonRetryable):
    """A branch worker's copy of a graph has no step of the id a task names (the driver runs another version)."""


def step_code(graph: Any, node_id: str, has_state: bool) -> StepCode | None:
    """The code of step `node_id` of `graph` (a builder or node `Graph`), as the driver describes it."""
    from railyard.builder.step import NodeStep, Step

    nodes = getattr(graph, "nodes", None)
    if isinstance(nodes, Mapping):
        node = nodes.get(node_id)
        state_type = graph.state_type if has_state else None
        if isinstance(node, NodeStep):
            node_class = node.node_type
            node_results(node_class)
            return StepCode(node_id, None, node_class, node_class, node_class, state_type, None)
        if isinstance(node, Step):
            input_type, output_type = step_types(node.call)
            return StepCode(node_id, node.call, None, input_type, output_type, state_type, None)
        return None
    node_defs = getattr(graph, "node_defs", None)
    if isinstance(node_defs, Mapping) and node_id in node_defs:
        node_class = node_defs[node_id].node
        node_results(node_class)
        inferred = graph.inferred_types[0]
        state_type = (inferred if inferred is not None else Any) if has_state else None
        return StepCode(node_id, None, node_class, node_class, node_class, state_type, None)
    return None


def _has_steps(graph: Any) -> bool:
    return isinstance(getattr(graph, "nodes", None), Mapping) or isinstance(getattr(graph, "node_defs", None), Mapping)


@dataclass(slots=True)
class _Claim:
    """A task this worker holds, and how to stop its step."""

    task_id: int
    run_id: str
    step_id: str
    owner: str
    stop: Any = None
    """Cancels the step on its thread (set once the step started)."""
    lost: bool = False
    """The claim was taken over or cancelled: its answer is not written."""


@dataclass(slots=True)
class _Thread:
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[Any] | None = None
    cancelled: bool = False


@dataclass(slots=True)
class BranchSlots:
    """Claims branch tasks of its graphs and runs up to `slots` at once (a `Worker`'s branch side)."""

    graphs: Mapping[str, Any]
    store: PostgresStore
    deps: Any
    slots: int
    queues: Collection[str] | None = None
    max_claims: int = 3
    poll_interval: float = 0.2
    max_poll_interval: float = 2.0
    held: dict[str, _Claim] = field(default_factory=dict[str, _Claim])
    """The claims held now, by owner token."""
    ran: int = 0
    """How many tasks this worker answered."""
    last_busy: float = float("-inf")
    """When (anyio's clock) this worker last held a task or found one to claim."""
    _name: str = ""
    _stopping: bool = False
    _freed: anyio.Event | None = None
    _stop: anyio.Event | None = None
    _limiter: anyio.CapacityLimiter | None = None
    _cut: list[str] = field(default_factory=list[str])

    def __post_init__(self) -> None:
        self._name = f"{self.store.owner}#{uuid.uuid4().hex[:8]}"

    @property
    def wanted(self) -> list[str]:
        """The graphs whose tasks this worker claims: those with steps (agents' steps stay with their driver)."""
        return sorted(name for name, graph in self.graphs.items() if _has_steps(graph))

    def stop(self) -> None:
        """Claim no more tasks; the ones held run on (the worker's grace bounds them, by cancelling)."""
        self._stopping = True
        if self._stop is not None:
            self._stop.set()
        self._wake()

    def _wake(self) -> None:
        """Wake whatever waits for a slot to free (the claim rounds, the renewals)."""
        freed, self._freed = self._freed, None
        if freed is not None:
            freed.set()

    async def prepare(self) -> None:
        """Make the task tables if they are missing (before `serve`).

        Raises:
            PersistenceError: the database cannot be reached, or has tables of those names
                railyard did not make.
        """
        pool = await self.store._connection_pool()
        try:
            async with pool.connection() as connection:
                await ensure_tasks(connection, repr(self.store))
        except psycopg.Error as err:
            raise PersistenceError(f"{self.store!r}: {type(err).__name__}: {str(err).strip()}") from err

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Claim and run tasks until stopped; says it started once its first claim round is done.

        Cancelled (the worker's grace ran out), the steps running are stopped and their
        tasks queued again for other workers.
        """
        self._stop = anyio.Event()
        self._limiter = anyio.CapacityLimiter(self.slots)
        if self._stopping:
            self._stop.set()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._renew_until_done)
                try:
                    await self._claim_rounds(group, task_status)
                    while self.held:  # the claims in hand run to their ends (or the grace cancels them)
                        await self._slot_freed()
                finally:  # (cancelled too: the renewals end once the steps being stopped are done)
                    self.stop()
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._release()

    async def _claim_rounds(self, group: anyio.abc.TaskGroup, task_status: anyio.abc.TaskStatus[None]) -> None:
        interval = self.poll_interval
        started = False
        swept = anyio.current_time()
        listener: psycopg.AsyncConnection[Any] | None = None
        try:
            while not self._stopping:
                claimed = 0
                free = self.slots - len(self.held)
                if free > 0:
                    try:
                        claimed = await self._claim(group, free)
                    except PersistenceError as error:
                        logger.warning("could not claim branch tasks (%s); trying again in %.3g s", error, interval)
                if not started:
                    started = True
                    task_status.started()
                if claimed or self.held:
                    self.last_busy = anyio.current_time()
                if claimed:
                    interval = self.poll_interval
                    continue
                if len(self.held) >= self.slots:
                    await self._slot_freed()
                    continue
                if anyio.current_time() - swept > _SWEEP_EVERY:
                    swept = anyio.current_time()
                    with contextlib.suppress(PersistenceError):
                        await _run(self.store, SWEEP, {"batch": 1000})
                listener, heard = await self._hear(listener, interval)
                interval = self.poll_interval if heard else min(interval * 2, self.max_poll_interval)
        finally:
            if not started:
                task_status.started()
            if listener is not None:
                with anyio.CancelScope(shield=True):
                    await self.store._drop("railyard-branches-worker", listener)

    async def _claim(self, group: anyio.abc.TaskGroup, free: int) -> int:
        """One claim round over the queues: start the tasks claimed; say how many."""
        queues = await self._queues()
        claimed = 0
        for queue in queues:
            if free - claimed <= 0:
                break
            rows = await self._claim_queue(queue, free - claimed)
            for task_id, run_id, step_id, _attempt, graph, node_id, payload, owner in rows:
                claim = _Claim(task_id, run_id, step_id, owner)
                self.held[owner] = claim
                group.start_soon(self._work, claim, graph, node_id, payload, name=f"railyard branch {step_id}")
                claimed += 1
        return claimed

    async def _queues(self) -> list[str]:
        if self.queues is not None:
            return list(self.queues)
        rows = await _fetch(self.store, "SELECT queue FROM railyard_queues ORDER BY queue", {})
        return [row[0] for row in rows]

    async def _claim_queue(self, queue: str, want: int) -> list[Any]:
        pool = await self.store._connection_pool()
        wanted = self.wanted
        try:
            async with pool.connection() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (QUEUE_LOCK, queue))
                await connection.execute(LOSE_EXPIRED, {"queue": queue, "max_claims": self.max_claims})
                cursor = await connection.execute(
                    CLAIM,
                    {
                        "queue": queue,
                        "want": want,
                        "graphs": wanted,
                        "unnamed": len(wanted) == 1,
                        "worker": self._name,
                        "lease": self.store.lease,
                    },
                )
                return list(await cursor.fetchall())
        except psycopg.Error as err:
            raise PersistenceError(f"{self.store!r}: {type(err).__name__}: {str(err).strip()}") from err

    async def _hear(
        self, listener: psycopg.AsyncConnection[Any] | None, within: float
    ) -> tuple[psycopg.AsyncConnection[Any] | None, bool]:
        """Wait up to `within` seconds for tasks to be announced, a slot to free, or a stop."""
        heard = False
        async with anyio.create_task_group() as waiting:

            async def stopped() -> None:
                assert self._stop is not None
                await self._stop.wait()
                waiting.cancel_scope.cancel()

            waiting.start_soon(stopped)
            try:
                if listener is None or listener.closed or listener.broken:
                    if listener is not None:
                        await self.store._drop("railyard-branches-worker", listener)
                    listener = None
                    listener = await self.store._session("railyard-branches-worker")
                    await listener.execute(f"LISTEN {TASK_QUEUED}")
                    heard = True  # (tasks announced while nobody listened: look now)
                else:
                    notifies = listener.notifies(timeout=within, stop_after=1)
                    async with contextlib.aclosing(notifies):
                        async for _ in notifies:
                            heard = True
            except (psycopg.Error, PersistenceError) as error:
                logger.warning("could not listen for branch tasks (%s); polling instead", error)
                await anyio.sleep(within)
            waiting.cancel_scope.cancel()
        return listener, heard

    async def _slot_freed(self) -> None:
        if self._freed is None:
            self._freed = anyio.Event()
        await self._freed.wait()

    def _free(self, claim: _Claim) -> None:
        self.held.pop(claim.owner, None)
        self._wake()

    async def _work(self, claim: _Claim, graph_name: str | None, node_id: str, payload: Any) -> None:
        """Run one claimed task's step and write its answer while the claim holds."""
        try:
            graph = self.graphs.get(graph_name) if graph_name is not None else next(iter(self.graphs.values()))
            code = None if graph is None else step_code(graph, node_id, payload.get("state") is not None)
            if code is None:
                error: BaseException = UnknownStep(
                    f"Branch worker {self._name} has no step `{node_id}` in its graph {graph_name!r}: it runs "
                    f"another version of the graph than the run's driver."
                )
                state, answer = "failed", {"error": error_json(error)}
            else:
                run_deps = self.deps.get(graph_name) if isinstance(self.deps, Mapping) else self.deps
                state, answer = await self._call(claim, code, payload, run_deps)
            if state == "cancelled" or claim.lost:  # (before the answer is written: a lost claim cannot)
                logger.info(
                    "branch task %s (%s) was cancelled or taken over; its answer is dropped",
                    claim.task_id,
                    claim.step_id,
                )
                return
            await self._finish(claim, state, answer)
        except anyio.get_cancelled_exc_class():  # the worker's grace ran out: the task is queued again
            self._cut.append(claim.owner)
            raise
        except Exception as error:  # reading the task or its answer failed: the attempt fails, the worker goes on
            logger.exception("branch task %s (%s) could not be run", claim.task_id, claim.step_id)
            if not claim.lost:
                await self._finish(claim, "failed", {"error": error_json(error)})
        finally:
            self._free(claim)

    async def _call(self, claim: _Claim, code: StepCode, payload: Any, deps: Any) -> tuple[str, Any]:
        """Run the step on a thread, in an event loop of its own; stoppable through `claim.stop`."""
        thread = _Thread()

        def stop() -> None:
            thread.cancelled = True
            if thread.loop is not None and thread.task is not None:
                with contextlib.suppress(RuntimeError):
                    thread.loop.call_soon_threadsafe(thread.task.cancel)

        def on_thread() -> tuple[str, Any]:
            loop = asyncio.new_event_loop()
            try:
                task = loop.create_task(call_step(code, payload, deps))
                thread.loop, thread.task = loop, task
                if thread.cancelled:
                    task.cancel()
                try:
                    return "done", loop.run_until_complete(task)
                except asyncio.CancelledError:
                    return "cancelled", None
                except BaseException as error:  # (a step's SystemExit, or a wait asked where none can be, too)
                    return "failed", {"error": error_json(error)}
            finally:
                loop.close()

        claim.stop = stop
        if claim.lost:
            stop()
        result: list[tuple[str, Any]] = []
        async with anyio.create_task_group() as watch:

            async def on_a_thread() -> None:
                # not abandoned when cancelled: the step is stopped through its own loop, and waited for
                result.append(await anyio.to_thread.run_sync(on_thread, limiter=self._limiter))
                watch.cancel_scope.cancel()

            watch.start_soon(on_a_thread)
            try:
                await anyio.sleep_forever()
            finally:  # the step ended, or the worker's grace ran out: stop it (if it still runs)
                stop()
        return result[0]

    async def _finish(self, claim: _Claim, state: str, answer: Any) -> None:
        params = {
            "state": state,
            "answer": pydantic_core.to_json(answer).decode(),
            "task_id": claim.task_id,
            "owner": claim.owner,
        }
        delay = 0.1
        deadline = anyio.current_time() + self.store.lease
        with anyio.CancelScope(shield=True):
            while True:
                try:
                    rows = await _fetch(self.store, FINISH, params)
                except PersistenceError as error:
                    if anyio.current_time() + delay > deadline:
                        logger.warning(
                            "could not write the answer of branch task %s (%s); another worker will run it",
                            claim.task_id,
                            error,
                        )
                        return
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                break
        if rows:
            self.ran += 1
        else:
            logger.info(
                "branch task %s (%s) was taken over or cancelled; its answer is dropped", claim.task_id, claim.step_id
            )

    async def _renew_until_done(self) -> None:
        """Renew the claims until the worker stops and holds none.

        A step being stopped (or one that cannot be, blocking its thread) keeps its task
        while it runs, so no other worker runs it meanwhile.
        """
        with anyio.CancelScope(shield=True):
            await self._renew()

    async def _renew(self) -> None:
        """Renew every claim held, every third of the lease; stop the steps whose claims are gone.

        A renewal is given a quarter of the lease to answer. When none has succeeded for
        seven tenths of the lease (counted from when the last good one was sent, so at
        most that much of the server's lease is used), the worker is cut off: it stops
        every step before another worker may take their tasks.
        """
        lease = self.store.lease
        renewed = anyio.current_time()
        while True:
            if self._stopping and not self.held:
                return
            with anyio.move_on_after(lease / 6):
                await self._slot_freed()
            held = list(self.held.values())
            now = anyio.current_time()
            if not held:
                if self._stopping:
                    return
                renewed = now
                continue
            if now - renewed >= lease / 3:
                owners = [claim.owner for claim in held]
                rows: list[Any] | None = None
                with anyio.move_on_after(lease / 4):
                    try:
                        rows = await _fetch(self.store, RENEW, {"owners": owners, "lease": lease})
                    except PersistenceError as error:
                        logger.warning("could not renew %d branch claims (%s)", len(owners), error)
                if rows is not None:
                    renewed = now
                    kept = {row[0] for row in rows}
                    for claim in held:
                        if claim.owner not in kept:
                            _lose(claim)
            if anyio.current_time() - renewed > lease * 0.7 and any(not claim.lost for claim in held):
                logger.warning(
                    "branch claims not renewed for %.3g s: stopping their steps before their leases run out",
                    anyio.current_time() - renewed,
                )
                for claim in held:
                    _lose(claim)

    async def _release(self) -> None:
        owners = [*self._cut, *self.held]
        self._cut.clear()
        if not owners:
            return
        for claim in self.held.values():
            _lose(claim)
        with contextlib.suppress(PersistenceError):
            await _fetch(self.store, RELEASE, {"owners": owners})
            logger.info("released %d branch tasks unfinished: the worker is stopping", len(owners))


def _lose(claim: _Claim) -> None:
    claim.lost = True
    if claim.stop is not None:
        claim.stop()


async def _run(store: PostgresStore, statement: str, params: dict[str, Any]) -> None:
    await _fetch(store, statement, params)


async def _fetch(store: PostgresStore, statement: str, params: dict[str, Any]) -> list[Any]:
    pool = await store._connection_pool()
    try:
        async with pool.connection() as connection:
            cursor = await connection.execute(statement, params)
            return list(await cursor.fetchall()) if cursor.description is not None else []
    except psycopg.Error as err:
        raise PersistenceError(f"{store!r}: {type(err).__name__}: {str(err).strip()}") from err
