"""Workers: processes that claim runs ready to go on and drive them, on any durable store.

```python
async with open_store("postgresql://...") as store:   # or any RunStore
    await run_worker([order_graph, fan_out_graph, support_agent], store, deps=deps, concurrency=8)
```

Start as many workers as you like, on as many machines as share the store: each run is
driven by one worker at a time, a run whose worker died is picked up by another (at once
on PostgreSQL, whose server ends a dead worker's session; else once its lease runs out,
when it is reported `stalled`), a suspended run is picked up when its timer is due, and a
step that finished is never run again. A worker whose run was taken over (it was cut off
from the database past its lease) cannot write to it: its drive stops. A run is driven by
the graph whose name was recorded when it was created: a node `Graph`, a builder `Graph`
or an `Agent` alike. `Worker` is the same with a handle: `stop()` it, or let SIGTERM do so.

On PostgreSQL a worker may also run branch tasks (`branches=N`): the steps of other runs'
maps, spread over workers by their drivers' `railyard.branches.BranchExecutor`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from railyard._worker_pool import Resumable, Worker
from railyard.store import RunStatus, RunStore
from railyard.store.base import READY

if TYPE_CHECKING:
    from railyard.runtime._executor import Executor

__all__ = ("Resumable", "Worker", "run_worker")

Worker.__module__ = __name__


async def run_worker(
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
    handle_signals: bool = False,
    branches: int = 0,
    queues: Collection[str] | None = None,
    executor: Executor | None = None,
) -> list[str]:
    """Claim ready runs of `graphs` and drive up to `concurrency` of them at once, each to its end.

    Each run is resumed by the graph its record names. `deps` is handed to every run; a
    mapping from graph name to dependencies gives each graph its own. A run whose node
    raises is left `failed` (its error recorded) and the worker goes on. Stops after
    `max_runs` runs, or once no run has been ready (and none driven) for `idle_timeout`
    seconds (`None`: never). Given a single graph, the worker also drives runs recorded
    without a graph name (made before names were recorded). With `handle_signals`,
    SIGTERM or SIGINT stop it gracefully: no more claims, `grace` seconds for the runs in
    hand to finish, then they are released where they stand (see `Worker`).

    On PostgreSQL, `branches=N` also claims branch tasks of the graphs' steps (runs whose
    driver gives them a `railyard.branches.BranchExecutor`) from `queues` (`None`: every
    queue) and runs up to N at once, with `deps`; `concurrency=0` runs branch tasks only.
    `executor` is where the steps of the runs this worker drives run.

    Returns:
        The ids of the runs this worker drove, in the order their drives finished.

    Raises:
        ValueError: a graph has no name, two graphs share one, a number is out of range, or
            `branches` is given for a store that is not PostgreSQL.
    """
    worker = Worker(
        graphs,
        store,
        deps=deps,
        concurrency=concurrency,
        statuses=statuses,
        max_runs=max_runs,
        idle_timeout=idle_timeout,
        poll_interval=poll_interval,
        max_poll_interval=max_poll_interval,
        grace=grace,
        branches=branches,
        queues=queues,
        executor=executor,
    )
    return await worker.run(handle_signals=handle_signals)
