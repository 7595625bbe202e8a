"""Loading what a command names: a graph as `MODULE:GRAPH`, and JSON given inline or as `@file`."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from railyard.cli._common import EXIT_FAILED, EXIT_USAGE, CliError, importable_here

__all__ = ("GraphKind", "LoadedGraph", "load_graph", "load_json")


class GraphKind(StrEnum):
    """Which of railyard's front ends a loaded graph belongs to."""

    NODE = "node"
    BUILDER = "builder"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class LoadedGraph:
    """A graph named on the command line."""

    spec: str
    """How it was named: `MODULE:GRAPH`."""
    kind: GraphKind
    """Its front end."""
    graph: Any  # a node Graph, a builder Graph or an Agent: `kind` says which
    """The graph (or agent) itself."""

    @property
    def name(self) -> str | None:
        """The name its runs are recorded under."""
        name: str | None = self.graph.name
        return name


def _kind_of(value: object) -> GraphKind | None:
    from railyard.graph import Graph as NodeGraph

    if isinstance(value, NodeGraph):
        return GraphKind.NODE
    builder = sys.modules.get("railyard.builder.graph")
    if builder is not None and isinstance(value, builder.Graph):
        return GraphKind.BUILDER
    agent = sys.modules.get("railyard.agent.agent")
    if agent is not None and isinstance(value, agent.Agent):
        return GraphKind.AGENT
    return None


def load_graph(spec: str) -> LoadedGraph:
    """Import the graph `spec` names (`package.module:attribute`, the attribute may be dotted).

    The current directory is importable, as it is for `python -m`.

    Raises:
        CliError: the spec is malformed, the module or attribute is missing, or it is not a graph.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise CliError(f"{spec!r} is not MODULE:GRAPH (for example `myapp.flows:order_graph`)", EXIT_USAGE)
    importable_here()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise CliError(
                f"no module named {err.name!r} (for {spec!r}): run from the directory that holds it, or set PYTHONPATH",
                EXIT_USAGE,
            ) from None
        raise CliError(f"importing {module_name!r} failed: {type(err).__name__}: {err}", EXIT_FAILED) from err
    except Exception as err:
        raise CliError(f"importing {module_name!r} failed: {type(err).__name__}: {err}", EXIT_FAILED) from err
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(
                f"module {module_name!r} has no attribute {attribute!r} (for {spec!r})", EXIT_USAGE
            ) from None
    kind = _kind_of(value)
    if kind is None:
        raise CliError(
            f"{spec} is not a graph but a `{type(value).__name__}`: "
            "name a railyard Graph (node or builder API) or an Agent",
            EXIT_USAGE,
        )
    return LoadedGraph(spec, kind, value)


def load_json(text: str, option: str) -> Any:
    """The JSON value `text` holds, or the file `@path` holds.

    Raises:
        CliError: the file cannot be read, or the JSON is malformed (the message says where).
    """
    where = option
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise CliError(f"{option}: cannot read {path}: {err.strerror or err}", EXIT_USAGE) from None
        where = f"{option} {path}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CliError(f"{where}: bad JSON at line {err.lineno}, column {err.colno}: {err.msg}", EXIT_USAGE) from None
