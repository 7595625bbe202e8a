"""railyard: typed, async graph workflows and state machines.

Describe a workflow as `BaseNode` classes whose return type hints are its edges, put
them in a `Graph`, and run it: to the end with `Graph.run`, or step by step with
`Graph.iter`. Give a run a store (`SqliteStore`, `PostgresStore`, `FileStore`,
`MemoryStore`, or `open_store(url)`) and it survives a restart: `Graph.resume` or a
worker (`run_worker`) carries it on.

The node API, the snapshots and the errors are imported with `railyard`; the stores,
the durable and file persistence, the executors and the worker load on first use, so
`import railyard` stays cheap and never imports a database driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from railyard.children import ChildRunError
from railyard.exceptions import (
    CorruptRunError,
    GraphBuildingError,
    GraphMismatchError,
    GraphNodeStatusError,
    GraphRuntimeError,
    GraphSetupError,
    GraphStepLimitError,
    GraphValidationError,
    GraphVersionError,
    MermaidServiceError,
    PersistenceError,
    RailyardError,
    RunCancelled,
    RunEnded,
    RunExists,
    RunLocked,
    RunNotFound,
    RunTimedOut,
)
from railyard.graph import Graph, GraphRun, GraphRunResult
from railyard.nodes import BaseNode, Edge, End, GraphRunContext
from railyard.persistence import EndSnapshot, NodeSnapshot, Snapshot
from railyard.retries import NonRetryable, RetryPolicy, StepTimeout

if TYPE_CHECKING:
    __version__: str
    """The installed railyard's version (read from its package metadata when first asked for)."""

    from railyard.durable import DurablePersistence
    from railyard.persistence.file import FileStatePersistence
    from railyard.persistence.in_mem import FullStatePersistence, SimpleStatePersistence
    from railyard.runtime._executor import Executor, InProcessExecutor, ThreadExecutor
    from railyard.store import RunInfo, RunStatus, RunStore
    from railyard.store.file import FileStore
    from railyard.store.memory import MemoryStore
    from railyard.store.postgres import PostgresStore
    from railyard.store.sqlite import SqliteStore
    from railyard.store.urls import open_store
    from railyard.versioning import Migration
    from railyard.worker import run_worker

__all__ = (
    # the node API
    "BaseNode",
    "Edge",
    "End",
    "Graph",
    "GraphRun",
    "GraphRunContext",
    "GraphRunResult",
    # pydantic-graph's persistence
    "EndSnapshot",
    "FileStatePersistence",
    "FullStatePersistence",
    "NodeSnapshot",
    "SimpleStatePersistence",
    "Snapshot",
    # durable runs: stores and the persistence over them
    "DurablePersistence",
    "FileStore",
    "MemoryStore",
    "PostgresStore",
    "RunInfo",
    "RunStatus",
    "RunStore",
    "SqliteStore",
    "open_store",
    # changing a graph under stored runs
    "Migration",
    # retries and timeouts
    "NonRetryable",
    "RetryPolicy",
    "StepTimeout",
    # where steps run, and who drives stored runs
    "Executor",
    "InProcessExecutor",
    "ThreadExecutor",
    "run_worker",
    # errors
    "ChildRunError",
    "CorruptRunError",
    "GraphBuildingError",
    "GraphMismatchError",
    "GraphNodeStatusError",
    "GraphRuntimeError",
    "GraphSetupError",
    "GraphStepLimitError",
    "GraphValidationError",
    "GraphVersionError",
    "MermaidServiceError",
    "PersistenceError",
    "RailyardError",
    "RunCancelled",
    "RunTimedOut",
    "RunEnded",
    "RunExists",
    "RunLocked",
    "RunNotFound",
)

_LAZY: dict[str, str] = {
    "DurablePersistence": "railyard.durable",
    "Executor": "railyard.runtime._executor",
    "FileStatePersistence": "railyard.persistence.file",
    "FileStore": "railyard.store.file",
    "FullStatePersistence": "railyard.persistence.in_mem",
    "InProcessExecutor": "railyard.runtime._executor",
    "MemoryStore": "railyard.store.memory",
    "Migration": "railyard.versioning",
    "PostgresStore": "railyard.store.postgres",
    "RunInfo": "railyard.store",
    "RunStatus": "railyard.store",
    "RunStore": "railyard.store",
    "SimpleStatePersistence": "railyard.persistence.in_mem",
    "SqliteStore": "railyard.store.sqlite",
    "ThreadExecutor": "railyard.runtime._executor",
    "open_store": "railyard.store.urls",
    "run_worker": "railyard.worker",
}
"""The names loaded on first access (PEP 562), by the module that defines them."""


def __getattr__(name: str) -> object:
    """Load a store, persistence, executor or the worker the first time it is asked for."""
    if name == "__version__":  # the installed distribution's version, read from its metadata once
        from railyard._version import railyard_version

        version = globals()["__version__"] = railyard_version()
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'railyard' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
