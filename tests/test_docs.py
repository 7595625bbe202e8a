"""The documentation site: its code runs, it builds with warnings as errors, and its API reference is complete.

- Every ```python block of a page runs, the page's blocks in order in one namespace, and
  prints what its `#>` lines say (as the README's blocks do, `tests/test_readme.py`).
- Every ```console block runs its `$ python examples/...` commands in an empty directory
  and prints what the lines after each command say (the examples page).
- `mkdocs build --strict` succeeds, and every name in the `__all__` of each public
  package has an entry in the API reference (mkdocstrings' inventory, `objects.inv`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
import types
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

PUBLIC_PACKAGES = (
    "railyard",
    "railyard.builder",
    "railyard.agent",
    "railyard.store",
    "railyard.suspension",
    "railyard.children",
    "railyard.versioning",
    "railyard.retries",
    "railyard.branches",
    "railyard.durable",
    "railyard.worker",
    "railyard.ray",
    "railyard.inspector",
    "railyard.persistence",
    "railyard.exceptions",
    "railyard.tracing",
    "railyard.mermaid",
    "railyard.testing",
    "railyard.testing.crash",
    "railyard.v0",
)
"""The packages whose `__all__` the API reference must cover."""

NOT_RUN = {"bash", "text", "mermaid"}
"""Fence languages that are not code to run: shell set-up, plain output, diagrams."""

FOREIGN = {"migrate-langgraph.md": {"py"}}
"""Pages that may show code of another library (not installed here) in ```py blocks."""

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", flags=re.S | re.M)
TIMESTAMP = re.compile(r"datetime\.datetime\([0-9, ]+tzinfo=datetime\.timezone\.utc\)")


SNIPPET = re.compile(r'^--8<-- "(.+)"$', flags=re.M)
"""A file included in a page (pymdownx.snippets), relative to the repository root."""


def _blocks(page: Path, language: str) -> list[str]:
    text = SNIPPET.sub(lambda match: (ROOT / match[1]).read_text(), page.read_text())
    return [body for lang, body in FENCE.findall(text) if lang == language]


def _page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


@pytest.fixture
def page_module(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    # The page's folder is importable, here and in processes a block starts (the crash test's workers).
    folder = str(request.node.callspec.params["page"].parent)
    monkeypatch.syspath_prepend(folder)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")])))
    # A real module, so that dataclasses and pydantic models defined by a block resolve their annotations.
    module = types.ModuleType("docs_example")
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        del sys.modules[module.__name__]


def test_the_site_has_pages_with_examples() -> None:
    with_code = [page for page in PAGES if _blocks(page, "python")]
    assert len(with_code) >= 10, [_page_id(page) for page in with_code]


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p, "python")], ids=_page_id)
def test_python_blocks_print_what_they_say(page: Path, page_module: types.ModuleType) -> None:
    for index, block in enumerate(_blocks(page, "python")):
        expected = [line.split("#>", 1)[1][1:] for line in block.splitlines() if line.lstrip().startswith("#>")]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"{_page_id(page)} block {index}", "exec"), page_module.__dict__)
        assert out.getvalue().splitlines() == expected, f"{_page_id(page)} block {index}"


POSTGRES_PLACEHOLDER = "postgresql://user@host/database"
"""A console command naming this URL is run against a new database on the test server."""


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p, "console")], ids=_page_id)
def test_console_sessions_print_what_they_say(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for index, block in enumerate(_blocks(page, "console")):
        workdir = tmp_path / f"block{index}"
        workdir.mkdir()
        sessions: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                sessions.append((line[2:], []))
            else:
                assert sessions, f"{_page_id(page)} console block {index} starts with output, not a `$` command"
                sessions[-1][1].append(line)
        for command, expected in sessions:
            program, script, *args = shlex.split(command)
            assert program == "python" and script.startswith("examples/"), command
            if POSTGRES_PLACEHOLDER in args:  # only then is a server started
                database = request.getfixturevalue("new_postgres_database")()
                args = [database if arg == POSTGRES_PLACEHOLDER else arg for arg in args]
            proc = subprocess.run(
                [sys.executable, str(ROOT / script), *args],
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            printed = TIMESTAMP.sub("<now>", proc.stdout.rstrip("\n")).splitlines()
            wanted = [TIMESTAMP.sub("<now>", line) for line in expected]
            assert printed == wanted, f"{_page_id(page)}: `{command}` (exit {proc.returncode}):\n{proc.stderr}"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_code_block_is_checked(page: Path) -> None:
    # A block in a language these tests do not run would be an example nobody checks.
    allowed = {"python", "console"} | NOT_RUN | FOREIGN.get(page.name, set())
    languages = {lang for lang, _ in FENCE.findall(page.read_text())}
    assert languages <= allowed, f"{_page_id(page)}: unchecked code blocks in {sorted(languages - allowed)}"


def test_every_example_is_on_the_examples_page() -> None:
    shown = {
        shlex.split(line[2:])[1]
        for block in _blocks(DOCS / "examples.md", "console")
        for line in block.splitlines()
        if line.startswith("$ ")
    }
    assert shown == {f"examples/{path.name}" for path in (ROOT / "examples").glob("*.py")}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return site_dir


def test_the_site_builds_with_warnings_as_errors(site: Path) -> None:
    for page in PAGES:
        stem = page.relative_to(DOCS).with_suffix("")
        html = site / (stem.parent if stem.name == "index" else stem) / "index.html"
        assert html.is_file(), f"{_page_id(page)} was not built"


def _inventory(site: Path) -> set[str]:
    # objects.inv (Sphinx's format): four header lines, then zlib-compressed `name domain:role priority uri name`.
    _, _, _, _, body = (site / "objects.inv").read_bytes().split(b"\n", 4)
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines()}


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_the_api_reference_covers_every_public_name(site: Path, package: str) -> None:
    documented = _inventory(site)
    public: tuple[str, ...] = tuple(importlib.import_module(package).__all__)
    assert package in documented, f"`{package}` has no page in the API reference: add `::: {package}` under docs/api/"
    missing = [name for name in public if f"{package}.{name}" not in documented]
    assert missing == [], f"{package}.__all__ names missing from the API reference (give them a docstring): {missing}"


def test_every_public_package_has_an_api_page() -> None:
    directives = {
        line[4:].strip()
        for page in (DOCS / "api").glob("*.md")
        for line in page.read_text().splitlines()
        if line.startswith("::: ")
    }
    assert directives == set(PUBLIC_PACKAGES)
