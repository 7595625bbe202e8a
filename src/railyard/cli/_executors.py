"""The `--executor` option: where a run's steps run (here, on threads, or on a Ray cluster)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import typer

from railyard.cli._common import EXIT_USAGE, CliError
from railyard.cli._load import GraphKind, LoadedGraph

__all__ = ("ExecutorOption", "open_executor")

ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        envvar="RAILYARD_EXECUTOR",
        help="Where steps run: inline (this process), threads[:N], or ray[:ADDRESS] (a Ray cluster; "
        "pip install 'railyard-graph[ray]').",
    ),
]


async def open_executor(spec: str, loaded: LoadedGraph | None = None) -> Any:
    """The executor `spec` names (`None` for inline); a Ray cluster is joined (or started) first.

    Raises:
        CliError: the spec names no executor, the graph is an agent (its steps run here), or
            Ray is missing or cannot be reached.
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
    raise CliError(f"--executor {spec!r}: use inline, threads[:N] or ray[:ADDRESS]", EXIT_USAGE)
