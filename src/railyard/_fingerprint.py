"""A graph's shape and fingerprint: what a run records of the graph it was created by.

The shape is JSON: the graph's version (`Graph(version=...)`, 1 unless given), the JSON
schema of its state, and each node by id with its kind, where it may go, and the JSON
schema of what a task of it carries (a node class's fields; a builder step's input):

    {"api": "node", "version": 2, "state": {...schema...},
     "nodes": {"Review": {"kind": "node", "edges": ["End", "Ship"], "schema": {...}}}}

A builder join also names the fork it waits for (`"fork"`). The schemas share one
`$defs` at the top of the shape (a type used by the state and a node is written once), and
leave out descriptions (docstrings say nothing of what is stored). A schema pydantic cannot
write (a field of an arbitrary class) is `null`: unknown, and never compared. The
fingerprint is a short digest of the shape: two graphs with the same fingerprint store
runs the same way, whatever their code does. Both are computed once per graph object.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pydantic

__all__ = ("builder_fingerprint", "builder_shape", "fingerprint", "node_fingerprint", "node_shape", "shape_digest")

# Shapes by graph object: a shape costs a few JSON schemas, and a graph starts many runs.
_SHAPES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_DIGESTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def fingerprint(edges: Mapping[str, Iterable[str]]) -> str:
    """The digest of a graph given as each node id's successors (order does not matter)."""
    text = "\n".join(f"{node}->{','.join(sorted(set(targets)))}" for node, targets in sorted(edges.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shape_digest(shape: Mapping[str, Any]) -> str:
    """The fingerprint of a shape: a digest of its JSON, written with sorted keys."""
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def node_shape(graph: Any) -> dict[str, Any]:
    """The shape of a node-API graph (`railyard.graph.Graph`)."""
    shape = _SHAPES.get(graph)
    if shape is None:
        from railyard._node_schema import node_adapter

        state_type, _ = graph.inferred_types
        adapters = {node_id: _adapter(partial(node_adapter, d.node)) for node_id, d in graph.node_defs.items()}
        schemas, defs = _schemas(state_type, adapters)
        nodes: dict[str, Any] = {}
        for node_id, node_def in graph.node_defs.items():
            nodes[node_id] = {"kind": "node", "edges": sorted(_node_edges(node_def)), "schema": schemas.get(node_id)}
        shape = _SHAPES[graph] = {
            "api": "node",
            "version": getattr(graph, "version", 1),
            "state": schemas.get(_STATE),
            "nodes": nodes,
            "$defs": defs,
        }
    return shape


def node_fingerprint(graph: Any) -> str:
    """The fingerprint of a node-API graph: the digest of its shape."""
    digest = _DIGESTS.get(graph)
    if digest is None:
        digest = _DIGESTS[graph] = shape_digest(node_shape(graph))
    return digest


def builder_shape(graph: Any) -> dict[str, Any]:
    """The shape of a builder graph (`railyard.builder.Graph`)."""
    shape = _SHAPES.get(graph)
    if shape is None:
        from railyard.builder._durable import _input_adapter  # pyright: ignore[reportPrivateUsage]

        nodes: dict[str, Any] = {}
        adapters: dict[str, pydantic.TypeAdapter[Any] | None] = {}
        for node_id, node in graph.nodes.items():
            entry: dict[str, Any] = {"kind": _builder_kind(node), "edges": sorted(_paths(graph, node_id))}
            if entry["kind"] in ("step", "node"):
                adapters[node_id] = _adapter(partial(_input_adapter, node))
            elif entry["kind"] == "join":
                parent = graph.parent_forks.get(node_id)
                entry["fork"] = None if parent is None else parent.fork_id
            nodes[node_id] = entry
        schemas, defs = _schemas(graph.state_type, adapters)
        for node_id in adapters:
            nodes[node_id]["schema"] = schemas.get(node_id)
        shape = _SHAPES[graph] = {
            "api": "builder",
            "version": getattr(graph, "version", 1),
            "state": schemas.get(_STATE),
            "nodes": nodes,
            "$defs": defs,
        }
    return shape


def builder_fingerprint(graph: Any) -> str:
    """The fingerprint of a builder graph: the digest of its shape."""
    digest = _DIGESTS.get(graph)
    if digest is None:
        digest = _DIGESTS[graph] = shape_digest(builder_shape(graph))
    return digest


def _node_edges(node_def: Any) -> list[str]:
    targets = list(node_def.next_node_edges)
    if node_def.end_edge is not None:
        targets.append("End")
    if node_def.returns_base_node:
        targets.append("*")
    return targets


def _paths(graph: Any, node_id: str) -> list[str]:
    """Each path leaving a builder node, as the ids (or marker kinds) along it."""
    return [
        ">".join(
            getattr(item, "destination_id", None) or getattr(item, "fork_id", None) or type(item).__name__
            for item in path.items
        )
        for path in graph.edges_by_source.get(node_id, ())
    ]


def _builder_kind(node: Any) -> str:
    from railyard.builder.decision import Decision
    from railyard.builder.join import Join
    from railyard.builder.node import EndNode, Fork, StartNode
    from railyard.builder.step import NodeStep, Step

    if isinstance(node, StartNode):
        return "start"
    if isinstance(node, EndNode):
        return "end"
    if isinstance(node, Fork):
        return "map" if node.is_map else "fork"
    if isinstance(node, Join):
        return "join"
    if isinstance(node, Decision):
        return "decision"
    if isinstance(node, NodeStep):
        return "node"
    if isinstance(node, Step):
        return "step"
    return type(node).__name__


_STATE = "\x00state"
"""The key of the state's schema among the nodes' (no node id can be it)."""


def _adapter(make: Callable[[], pydantic.TypeAdapter[Any] | None]) -> pydantic.TypeAdapter[Any] | None:
    try:
        return make()
    except Exception:  # pydantic cannot validate the type: its schema is unknown
        return None


def _schemas(
    state_type: Any, adapters: Mapping[str, pydantic.TypeAdapter[Any] | None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schemas of the state and each adapter's type, by key, and the `$defs` they share.

    A type pydantic cannot write a schema of is left out (unknown), the others kept.
    """
    import pydantic

    known: dict[str, pydantic.TypeAdapter[Any]] = {key: a for key, a in adapters.items() if a is not None}
    state = _adapter(partial(pydantic.TypeAdapter[Any], state_type))
    if state is not None:
        known[_STATE] = state
    for _ in range(2):  # once more without the types whose schema failed
        try:
            keyed, defs = pydantic.TypeAdapter.json_schemas([(key, "validation", a) for key, a in known.items()])
        except Exception:  # some type has no JSON schema: find which, alone
            known = {key: a for key, a in known.items() if _writes_schema(a)}
            continue
        schemas = {key: _without_descriptions(schema) for (key, _mode), schema in keyed.items()}
        shared: dict[str, Any] = defs.get("$defs", {})
        return schemas, {name: _without_descriptions(part) for name, part in shared.items()}
    return {}, {}


def _writes_schema(adapter: pydantic.TypeAdapter[Any]) -> bool:
    try:
        adapter.json_schema()
    except Exception:  # an arbitrary class, a callable: no JSON schema
        return False
    return True


def _without_descriptions(schema: Any) -> Any:
    """A JSON schema without its `description`s (a field named `description` stays)."""
    if isinstance(schema, list):
        return [_without_descriptions(value) for value in schema]
    if not isinstance(schema, dict):
        return schema
    kept: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in _NAMED and isinstance(value, dict):
            kept[key] = {name: _without_descriptions(part) for name, part in value.items()}
        elif key in _VALUES:
            kept[key] = value
        else:
            kept[key] = _without_descriptions(value)
    return kept


_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions"})
"""Keywords whose value maps names (of fields, of definitions) to schemas."""
_VALUES = frozenset({"default", "examples", "const", "enum"})
"""Keywords whose value is data, not a schema."""
