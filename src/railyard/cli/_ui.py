"""The `ui` command: serve the run inspector over a store."""

from __future__ import annotations

import os
import secrets
from typing import Annotated
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import typer

from railyard.cli._common import (
    DEFAULT_STORE,
    EXIT_USAGE,
    CliError,
    StoreOption,
    close_store,
    execute,
    importable_here,
    open_cli_store,
)
from railyard.cli._load import load_graph

__all__ = ("ui",)

TOKEN_ENV = "RAILYARD_UI_TOKEN"
"""The environment variable that gives the inspector its token."""


def store_label(url: str) -> str:
    """A store URL as the pages show it: without a password."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{key}=***" if key.lower() == "password" else f"{key}={value}"
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def ui(  # noqa: PLR0917 - a command: typer passes its options by name
    ctx: typer.Context,
    graphs: Annotated[
        list[str] | None,
        typer.Argument(help="Graphs (MODULE:GRAPH) whose runs it may resume and fork; runs of any graph are shown."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="The address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to serve on (0: any free one).")] = 7860,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            help="A token every request must carry (needed off 127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Show runs, change none (no actions).")] = False,
    allow_host: Annotated[
        list[str] | None, typer.Option("--allow-host", help="Another Host name it answers to (e.g. behind a proxy).")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Serve the run inspector in the browser: runs, their graphs, steps and states, live; answer, resume, cancel, fork.

    It serves 127.0.0.1 by default. Anywhere else it needs a token (--token or RAILYARD_UI_TOKEN;
    `--token generate` makes one): the address it prints carries it.

    Example:
        railyard ui examples.order_review:order_graph --store sqlite:orders.db
    """

    async def work() -> int:
        try:
            import uvicorn

            from railyard.inspector import LOOPBACK, create_app
            from railyard.inspector._serve import Server
        except ImportError as err:
            raise CliError(f"`railyard ui` needs {err.name}: pip install 'railyard-graph[ui]'") from None

        secret = secrets.token_urlsafe(18) if token == "generate" else token
        if host not in LOOPBACK and not secret:
            raise CliError(
                f"--host {host} serves other machines: give a token (--token TEXT, --token generate, or {TOKEN_ENV})",
                EXIT_USAGE,
            )
        if "*" in (allow_host or ()) and not secret:
            raise CliError(
                "--allow-host '*' answers to any host name: give a token "
                f"(--token TEXT, --token generate, or {TOKEN_ENV})",
                EXIT_USAGE,
            )
        importable_here()  # answers are checked against payload types imported from here
        loaded = [load_graph(spec) for spec in graphs or ()]
        opened = open_cli_store(store)
        shown = f"[{host}]" if ":" in host else host

        def announce(bound: int) -> None:
            address = f"http://{shown}:{bound}/" + (f"?token={quote(secret)}" if secret else "")
            typer.echo(f"railyard inspector on {address}  (store {store_label(store)}; Ctrl-C stops it)", err=True)

        try:
            await opened.runs(limit=1)  # a file that is no railyard store is refused now, not page by page
            app = create_app(
                opened,
                loaded,
                store_label=store_label(store),
                token=secret,
                read_only=read_only,
                host=host,
                allowed_hosts=allow_host or (),
            )
            config = uvicorn.Config(
                app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
            )
            await Server(config, announce).serve()
        finally:
            await close_store(opened)
        return 0

    if os.environ.get(TOKEN_ENV) == "":
        os.environ.pop(TOKEN_ENV)
    execute(ctx, work)
