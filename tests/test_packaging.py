"""What a user installs: a wheel of this checkout, named and licensed as pyproject says, that works on its own.

The acceptance test builds a wheel with pip (no new build tool), installs it into a new virtual
environment that sees nothing of this one (its dependencies come from the package index, or
pip's cache), and imports railyard there, from outside the checkout.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DISTRIBUTION = "railyard-graph"
"""Not `railyard`: that name on the package index is an unrelated project."""


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built by pip (the build backend comes from the index or pip's cache)."""
    out = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "-w",
        out,
        ROOT,
        cwd=out,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_distribution_has_a_name_of_its_own() -> None:
    assert PYPROJECT["name"] == DISTRIBUTION
    from railyard._version import DISTRIBUTION as read_by_version

    assert read_by_version == DISTRIBUTION


def test_license_and_changelog() -> None:
    assert PYPROJECT["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog\n")
    assert "## Unreleased" in changelog
    assert DISTRIBUTION in changelog


def test_the_wheel_names_the_distribution_and_its_license(wheel: Path) -> None:
    assert wheel.name == f"railyard_graph-{PYPROJECT['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_path,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_path).decode())
        assert metadata["Name"] == DISTRIBUTION
        assert metadata["Version"] == PYPROJECT["version"]
        assert "MIT" in (metadata["License-Expression"] or metadata["License"] or "")
        (license_path,) = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert archive.read(license_path).decode().startswith("MIT License")
    # The import name stays `railyard`, typed, and nothing from the checkout's tests or examples ships.
    assert "railyard/__init__.py" in names
    assert "railyard/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))]


def test_the_wheel_installs_into_a_clean_environment(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    # This environment's pip installs into the new one (`--python`), which saves bootstrapping a pip there.
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--disable-pip-version-check",
        wheel,
        cwd=tmp_path,
    )

    probe = "import railyard; print(railyard.__version__); print(railyard.__file__)"
    version, location = _run(python, "-c", probe, cwd=tmp_path).stdout.splitlines()
    assert version == PYPROJECT["version"]
    assert Path(location).is_relative_to(venv), location  # the installed copy, not this checkout
    # The runtime dependencies came along: a graph runs, durably, on the embedded SQLite store.
    script = """
import asyncio, tempfile
from dataclasses import dataclass
from pathlib import Path
from railyard import BaseNode, End, Graph, GraphRunContext, SqliteStore

@dataclass
class Hello(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        return End("hello from the wheel")

async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "runs.db")
        print((await Graph(nodes=[Hello], name="hello").run(Hello(), store=store)).output)
        await store.aclose()

asyncio.run(main())
"""
    assert _run(python, "-c", script, cwd=tmp_path).stdout == "hello from the wheel\n"


def _load_example(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the graph resolves its nodes' annotations through the module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_readme_first_screen() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", readme, flags=re.S)
    # First thing: exactly two set-up commands, the main job and every test.
    language, first = blocks[0]
    assert language == "bash"
    assert [line.split("#")[0].strip() for line in first.splitlines()] == ["./dev demo", "./dev test"]
    # Then a picture: the demo's graph, as the demo draws it, in a block GitHub renders.
    assert blocks[1][0] == "mermaid"
    document_review = _load_example("document_review")
    assert blocks[1][1].rstrip("\n") == document_review.review.render(title="document_review").rstrip("\n")
    # And where to read on, all before the first section.
    top = readme.split("\n## ", 1)[0]
    for link in ("docs/index.md", "examples/README.md", "CHANGELOG.md", "LICENSE"):
        assert f"]({link})" in top, link
    assert f"pip install {DISTRIBUTION}" in top
    assert "pip install railyard\n" not in readme and "'railyard[" not in readme


def test_the_examples_index_lists_every_example() -> None:
    index = (ROOT / "examples" / "README.md").read_text()
    listed = set(re.findall(r"^\| \[(\w+\.py)\]\(\1\) \|", index, flags=re.M))
    assert listed == {path.name for path in (ROOT / "examples").glob("*.py")}


def test_the_demo_installs_the_ui_extra_not_the_test_tools() -> None:
    # `./dev demo` runs in its own environment, with the `ui` extra (the command and its inspector), not `dev`.
    demo = (ROOT / "dev").read_text().split("\n  demo)\n", 1)[1].split(";;", 1)[0]
    assert 'venv .venv-demo "[ui]"' in demo
    assert "examples/demo_tour.sh" in demo
    assert ".venv-demo/" in (ROOT / ".gitignore").read_text().splitlines()


def test_no_message_names_the_old_distribution() -> None:
    # `pip install 'railyard[...]'` would install the unrelated project of that name.
    stale = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "src").rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"pip install '?railyard(\[|'|`|\s|$)", line) or "`railyard[" in line
    ]
    assert not stale
