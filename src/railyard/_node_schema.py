"""JSON for nodes: a node is stored as its fields plus `node_id`, and loaded back by that id."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import TYPE_CHECKING, Any

from railyard.exceptions import GraphSetupError
from railyard.nodes import BaseNode

# pydantic loads when a node is first (de)serialized, not at `import railyard`.
if TYPE_CHECKING:
    import pydantic
    from pydantic_core import core_schema

__all__ = ("CustomNodeSchema", "node_adapter", "node_types", "nodes_schema")

AnyNode = BaseNode[Any, Any, Any]

_node_types: ContextVar[dict[str, type[AnyNode]] | None] = ContextVar("railyard_node_types", default=None)


@contextmanager
def node_types(nodes: Sequence[type[AnyNode]]) -> Iterator[None]:
    """Within this block, node JSON is validated against `nodes` (looked up by node id)."""
    token = _node_types.set({node.get_node_id(): node for node in nodes})
    try:
        yield
    finally:
        _node_types.reset(token)


@cache
def node_adapter(node_class: type[AnyNode]) -> pydantic.TypeAdapter[Any]:
    """The TypeAdapter of one node class (its dataclass or model fields)."""
    import pydantic

    return pydantic.TypeAdapter(node_class)


def _serialize(node: AnyNode) -> dict[str, Any]:
    fields: dict[str, Any] = node_adapter(type(node)).dump_python(node, mode="json")
    fields["node_id"] = node.get_node_id()
    return fields


def _validator(known: dict[str, type[AnyNode]] | None) -> Any:
    def validate(value: Any) -> AnyNode:
        if isinstance(value, BaseNode):
            return value  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(value, dict) or "node_id" not in value:
            raise ValueError("a stored node must be an object with a `node_id` key")
        data: dict[str, Any] = dict(value)  # pyright: ignore[reportUnknownArgumentType]
        node_id = data.pop("node_id")
        classes = known if known is not None else _node_types.get()
        if classes is None:
            raise GraphSetupError(
                "Cannot load a stored node without knowing the graph's nodes: call "
                "`persistence.set_graph_types(graph)` first (Graph.run and Graph.iter do)."
            )
        node_class = classes.get(node_id)
        if node_class is None:
            raise ValueError(f"node id {node_id!r} is not a node of this graph (known: {sorted(classes)})")
        node: AnyNode = node_adapter(node_class).validate_python(data)
        return node

    return validate


def nodes_schema(known: dict[str, type[AnyNode]] | None = None) -> core_schema.CoreSchema:
    """The pydantic core schema of "any node of the graph", serialized with its `node_id`."""
    from pydantic_core import core_schema

    return core_schema.no_info_plain_validator_function(
        _validator(known),
        serialization=core_schema.plain_serializer_function_ser_schema(_serialize),
        json_schema_input_schema=core_schema.dict_schema(),
    )


class CustomNodeSchema:
    """`Annotated[BaseNode[...], CustomNodeSchema()]`: store a node as JSON tagged by its id."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: pydantic.GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """The schema of "a node of the graph"; only where the graph's node types are known.

        Raises:
            RuntimeError: no graph's node types are set here (as pydantic-graph raises).
        """
        if _node_types.get() is None:
            raise RuntimeError(
                "Unable to build a Pydantic schema for `BaseNode` without setting the graph's node types. "
                "Read and write snapshots through a persistence that knows the graph: "
                "`persistence.set_graph_types(graph)` (Graph.run and Graph.iter call it), then "
                "`dump_json` / `load_json`."
            )
        return nodes_schema()
