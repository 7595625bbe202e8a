"""Formatting shared by the benchmark drivers: tables, figures, and what machine ran them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def us(value: float) -> str:
    """Microseconds, with two decimals below 100 and one above."""
    return f"{value:.2f}" if value < 100 else f"{value:.1f}"


def table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    """A plain-text table; the columns numbered in `right` are right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def interpreter(python: Path) -> str:
    """Which Python `python` is: implementation and version."""
    probe = "import platform, sys; print(platform.python_implementation(), sys.version.split()[0])"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def load_average() -> str:
    """The machine's load averages, or `n/a` where the platform has none."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"
