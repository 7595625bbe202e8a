"""Side environments with the upstream versions railyard is a drop-in for, built once under `.side-envs/`.

Each environment is a virtual environment with exact versions pinned, made with the
interpreter running the tests and pip (the package registries are all it needs). It is
rebuilt when its pins change; a stamp file holds the pins it was built with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ("SIDE_ENVS", "ensure_side_envs", "public_names_in")

ROOT = Path(__file__).resolve().parents[2] / ".side-envs"

SIDE_ENVS: dict[str, tuple[str, ...]] = {
    "pydantic-graph-0.0.39": ("pydantic-graph==0.0.39",),
    "pydantic-graph-1.96.1": ("pydantic-graph==1.96.1",),
    # pydantic-ai 0.0.40 imports `opentelemetry._events`, which later opentelemetry-api releases dropped
    "pydantic-ai-0.0.40": ("pydantic-ai-slim[openai]==0.0.40", "opentelemetry-api<1.31", "opentelemetry-sdk<1.31"),
}
"""Each side environment's name and its pinned requirements."""


def _python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _build(name: str) -> Path:
    env = ROOT / name
    stamp = env / "railyard-side-env.json"
    pins = list(SIDE_ENVS[name])
    if stamp.exists() and json.loads(stamp.read_text()) == pins:
        return _python(env)
    venv.EnvBuilder(clear=True, with_pip=True).create(env)
    subprocess.run(
        [str(_python(env)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        check=True,
        capture_output=True,
        text=True,
    )
    stamp.write_text(json.dumps(pins))
    return _python(env)


def ensure_side_envs() -> dict[str, Path]:
    """Build (or reuse) every side environment; map each name to its interpreter.

    Raises:
        subprocess.CalledProcessError: pip could not install an environment's pins.
    """
    ROOT.mkdir(exist_ok=True)
    with ThreadPoolExecutor(len(SIDE_ENVS)) as pool:
        pythons = dict(zip(SIDE_ENVS, pool.map(_build, SIDE_ENVS), strict=True))
    return pythons


def public_names_in(python: Path, package: str) -> dict[str, list[str] | dict[str, str]]:
    """The public names of every public module of `package`, as the side interpreter `python` sees them."""
    script = Path(__file__).with_name("public_names.py")
    done = subprocess.run([str(python), str(script), package], check=True, capture_output=True, text=True)
    names: dict[str, list[str] | dict[str, str]] = json.loads(done.stdout)[package]
    return names


if __name__ == "__main__":  # build them ahead of a test run: python tests/support/side_envs.py
    for env_name, python_path in ensure_side_envs().items():
        print(env_name, python_path, file=sys.stderr)
