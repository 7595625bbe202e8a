"""The commands that change a stored run without its graph's code: `signal`, `cancel`, `delete`, `prune`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from railyard.cli._common import (
    DEFAULT_STORE,
    EXIT_FAILED,
    CliError,
    StoreOption,
    close_store,
    execute,
    importable_here,
    open_cli_store,
    write_out,
)
from railyard.cli._inspect import parse_age, parse_statuses
from railyard.cli._load import load_json
from railyard.store import RunStatus
from railyard.suspension import SignalError
from railyard.suspension import cancel as cancel_run
from railyard.suspension import signal as signal_run

__all__ = ("cancel", "delete", "prune", "signal")


def signal(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The suspended run.")],
    key: Annotated[str, typer.Argument(help="What it waits for (`railyard show RUN_ID` lists the keys).")],
    payload: Annotated[str, typer.Argument(help="The answer: JSON, or @file.")],
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Answer what a suspended run waits for; the payload is checked against the step's type first.

    Nothing is stored when the payload is refused. Once answered, the run is ready: a worker
    (or `railyard resume`) carries it on.

    Example:
        railyard signal order-7 approval '{"approved": true, "by": "Dana"}'
    """

    async def work() -> None:
        value = load_json(payload, "PAYLOAD")
        importable_here()  # the payload's type is imported from where the step defined it
        opened = open_cli_store(store)
        try:
            await signal_run(opened, run_id, key, value)
        except SignalError as err:
            raise CliError(str(err), EXIT_FAILED) from None
        finally:
            await close_store(opened)
        write_out(f"signalled {key!r} to run {run_id}: it is ready to go on (a worker or `railyard resume` runs it)")

    execute(ctx, work)


def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept with the run).")
    ] = "cancelled from the command line",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Cancel a run for good: at once if nobody drives it, else its driver stops at its next step.

    Example:
        railyard cancel order-7 --reason "customer withdrew"
    """

    async def work() -> None:
        opened = open_cli_store(store)
        try:
            await cancel_run(opened, run_id, reason)
            info = (await opened.run(run_id)).info
        finally:
            await close_store(opened)
        if info.status.value == "cancelled":
            write_out(f"cancelled run {run_id}")
        else:
            write_out(f"asked the driver of run {run_id} to stop: it is cancelled at its next step")

    execute(ctx, work)


def _confirm(question: str, yes: bool) -> None:
    if not yes and not typer.confirm(question, default=False):
        raise CliError("nothing was deleted", EXIT_FAILED)


def delete(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Delete a run and its records (and its child runs) from the store.

    Example:
        railyard delete order-7 --yes
    """

    async def work() -> None:
        opened = open_cli_store(store)
        try:
            info = (await opened.run(run_id)).info
            _confirm(f"Delete run {run_id} ({info.status.value}, {info.steps} steps)?", yes)
            await opened.delete(run_id)
        finally:
            await close_store(opened)
        write_out(f"deleted run {run_id}")

    execute(ctx, work)


def prune(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="Runs last changed this long ago: 30d, 12h, ...")],
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only runs with this status (repeat; default: ended and cancelled)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Delete the finished runs that last changed before a time; print how many went.

    Example:
        railyard prune --older-than 30d --status ended --yes
    """

    async def work() -> None:
        age = parse_age(older_than, "--older-than")
        chosen = parse_statuses(status) or [RunStatus.ENDED, RunStatus.CANCELLED]
        opened = open_cli_store(store)
        try:
            cutoff = datetime.now(UTC) - age
            candidates = [
                info
                for info in await opened.runs(status=chosen)
                if info.updated_at is not None and info.updated_at < cutoff
            ]
            if not candidates:
                write_out("no runs to prune")
                return
            _confirm(f"Delete {len(candidates)} run(s) last changed before {cutoff:%Y-%m-%d %H:%M} UTC?", yes)
            pruned = await opened.prune(older_than=age, status=chosen)
        finally:
            await close_store(opened)
        write_out(f"pruned {len(pruned)} run(s)" + (f": {', '.join(pruned)}" if pruned else ""))

    execute(ctx, work)
