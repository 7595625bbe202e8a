"""`Worker`: claims ready runs and drives several at once (the face is `railyard.worker`)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.abc

from railyard._logging import extra as _extra
from railyard.exceptions import PersistenceError, RunCancelled, RunLocked
from railyard.store import RunStatus, RunStore
from railyard.store.base import READY
from railyard.suspension import RunSuspended

if TYPE_CHECKING:
    from railyard._branch_worker import BranchSlots
    from railyard.runtime._executor import Executor

__all__ = ("Resumable", "Worker")

logger = logging.getLogger("railyard.worker")

Outcome = Literal["driven", "taken", "unusable", "stopped"]


class Resumable(Protocol):
    """What a worker drives: anything with a name that can carry a stored run on to its end.

    The node `Graph`, the builder `Graph` and `Agent` all are.
    """

    @property
    def name(self) -> str | None:
        """The name runs of it are recorded under."""
        ...

    async def resume(self, store: RunStore, run_id: str, /, *, deps: Any = None) -> Any:
        """Carry stored run `run_id` on to its end."""
        ...


Resumable.__module__ = "railyard.worker"


class Worker:
    """Claims ready runs of its graphs from a store and drives up to `concurrency` of them at once.

    ```python
    worker = Worker([orders, support_agent], store, concurrency=8, idle_timeout=None)
    await worker.run(handle_signals=True)   # until SIGTERM or SIGINT, or `worker.stop()`
    ```

    Each claimed run is driven in a task of its own by the graph its record names, and
    given up once its drive returns: ended, suspended, failed (its error recorded), or
    cancelled. A run another driver takes over meanwhile (its lease ran out, or its
    database session was cut off) is let go of at once: its drive is cancelled, and it
    wrote nothing after the takeover. Between claims the worker waits for the store to
    announce a ready run (PostgreSQL's LISTEN/NOTIFY; in-process for the other stores) or
    for a drive to finish, and polls `claim` at `poll_interval`, doubling up to
    `max_poll_interval` while nothing comes.

    With `branches=N` (PostgreSQL), it also claims branch tasks (`railyard.branches`) of
    its graphs from `queues` (`None`: every queue) and runs up to N steps of them at once,
    each on a thread of its own, with its `deps`; `concurrency=0` makes a worker that only
    runs branch tasks. `executor` is where the steps of the runs it drives run (e.g. a
    `BranchExecutor`, to spread their maps over the branch workers).

    `stop()` (or, with `handle_signals`, SIGTERM or SIGINT) makes it claim no more runs
    or tasks; the runs it drives and the tasks it runs get `grace` seconds to finish, then
    they are cancelled and released where they stand (a step cut off runs again, under
    its own step id, on the next worker). A second signal cancels them at once.
    """

    def __init__(
        self,
        graphs: Resumable | Sequence[Resumable],
        store: RunStore,
        *,
        deps: Any = None,
        concurrency: int = 1,
        statuses: Collection[RunStatus] = READY,
        max_runs: int | None = None,
        idle_timeout: float | None = 0.0,
        poll_interval: float = 0.2,
        max_poll_interval: float = 2.0,
        grace: float = 30.0,
        branches: int = 0,
        queues: Collection[str] | None = None,
        executor: Executor | None = None,
    ) -> None:
        """Set the worker up (nothing runs until `run`).

        Raises:
            ValueError: a graph has no name, two graphs share one, a number is out of range, or
                `branches` is given for a store that is not PostgreSQL.
        """
        for name, count in (("concurrency", concurrency), ("branches", branches)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"Worker({name}={count!r}): a whole number, 0 or more.")
        if concurrency == 0 and branches == 0:
            raise ValueError(
                "Worker(concurrency=0) drives no runs: give it branches=N to run branch tasks, or concurrency >= 1."
            )
        if isinstance(queues, str):
            raise ValueError(f"Worker(queues=...) takes queue names, not one string: write queues=[{queues!r}]")
        for name, value in (("poll_interval", poll_interval), ("max_poll_interval", max_poll_interval)):
            if not value > 0:
                raise ValueError(f"Worker({name}={value!r}): an interval is a number of seconds, more than 0.")
        if not grace >= 0:
            raise ValueError(f"Worker(grace={grace!r}): the grace period is a number of seconds, 0 or more.")
        self.by_name = by_name(graphs)
        """The graphs driven, by name."""
        self.store = store
        self.deps = deps
        self.concurrency = concurrency
        self.statuses = frozenset(RunStatus(status) for status in statuses)
        self.max_runs = max_runs
        self.idle_timeout = idle_timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max(max_poll_interval, poll_interval)
        self.grace = grace
        self.executor = executor
        """Where the steps of the runs this worker drives run (`None`: in this process)."""
        self.branches: BranchSlots | None = None
        """The worker's branch slots (`None` without `branches`)."""
        if branches:
            self.branches = _branch_slots(self, branches, queues)
        self.driven: list[str] = []
        """The ids of the runs this worker drove, in the order their drives finished."""
        self._wanted: set[str | None] = set(self.by_name)
        if len(self.by_name) == 1:
            self._wanted.add(None)
        self._unusable: set[str] = set()  # runs this worker could not start: not claimed by it again
        self._active: set[str] = set()
        self._changed: anyio.Event | None = None
        self._stop: anyio.Event | None = None
        self._stopping = False
        self._drives: anyio.CancelScope | None = None

    @property
    def driving(self) -> frozenset[str]:
        """The runs being driven right now."""
        return frozenset(self._active)

    def stop(self, *, grace: float | None = None) -> None:
        """Claim no more runs; give the runs being driven `grace` seconds (default: the worker's) to finish.

        Safe to call from a signal handler's task or before `run`; calling it again with a
        shorter grace shortens it (`grace=0`: cancel the drives now).
        """
        self._stopping = True
        if self.branches is not None:
            self.branches.stop()
        if grace is not None:
            self.grace = min(self.grace, grace)
        if self._stop is not None:
            self._stop.set()
        self._tell()
        if self.grace == 0 and self._drives is not None:
            self._drives.cancel()

    async def run(self, *, handle_signals: bool = False) -> list[str]:
        """Claim and drive runs until stopped, idle for `idle_timeout`, or `max_runs` were driven.

        With `handle_signals`, SIGTERM and SIGINT stop the worker gracefully (see the class).

        Returns:
            The ids of the runs this worker drove, in the order their drives finished.

        Raises:
            PersistenceError: with `branches`, the database has task tables railyard did not make.
        """
        self._stop = anyio.Event()
        if self._stopping:
            self._stop.set()
        if self.branches is not None:
            await self.branches.prepare()
        async with anyio.create_task_group() as outer:
            if handle_signals:
                await outer.start(self._on_signals)
            logger.info(
                "worker started: driving up to %d runs at once of %s%s%s",
                self.concurrency,
                ", ".join(sorted(self.by_name)),
                f", running up to {self.branches.slots} branch tasks at once" if self.branches is not None else "",
                " (SIGTERM or SIGINT stops it)" if handle_signals else "",
            )
            async with anyio.create_task_group() as drives:
                self._drives = drives.cancel_scope
                if self._stopping and self.grace == 0:
                    drives.cancel_scope.cancel()
                if self.branches is not None:
                    await drives.start(self.branches.serve)
                await self._claim(drives)
                if self.branches is not None:
                    self.branches.stop()
                held = len(self.branches.held) if self.branches is not None else 0
                if self._stopping and (self._active or held):
                    logger.info(
                        "worker stops: %d runs and %d branch tasks have %g s to finish (%s)",
                        len(self._active),
                        held,
                        self.grace,
                        ", ".join(sorted(self._active)),
                    )
                    outer.start_soon(self._cut_after_grace, drives.cancel_scope)
            self._drives = None
            outer.cancel_scope.cancel()
        return self.driven

    async def _on_signals(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            task_status.started()
            async for number in received:
                first = not self._stopping
                logger.info(
                    "worker got %s: %s",
                    signal.Signals(number).name,
                    "claiming no more runs, finishing the runs it drives" if first else "releasing its runs now",
                )
                self.stop(grace=None if first else 0)

    async def _cut_after_grace(self, drives: anyio.CancelScope) -> None:
        await anyio.sleep(self.grace)
        if self._active or (self.branches is not None and self.branches.held):
            logger.info("worker's grace period is over: releasing %d runs where they stand", len(self._active))
        drives.cancel()

    def _tell(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def _claim(self, drives: anyio.abc.TaskGroup) -> None:
        interval = self.poll_interval
        idle_since = anyio.current_time()
        while not self._stopping:
            if self._active:
                idle_since = anyio.current_time()
            if self.branches is not None:
                idle_since = max(idle_since, self.branches.last_busy)
                if self.branches.held:  # a task in hand is not idleness, however long its step
                    idle_since = anyio.current_time()
            if self.concurrency == 0:  # branch tasks only
                if self.idle_timeout is not None:
                    left = self.idle_timeout - (anyio.current_time() - idle_since)
                    if left <= 0:
                        return
                    interval = min(self.max_poll_interval, left)
                await self._wait(None if self.idle_timeout is None else interval, listen=False)
                continue
            in_hand = len(self.driven) + len(self._active)
            if self.max_runs is not None and in_hand >= self.max_runs:
                if not self._active:
                    return
                await self._wait(None)
                continue
            if len(self._active) >= self.concurrency:
                await self._wait(None)
                continue
            try:
                run_id = await self.store.claim(statuses=self.statuses, exclude=self._unusable, graphs=self._wanted)
            except PersistenceError as error:  # the store is unreachable now: wait, then try again
                logger.warning("could not claim a run (%s); trying again in %.3g s", error, interval)
                await self._wait(interval)
                interval = min(interval * 2, self.max_poll_interval)
                continue
            if run_id is not None:
                logger.info("claimed run %s", run_id, extra=_extra(run_id))
                self._active.add(run_id)
                drives.start_soon(self._drive, run_id, name=f"railyard drive {run_id}")
                interval = self.poll_interval
                continue
            if not self._active and self.idle_timeout is not None:
                if self.branches is not None:
                    idle_since = max(idle_since, self.branches.last_busy)
                    if self.branches.held:
                        idle_since = anyio.current_time()
                left = self.idle_timeout - (anyio.current_time() - idle_since)
                if left <= 0:
                    return
                interval = min(interval, left)
            if not await self._wait(interval):
                interval = min(interval * 2, self.max_poll_interval)

    async def _wait(self, within: float | None, *, listen: bool = True) -> bool:
        """Wait for a drive to finish, a stop, or (with `within`) the store's word of a ready run; say if one came.

        `listen=False`: `within` seconds pass without asking the store.
        """
        if self._changed is None:
            self._changed = anyio.Event()
        changed = self._changed
        stop = self._stop
        woke = False
        async with anyio.create_task_group() as waiting:

            async def until(event: anyio.Event) -> None:
                nonlocal woke
                await event.wait()
                woke = True
                waiting.cancel_scope.cancel()

            async def announced(seconds: float) -> None:
                nonlocal woke
                ready = getattr(self.store, "wait_ready", None) if listen else None
                if ready is None:
                    await anyio.sleep(seconds)
                elif await ready(seconds):
                    woke = True
                waiting.cancel_scope.cancel()

            waiting.start_soon(until, changed)
            if stop is not None:
                waiting.start_soon(until, stop)
            if within is not None:
                waiting.start_soon(announced, within)
        return woke

    async def _drive(self, run_id: str) -> None:
        outcome: Outcome = "stopped"
        lost = getattr(self.store, "lease_lost", lambda run_id: None)(run_id)
        try:
            async with anyio.create_task_group() as drive:
                if lost is not None:
                    drive.start_soon(_cancel_when, lost, drive.cancel_scope)
                outcome = await drive_run(self.by_name, self.store, run_id, self.deps, self.executor)
                drive.cancel_scope.cancel()
            if lost is not None and lost.is_set():
                logger.warning("run %s was taken over by another driver; this worker let go of it", run_id)
                outcome = "taken"
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.release_claim(run_id)
                logger.debug("released the claim on run %s", run_id, extra=_extra(run_id))
            if outcome == "stopped":
                logger.info("run %s was released unfinished: the worker is stopping", run_id, extra=_extra(run_id))
            elif outcome == "driven":
                self.driven.append(run_id)
            elif outcome == "unusable":
                self._unusable.add(run_id)
            self._active.discard(run_id)
            self._tell()


async def _cancel_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _branch_slots(worker: Worker, slots: int, queues: Collection[str] | None) -> BranchSlots:
    """The branch side of a worker on a PostgreSQL store.

    Raises:
        ValueError: the store is not a `PostgresStore` (branch tasks live in PostgreSQL).
    """
    try:
        from railyard._branch_worker import BranchSlots
        from railyard.store.postgres import PostgresStore
    except ImportError as err:
        raise ValueError(f"Worker(branches=...) needs PostgreSQL: {err}") from None
    store = worker.store
    if not isinstance(store, PostgresStore):
        raise ValueError(f"Worker(branches=...): branch tasks live in PostgreSQL, and the store is {store!r}.")
    return BranchSlots(
        worker.by_name,
        store,
        worker.deps,
        slots,
        None if queues is None else list(queues),
        poll_interval=worker.poll_interval,
        max_poll_interval=worker.max_poll_interval,
    )


def by_name(graphs: Resumable | Sequence[Resumable]) -> dict[str, Resumable]:
    """The graphs by name.

    Raises:
        ValueError: no graph, a graph without a name, or two graphs with one name.
    """
    listed: Sequence[Resumable] = graphs if isinstance(graphs, Sequence) else (graphs,)
    if not listed:
        raise ValueError("run_worker() needs at least one graph to drive runs of.")
    named: dict[str, Resumable] = {}
    for graph in listed:
        name = graph.name
        if name is None:
            raise ValueError(
                f"run_worker() cannot tell the runs of {graph!r} apart: it has no name. Give it one "
                f"(`Graph(..., name='orders')`, `GraphBuilder(name=...)`, `Agent(..., name=...)`)."
            )
        if name in named:
            raise ValueError(f"run_worker() was given two graphs named {name!r}; each needs a name of its own.")
        named[name] = graph
    return named


async def drive_run(
    graphs: Mapping[str, Resumable], store: RunStore, run_id: str, deps: Any, executor: Executor | None = None
) -> Outcome:
    """Resume one claimed run; say whether it was driven, taken by another driver, or is unusable here."""
    graph = await _graph_of(graphs, store, run_id)
    if graph is None:
        logger.error(
            "run %s names a graph this worker was not given; it is skipped from now on", run_id, extra=_extra(run_id)
        )
        return "unusable"
    run_deps = deps.get(graph.name) if isinstance(deps, Mapping) else deps
    try:
        if executor is not None and hasattr(graph, "iter_resume"):  # node and builder graphs; an agent's run here
            await graph.resume(store, run_id, deps=run_deps, executor=executor)  # type: ignore[call-arg]
        else:
            await graph.resume(store, run_id, deps=run_deps)
    except RunSuspended as suspended:
        logger.info(
            "run %s is suspended: %s",
            run_id,
            suspended.waiting.key,
            extra=_extra(run_id, suspended.waiting.step_id),
        )
        return "driven"  # as far as it goes: a signal or its timer makes it ready again
    except RunCancelled as cancelled:
        logger.info("run %s was cancelled while driven: %s", run_id, cancelled.reason, extra=_extra(run_id))
        return "driven"
    except Exception as error:
        if _taken(error):
            logger.info("run %s is driven by another driver now; left to it: %s", run_id, error, extra=_extra(run_id))
            return "taken"  # between the claim and the start, or taken over (its lease) while driven
        if await _started(store, run_id):
            logger.exception(
                "run %s failed; its error is recorded, and it can be resumed after a fix", run_id, extra=_extra(run_id)
            )
            return "driven"
        logger.exception(
            "run %s cannot be started by this worker; it is skipped from now on", run_id, extra=_extra(run_id)
        )
        return "unusable"
    return "driven"


def _taken(error: BaseException) -> bool:
    """Whether `error` says another driver holds the run (alone, or inside the loop's exception groups)."""
    if isinstance(error, RunLocked):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_taken(inner) for inner in error.exceptions)
    cause = error.__cause__ or error.__context__
    return isinstance(cause, RunLocked)


async def _graph_of(graphs: Mapping[str, Resumable], store: RunStore, run_id: str) -> Resumable | None:
    records = await store.read(run_id)
    name = records[0].graph if records else None
    if name is None and len(graphs) == 1:
        return next(iter(graphs.values()))
    return graphs.get(name) if name is not None else None


async def _started(store: RunStore, run_id: str) -> bool:
    """Whether the run's last attempt got as far as recording its failure (so the run is in use)."""
    records = await store.read(run_id)
    return bool(records) and records[-1].status == RunStatus.FAILED
