"""Print, as JSON, the public names of every public module of the packages named on the command line.

Run with the interpreter of an environment that has those packages installed (stdlib only,
so it runs in any environment):

    python public_names.py pydantic_graph pydantic_ai

A module is public when no part of its dotted name starts with `_`. A name is public when
it does not start with `_` and the module binds it at top level for its users: its
`__all__`, its classes, functions and assignments, and what it imports from its own
package (a re-export such as `result.Usage`), except submodules bound as names. Names it imports from elsewhere (`Any`,
`dataclass`) and names bound only under `if TYPE_CHECKING:` are not counted: users do not
import those from it. A module that cannot be imported (an optional dependency missing) is
listed with the error instead of names.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import sys
import types
from pathlib import Path
from typing import Any


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _bound(body: list[ast.stmt], package: str, module: str) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.If):
            if _is_type_checking(node.test):
                names |= _bound(node.orelse, package, module)
            else:
                names |= _bound(node.body, package, module) | _bound(node.orelse, package, module)
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                names |= _bound(part, package, module)
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif type(node).__name__ == "TypeAlias":  # `type X = ...` (Python 3.12+)
            names.add(node.name.id)  # type: ignore[attr-defined]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level > 0 or source == package or source.startswith(package + "."):
                names |= {alias.asname or alias.name for alias in node.names if alias.name != "*"}
    return names


def public_names(package: str) -> dict[str, Any]:
    """Map each public module of `package` to its sorted public names (or its import error)."""
    root = importlib.import_module(package)
    modules = [package]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            modules.append(info.name)
    result: dict[str, Any] = {}
    for name in sorted(modules):
        try:
            module = importlib.import_module(name)
        except Exception as error:  # an optional dependency this environment lacks
            result[name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        names = _bound(ast.parse(source).body, package, name)
        names |= set(getattr(module, "__all__", ()))
        result[name] = sorted(
            n
            for n in names
            if not n.startswith("_") and hasattr(module, n) and not isinstance(getattr(module, n), types.ModuleType)
        )
    return result


if __name__ == "__main__":
    json.dump({package: public_names(package) for package in sys.argv[1:]}, sys.stdout, indent=1)
