"""Split a function's docstring into its description and its parameters' descriptions.

Three common styles are read: Google (`Args:`), Sphinx (`:param name:`) and Numpy
(`Parameters` underlined with dashes), the way pydantic-ai reads them (through griffe):

- the style, with `'auto'`, is guessed from the first kind of section found (Sphinx
  fields, then Google sections, then Numpy sections), Google when there is none;
- the description is the text before the first section (Google, Numpy) or the text
  outside the fields (Sphinx), so `Returns`, `Raises`, notes and examples are left out;
- a parameter's description keeps its lines: the lines after its first are dedented
  and joined with newlines, blank lines within it kept.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from typing import Any, Literal

__all__ = ("DocstringFormat", "parse_docstring")

DocstringFormat = Literal["google", "numpy", "sphinx", "auto"]
"""The docstring style a tool's parameter descriptions are read in; `'auto'` guesses it."""

_Style = Literal["google", "numpy", "sphinx"]

_SPHINX_FIELDS = [
    "param",
    "parameter",
    "arg",
    "argument",
    "key",
    "keyword",
    "type",
    "var",
    "ivar",
    "cvar",
    "vartype",
    "returns",
    "return",
    "rtype",
    "raises",
    "raise",
    "except",
    "exception",
]
_GOOGLE_SECTIONS = [
    "args",
    "arguments",
    "params",
    "parameters",
    "keyword args",
    "keyword arguments",
    "other args",
    "other arguments",
    "other params",
    "other parameters",
    "raises",
    "exceptions",
    "returns",
    "yields",
    "receives",
    "examples",
    "attributes",
    "functions",
    "methods",
    "classes",
    "modules",
    "warns",
    "warnings",
]
_NUMPY_SECTIONS = [
    "deprecated",
    "parameters",
    "other parameters",
    "returns",
    "yields",
    "receives",
    "raises",
    "warns",
    "attributes",
    "functions",
    "methods",
    "classes",
    "modules",
]
_STYLE_SIGNS: list[tuple[_Style, re.Pattern[str]]] = [
    ("sphinx", re.compile(rf"\n[ \t]*:(?:{'|'.join(_SPHINX_FIELDS)})([ \t]+\w+)*:([ \t]+.+)?\n", re.I | re.M)),
    ("google", re.compile(rf"\n[ \t]*(?:{'|'.join(_GOOGLE_SECTIONS)}):([ \t]+.+)?\n[ \t]+.+", re.I | re.M)),
    ("numpy", re.compile(rf"\n[ \t]*(?:{'|'.join(_NUMPY_SECTIONS)})\n[ \t]*---+\n", re.I | re.M)),
]
"""What gives each style away, tried in this order (the signs pydantic-ai looks for)."""

_GOOGLE_PARAMS = ("args", "arguments", "params", "parameters")
_GOOGLE_TITLE = re.compile(r"^[A-Za-z][A-Za-z ]*:\s*$")
_GOOGLE_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM_FIELDS = ("param", "parameter", "arg", "argument", "key", "keyword")
_SPHINX_PREFIXES = tuple(f":{name}" for name in _SPHINX_FIELDS)


def parse_docstring(func: Callable[..., Any], style: DocstringFormat = "auto") -> tuple[str, dict[str, str]]:
    """Return `(description, {parameter: description})` read from `func`'s docstring."""
    raw = func.__doc__
    if raw is None:
        return "", {}
    chosen: _Style = _guess_style(raw) if style == "auto" else style
    lines = inspect.cleandoc(raw).splitlines()
    match chosen:
        case "google":
            return _google(lines)
        case "numpy":
            return _numpy(lines)
        case "sphinx":
            return _sphinx(lines)


def _guess_style(doc: str) -> _Style:
    return next((style for style, sign in _STYLE_SIGNS if sign.search(doc)), "google")


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip()


def _dedented(first: str, rest: list[str]) -> str:
    """A description: its first line, then the lines after it dedented, without blank lines at the end."""
    text = "\n".join([first.strip(), textwrap.dedent("\n".join(rest))])
    return text.strip()


# -- Google ----------------------------------------------------------------------------------


def _google_sections(lines: list[str]) -> list[int]:
    """Where sections (`Args:`, `Returns:`, `Note:`, ...) begin: a title after a blank line, then indented text."""
    return [
        i
        for i in range(len(lines) - 1)
        if (i == 0 or not lines[i - 1].strip())
        and _GOOGLE_TITLE.match(lines[i])
        and lines[i + 1][:1].isspace()
        and lines[i + 1].strip()
    ]


def _google(lines: list[str]) -> tuple[str, dict[str, str]]:
    sections = _google_sections(lines)
    if not sections:
        return _join(lines), {}
    description = _join(lines[: sections[0]])
    start = next((i for i in sections if lines[i].strip()[:-1].strip().lower() in _GOOGLE_PARAMS), None)
    if start is None:
        return description, {}
    entries: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    indent: int | None = None
    for line in lines[start + 1 :]:
        depth = len(line) - len(line.lstrip())
        if line.strip() and depth == 0:
            break  # the section has ended
        if indent is None and line.strip():
            indent = depth
        match = _GOOGLE_ENTRY.match(line.strip()) if line.strip() and depth == indent else None
        if match:
            current = match.group(1).lstrip("*")
            entries.setdefault(current, (match.group(2), []))
        elif current is not None:
            entries[current][1].append(line)
    return description, {name: _dedented(first, rest) for name, (first, rest) in entries.items()}


# -- Numpy -----------------------------------------------------------------------------------


def _is_dashes(line: str) -> bool:
    return len(line.strip()) >= 3 and set(line.strip()) == {"-"}


def _numpy_sections(lines: list[str]) -> list[int]:
    """Where sections begin: a title after a blank line, underlined with dashes."""
    return [
        i
        for i in range(len(lines) - 1)
        if (i == 0 or not lines[i - 1].strip()) and lines[i].strip() and _is_dashes(lines[i + 1])
    ]


def _numpy(lines: list[str]) -> tuple[str, dict[str, str]]:
    sections = _numpy_sections(lines)
    if not sections:
        return _join(lines), {}
    description = _join(lines[: sections[0]])
    start = next((i for i in sections if lines[i].strip().lower() == "parameters"), None)
    if start is None:
        return description, {}
    end = next((i for i in sections if i > start), len(lines))
    params: dict[str, str] = {}
    names: list[str] = []
    body: list[str] = []

    def close() -> None:
        text = textwrap.dedent("\n".join(body)).strip()
        for name in names:
            params.setdefault(name, text)

    for line in lines[start + 2 : end]:
        if line.strip() and not line[:1].isspace():  # `name : type`, or `a, b : type`
            close()
            names = [name.strip().lstrip("*") for name in line.split(":")[0].split(",") if name.strip()]
            body = []
        else:
            body.append(line)
    close()
    return description, params


# -- Sphinx ----------------------------------------------------------------------------------


def _sphinx(lines: list[str]) -> tuple[str, dict[str, str]]:
    kept: list[str] = []
    params: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith(_SPHINX_PREFIXES):
            kept.append(line)
            index += 1
            continue
        # a field runs on to the next line that starts with a colon
        block = [line]
        index += 1
        while index < len(lines) and not lines[index].startswith(":"):
            block.append(lines[index])
            index += 1
        field, sep, value = inspect.cleandoc("\n".join(block)).removeprefix(":").partition(":")
        words = field.split(" ")
        if sep and words[0] in _SPHINX_PARAM_FIELDS and len(words) >= 2:
            params.setdefault(words[-1], value.strip())
    return _join(kept), params
