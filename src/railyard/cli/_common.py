"""What every command shares: the store option, one-line errors, exit statuses, and running async code."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
import typer

from railyard.exceptions import RailyardError
from railyard.store import RunStore

__all__ = (
    "DEFAULT_STORE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SUSPENDED",
    "EXIT_USAGE",
    "CliError",
    "StoreOption",
    "close_store",
    "command_line",
    "execute",
    "importable_here",
    "open_cli_store",
    "write_out",
)

DEFAULT_STORE = "sqlite:railyard.db"
"""The store commands use without `--store` or `RAILYARD_STORE`: `railyard.db` in the current directory."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SUSPENDED = 3
EXIT_INTERRUPTED = 130

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="RAILYARD_STORE",
        help="The run store: sqlite:PATH, sqlite:///ABSOLUTE/PATH, postgresql://..., file:DIR.",
        show_default=True,
    ),
]


class CliError(Exception):
    """A command cannot go on: `message` is the one line it prints, `code` its exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _debug(context: typer.Context) -> bool:
    root = context.find_root()
    return bool(isinstance(root.obj, dict) and root.obj.get("debug"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def execute(context: typer.Context, work: Callable[[], Awaitable[int | None]]) -> None:
    """Run a command's async body; turn its errors into one line on stderr and an exit status.

    With the global `--debug`, errors keep their traceback.
    """
    try:
        try:
            code = anyio.run(work)
        except BaseExceptionGroup as group:  # one error out of a task group: say it as itself
            if len(group.exceptions) != 1:
                raise
            raise group.exceptions[0] from None
    except CliError as err:
        if _debug(context):
            raise
        typer.echo(f"railyard: {_one_line(err.message)}", err=True)
        raise typer.Exit(err.code) from None
    except RailyardError as err:  # the library's own messages say what happened and what to do
        if _debug(context):
            raise
        typer.echo(f"railyard: {_one_line(str(err))}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        typer.echo("railyard: interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if code:
        raise typer.Exit(code)


def importable_here() -> None:
    """Make the current directory importable, as `python -m` does (graphs and payload types live there)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def open_cli_store(url: str, *, create: bool = False) -> RunStore:
    """The store `url` names; unless `create`, a SQLite file or store directory must exist already.

    Raises:
        CliError: the URL names no kind of store, or (not `create`) nothing is there.
    """
    from railyard.store.urls import open_store

    parts = urlsplit(url)
    if not create and parts.scheme in ("sqlite", "file"):
        path = Path(parts.path if not parts.netloc else f"//{parts.netloc}{parts.path}")
        if not path.exists():
            raise CliError(
                f"no store at {url} ({path} does not exist): pass --store URL or set RAILYARD_STORE "
                f"(`railyard run` creates {DEFAULT_STORE} in the current directory)",
                EXIT_FAILED,
            )
    try:
        return open_store(url)
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    except ImportError as err:
        raise CliError(f"cannot open {url}: {err} (pip install 'railyard-graph[postgres]')", EXIT_FAILED) from None


async def close_store(store: RunStore) -> None:
    """Close a store opened by a command (every backend has `aclose`)."""
    aclose: Any = getattr(store, "aclose", None)
    if aclose is not None:
        await aclose()


def command_line(*words: str, store: str) -> str:
    """A `railyard` command line for the user to copy, its words quoted for a POSIX shell."""
    parts = ["railyard", *words]
    if store != DEFAULT_STORE or os.environ.get("RAILYARD_STORE"):
        parts += ["--store", store]
    return " ".join(shlex.quote(part) for part in parts)


def write_out(text: str) -> None:
    """Print a command's result on stdout (no markup, no highlighting)."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
