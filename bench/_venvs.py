"""Side virtual environments for the peers a benchmark compares against, made on first use."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
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


def ensure_venv(
    name: str, requirements: Sequence[str], distribution: str, accepts: Callable[[str], bool] = lambda _: True
) -> Path:
    """The python of `.bench-venvs/<name>`, made with `requirements` if missing or unfit.

    The environment is fit when the installed version of `distribution` `accepts`.
    """
    venv = VENVS / name
    python = venv_python(venv)
    version = installed_version(python, distribution) if python.exists() else None
    if version is not None and accepts(version):
        return python
    print(f"setting up {venv.relative_to(REPO)} ({' '.join(requirements)}) ...", file=sys.stderr, flush=True)
    # The same interpreter as the project's environment, so every side runs the same Python.
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for step in ([sys.executable, "-m", "venv", "--clear", str(venv)], [*pip, *requirements]):
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"bench: `{' '.join(step)}` failed (exit {done.returncode})")
    version = installed_version(python, distribution)
    if version is None or not accepts(version):
        raise SystemExit(f"bench: {' '.join(requirements)} is not importable in {venv}")
    return python


def pinned(version: str) -> Callable[[str], bool]:
    """Accepts exactly `version`."""
    return lambda installed: installed == version
