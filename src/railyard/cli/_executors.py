"""The `--executor` option: where a run's steps run (here, on threads, on a Ray cluster, or as branch tasks)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import typer

from railyard.cli._common import EXIT_USAGE, CliError
from railyard.cli._load import GraphKind, LoadedGraph

__all__ = ("ExecutorOption", "close_executor", "open_executor")

ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        envvar="RAILYARD_EXECUTOR",
        help="Where steps run: inline (this process), threads[:N], ray[:ADDRESS] (a Ray cluster; "
        "pip install 'railyard-graph[ray]'), or branches[:QUEUE] (tasks in the PostgreSQL store, for "
        "`railyard worker --branches N` processes).",
    ),
]


async def open_executor(spec: str, loaded: LoadedGraph | None = None, store: Any = None) -> Any:
    """The executor `spec` names (`None` for inline); a Ray cluster is joined (or started) first.

    `store` is the store the runs are in (branch tasks go in its database). Close what this
    returns with `close_executor`.

    Raises:
        CliError: the spec names no executor, the graph is an agent (its steps run here),
            Ray is missing or cannot be reached, or branches are asked of a store that is
            not PostgreSQL.
    """
    kind, _, argument = spec.strip().partition(":")
    kind = kind.lower()
    if kind in ("", "inline"):
        return None
    if loaded is not None and loaded.kind is GraphKind.AGENT:
        raise CliError(f"--executor {spec}: an agent's steps run in this process; drop --executor", EXIT_USAGE)
    if kind == "threads":
        from railyard import ThreadExecutor

        try:
            return ThreadExecutor(int(argument)) if argument else ThreadExecutor()
        except ValueError:
            raise CliError(f"--executor {spec}: threads:N takes a whole number of at least 1", EXIT_USAGE) from None
    if kind == "ray":
        try:
            import ray

            from railyard.ray import RayExecutor
        except ImportError:
            raise CliError("--executor ray needs Ray: pip install 'railyard-graph[ray]'") from None
        if not ray.is_initialized():
            address = argument or None
            try:
                await anyio.to_thread.run_sync(
                    lambda: ray.init(address=address, include_dashboard=False, log_to_driver=False)
                )
            except Exception as err:
                where = address or "a local Ray instance"
                raise CliError(f"--executor {spec}: cannot start or join {where}: {err}") from None
        return RayExecutor()
    if kind == "branches":
        try:
            from railyard.branches import BranchExecutor
            from railyard.store.postgres import PostgresStore
        except ImportError:
            raise CliError("--executor branches needs PostgreSQL: pip install 'railyard-graph[postgres]'") from None
        if not isinstance(store, PostgresStore):
            raise CliError(
                f"--executor {spec}: branch tasks live in PostgreSQL; give --store postgresql://...", EXIT_USAGE
            )
        return BranchExecutor(store, queue=argument or "default")
    raise CliError(f"--executor {spec!r}: use inline, threads[:N], ray[:ADDRESS] or branches[:QUEUE]", EXIT_USAGE)


def close_executor(executor: Any) -> None:
    """End what an executor holds (a `BranchExecutor`'s thread and sessions); nothing for the others."""
    close = getattr(executor, "close", None)
    if close is not None:
        close()
