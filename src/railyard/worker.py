"""Workers: processes that claim runs ready to go on and drive them, on any durable store.

```python
async with open_store("postgresql://...") as store:   # or any RunStore
    await run_worker(graph, store, deps=deps)
```

Start as many workers as you like, on as many machines as share the store: each run is
driven by one worker at a time, a run whose worker died is picked up by another, and
a step that finished is never run again.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import anyio

from railyard.durable import DurablePersistence
from railyard.exceptions import RunLocked
from railyard.graph import Graph
from railyard.store import RunStatus, RunStore
from railyard.store.base import READY

__all__ = ("run_worker",)

logger = logging.getLogger("railyard.worker")


async def run_worker(
    graph: Graph[Any, Any, Any],
    store: RunStore,
    *,
    deps: Any = None,
    statuses: Collection[RunStatus] = READY,
    max_runs: int | None = None,
    idle_timeout: float | None = 0.0,
    poll_interval: float = 0.2,
) -> list[str]:
    """Claim ready runs of `graph` one after another and drive each to its end.

    A run whose node raises is left `failed` (its error recorded) and the worker goes on.
    Stops after `max_runs` runs, or once no run has been ready for `idle_timeout`
    seconds (`None`: never).

    Returns:
        The ids of the runs this worker drove, in order.
    """
    driven: list[str] = []
    unusable: set[str] = set()  # runs this worker could not start: not retried by it
    idle_since = anyio.current_time()
    while max_runs is None or len(driven) < max_runs:
        run_id = await store.claim(statuses=statuses, exclude=unusable)
        if run_id is None:
            if idle_timeout is not None and anyio.current_time() - idle_since >= idle_timeout:
                break
            await anyio.sleep(poll_interval)
            continue
        started = locked_elsewhere = False
        try:
            async with graph.iter_from_persistence(
                DurablePersistence(store, run_id), deps=deps, infer_name=False
            ) as run:
                started = True
                async for _ in run:
                    pass
        except RunLocked:
            locked_elsewhere = True  # taken over by another driver between the claim and the start
        except Exception:
            if started:
                logger.exception("run %s failed; its error is recorded, and it can be resumed after a fix", run_id)
            else:
                logger.exception("run %s cannot be started by this worker; it is skipped from now on", run_id)
        finally:
            await store.release_claim(run_id)
        if started:
            driven.append(run_id)
        elif not locked_elsewhere:
            unusable.add(run_id)
        idle_since = anyio.current_time()
    return driven
