"""The `railyard` command: run, list, inspect, answer, resume, cancel and fork runs in a store.

Installed with `pip install 'railyard-graph[cli]'` (typer and rich), as the console
script `railyard` and as `python -m railyard`. Every command reads and writes the same
store the runs live in (`--store URL`, or the `RAILYARD_STORE` environment variable;
`sqlite:railyard.db` in the current directory by default) through railyard's public API.
"""

from __future__ import annotations

import sys

__all__ = ("main",)


def main() -> None:
    """Run the `railyard` command with the process's arguments, and exit with its status.

    Exit statuses: 0 done, 1 the command or the run failed, 2 a usage error, 3 the run is
    suspended (waiting for a signal), 130 interrupted (Ctrl-C; the run stays resumable).
    """
    try:
        from railyard.cli._app import app
    except ImportError as err:  # typer or rich is missing: the extra is not installed
        if err.name not in ("typer", "rich"):
            raise
        print(
            f"railyard: the command needs {err.name}, which is not installed: pip install 'railyard-graph[cli]'",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    app(prog_name="railyard")
