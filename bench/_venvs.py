"""Side virtual environments for the peers a benchmark compares against, made on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".bench-venvs"


def venv_python(venv: Path) -> Path:
    """The python executable inside `venv`."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed_version(python: Path, distribution: str) -> str | None:
    """The version of `distribution` importable by `python`, or None."""
    probe = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_venv(distribution: str, version: str, *extra: str) -> Path:
    """The python of `.bench-venvs/<distribution>-<version>`, holding that release; made if missing.

    `extra` are further requirements installed with it, such as pins an old release needs.
    """
    venv = VENVS / f"{distribution}-{version}"
    python = venv_python(venv)
    if python.exists() and installed_version(python, distribution) == version:
        return python
    print(f"setting up {venv.relative_to(REPO)} ({distribution}=={version}) ...", file=sys.stderr, flush=True)
    # The same interpreter as the project's environment, so both sides run the same Python.
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)], [*pip, f"{distribution}=={version}", *extra]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"bench: `{' '.join(step)}` failed (exit {done.returncode})")
    if installed_version(python, distribution) != version:
        raise SystemExit(f"bench: {distribution} {version} is not importable in {venv}")
    return python
