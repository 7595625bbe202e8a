"""Every Python block of the README runs, and prints what its `#>` lines say."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture
def readme_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("readme_example")
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        del sys.modules[module.__name__]


def test_readme_starts_with_two_commands() -> None:
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert first is not None
    commands = [line.split("#", 1)[0].strip() for line in first[1].splitlines()]
    assert commands == ["./dev demo", "./dev test"]


def test_readme_draws_the_demo_graph() -> None:
    # The diagram under the set-up commands is the demo's graph as it is today.
    from examples.document_review import review

    diagram = re.search(r"```mermaid\n(.*?)```", README.read_text(), flags=re.S)
    assert diagram is not None
    assert diagram[1] == review.render(title="document_review") + "\n"


def test_readme_has_examples() -> None:
    assert len(_blocks()) >= 4


def test_readme_blocks_print_what_they_say(readme_module: types.ModuleType) -> None:
    for index, block in enumerate(_blocks()):
        expected = [line.split("#>", 1)[1][1:] for line in block.splitlines() if line.lstrip().startswith("#>")]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"README.md block {index}", "exec"), readme_module.__dict__)
        assert out.getvalue().splitlines() == expected, f"README block {index}"
