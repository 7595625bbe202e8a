"""Workers: processes that claim runs ready to go on and drive them, on any durable store.

```python
async with open_store("postgresql://...") as store:   # or any RunStore
    await run_worker([order_graph, fan_out_graph, support_agent], store, deps=deps)
```

Start as many workers as you like, on as many machines as share the store: each run is
driven by one worker at a time, a run whose worker died is picked up by another (it is
reported `stalled` once the dead worker's lease runs out), a suspended run is picked up
when its timer is due, and a step that finished is never run again. A run is driven by the graph whose name was
recorded when it was created: a node `Graph`, a builder `Graph` or an `Agent` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import anyio

from railyard._logging import extra as _extra
from railyard.exceptions import RunCancelled, RunLocked
from railyard.store import RunStatus, RunStore
from railyard.store.base import READY
from railyard.suspension import RunSuspended

__all__ = ("Resumable", "run_worker")

logger = logging.getLogger("railyard.worker")


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


async def run_worker(
    graphs: Resumable | Sequence[Resumable],
    store: RunStore,
    *,
    deps: Any = None,
    statuses: Collection[RunStatus] = READY,
    max_runs: int | None = None,
    idle_timeout: float | None = 0.0,
    poll_interval: float = 0.2,
) -> list[str]:
    """Claim ready runs of `graphs` one after another and drive each to its end.

    Each run is resumed by the graph its record names. `deps` is handed to every run; a
    mapping from graph name to dependencies gives each graph its own. A run whose node
    raises is left `failed` (its error recorded) and the worker goes on. Stops after
    `max_runs` runs, or once no run has been ready for `idle_timeout` seconds (`None`:
    never). Given a single graph, the worker also drives runs recorded without a graph
    name (made before names were recorded).

    Returns:
        The ids of the runs this worker drove, in order.

    Raises:
        ValueError: a graph has no name, or two graphs share one.
    """
    by_name = _by_name(graphs)
    wanted: set[str | None] = set(by_name)
    if len(by_name) == 1:
        wanted.add(None)
    driven: list[str] = []
    unusable: set[str] = set()  # runs this worker could not start: not retried by it
    idle_since = anyio.current_time()
    while max_runs is None or len(driven) < max_runs:
        run_id = await store.claim(statuses=statuses, exclude=unusable, graphs=wanted)
        if run_id is None:
            if idle_timeout is not None and anyio.current_time() - idle_since >= idle_timeout:
                break
            await anyio.sleep(poll_interval)
            continue
        logger.info("claimed run %s", run_id, extra=_extra(run_id))
        try:
            outcome = await _drive(by_name, store, run_id, deps)
        finally:
            await store.release_claim(run_id)
            logger.debug("released the claim on run %s", run_id, extra=_extra(run_id))
        if outcome == "driven":
            driven.append(run_id)
        elif outcome == "unusable":
            unusable.add(run_id)
        idle_since = anyio.current_time()
    return driven


def _by_name(graphs: Resumable | Sequence[Resumable]) -> dict[str, Resumable]:
    listed: Sequence[Resumable] = graphs if isinstance(graphs, Sequence) else (graphs,)
    if not listed:
        raise ValueError("run_worker() needs at least one graph to drive runs of.")
    by_name: dict[str, Resumable] = {}
    for graph in listed:
        name = graph.name
        if name is None:
            raise ValueError(
                f"run_worker() cannot tell the runs of {graph!r} apart: it has no name. Give it one "
                f"(`Graph(..., name='orders')`, `GraphBuilder(name=...)`, `Agent(..., name=...)`)."
            )
        if name in by_name:
            raise ValueError(f"run_worker() was given two graphs named {name!r}; each needs a name of its own.")
        by_name[name] = graph
    return by_name


async def _drive(by_name: Mapping[str, Resumable], store: RunStore, run_id: str, deps: Any) -> str:
    """Resume one claimed run; say whether it was driven, taken by another driver, or is unusable here."""
    graph = await _graph_of(by_name, store, run_id)
    if graph is None:
        logger.error(
            "run %s names a graph this worker was not given; it is skipped from now on", run_id, extra=_extra(run_id)
        )
        return "unusable"
    run_deps = deps.get(graph.name) if isinstance(deps, Mapping) else deps
    try:
        await graph.resume(store, run_id, deps=run_deps)
    except RunLocked:
        logger.info("run %s is locked by another driver; left to it", run_id, extra=_extra(run_id))
        return "taken"  # taken over by another driver between the claim and the start
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
    except Exception:
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


async def _graph_of(by_name: Mapping[str, Resumable], store: RunStore, run_id: str) -> Resumable | None:
    records = await store.read(run_id)
    name = records[0].graph if records else None
    if name is None and len(by_name) == 1:
        return next(iter(by_name.values()))
    return by_name.get(name) if name is not None else None


async def _started(store: RunStore, run_id: str) -> bool:
    """Whether the run's last attempt got as far as recording its failure (so the run is in use)."""
    records = await store.read(run_id)
    return bool(records) and records[-1].status == RunStatus.FAILED
