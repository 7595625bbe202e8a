"""The `railyard` command's wiring: the typer app, its global options and its commands."""

from __future__ import annotations

from typing import Annotated

import typer

from railyard.cli import _drive, _inspect, _manage, _ui

__all__ = ("app",)

app = typer.Typer(
    name="railyard",
    help=(
        "Run railyard graphs durably, and see, answer, resume, cancel and fork their runs straight from the store.\n\n"
        "Every command takes --store URL (or RAILYARD_STORE); the default is sqlite:railyard.db here.\n\n"
        "Example: railyard run myapp.flows:orders --state '{\"order_id\": 7}' && railyard runs"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _options(
    context: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback with an error.")] = False,
) -> None:
    context.obj = {"debug": debug}


for command in (
    _drive.run,
    _inspect.runs,
    _inspect.show,
    _drive.resume,
    _manage.signal,
    _manage.cancel,
    _drive.fork,
    _manage.delete,
    _manage.prune,
    _inspect.diagram,
    _drive.worker,
    _ui.ui,
):
    app.command()(command)
