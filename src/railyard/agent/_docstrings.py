"""Split a function's docstring into its description and its parameters' descriptions.

Three common styles are read: Google (`Args:`), Sphinx (`:param name:`) and Numpy
(`Parameters` underlined with dashes). The description is the docstring with the
parameter section taken out; everything else in it is kept as written.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, Literal

__all__ = ("DocstringFormat", "parse_docstring")

DocstringFormat = Literal["google", "numpy", "sphinx", "auto"]
"""The docstring style a tool's parameter descriptions are read in; `'auto'` tries each."""

_GOOGLE_HEADERS = ("Args:", "Arguments:", "Parameters:", "Params:")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_SPHINX_FIELD = re.compile(r"^\s*:\w+")
_GOOGLE_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^(\w+)\s*(?::.*)?$")


def parse_docstring(func: Callable[..., Any], style: DocstringFormat = "auto") -> tuple[str, dict[str, str]]:
    """Return `(description, {parameter: description})` read from `func`'s docstring."""
    doc = inspect.getdoc(func)
    if not doc:
        return "", {}
    lines = doc.splitlines()
    parsers = {"google": (_google,), "numpy": (_numpy,), "sphinx": (_sphinx,)}.get(style, (_google, _numpy, _sphinx))
    for parse in parsers:
        found = parse(lines)
        if found is not None:
            return found
    return doc.strip(), {}


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip()


def _google(lines: list[str]) -> tuple[str, dict[str, str]] | None:
    headers = (i for i, line in enumerate(lines) if line.strip() in _GOOGLE_HEADERS and not line[:1].isspace())
    start = next(headers, None)
    if start is None:
        return None
    params: dict[str, str] = {}
    current: str | None = None
    end = len(lines)
    indent: int | None = None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            end = i
            break
        if indent is None:
            indent = depth
        match = _GOOGLE_ENTRY.match(line.strip()) if depth == indent else None
        if match:
            current = match.group(1).lstrip("*")
            params[current] = match.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return _join(lines[:start] + lines[end:]), params


def _numpy(lines: list[str]) -> tuple[str, dict[str, str]] | None:
    start = next(
        (i for i in range(len(lines) - 1) if lines[i].strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}),
        None,
    )
    if start is None:
        return None
    params: dict[str, str] = {}
    current: str | None = None
    end = len(lines)
    for i in range(start + 2, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            end = i
            break
        if not line[:1].isspace():
            match = _NUMPY_ENTRY.match(line.strip())
            if match is None:
                end = i
                break
            current = match.group(1)
            params[current] = ""
        elif current is not None:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return _join(lines[:start] + lines[end:]), params


def _sphinx(lines: list[str]) -> tuple[str, dict[str, str]] | None:
    if not any(_SPHINX_PARAM.match(line) for line in lines):
        return None
    params: dict[str, str] = {}
    kept: list[str] = []
    current: str | None = None
    for line in lines:
        match = _SPHINX_PARAM.match(line)
        if match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif _SPHINX_FIELD.match(line):
            current = None
        elif current is not None and line[:1].isspace() and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
        else:
            current = None
            kept.append(line)
    return _join(kept), params
