"""The kinds of node a builder graph has, by where they may stand on an edge, and checks for them."""

from __future__ import annotations

from typing import Any, TypeAlias, TypeGuard

from typing_extensions import TypeVar

from railyard.builder.decision import Decision
from railyard.builder.join import Join
from railyard.builder.node import EndNode, Fork, StartNode
from railyard.builder.step import Step

__all__ = (
    "AnyDestinationNode",
    "AnyNode",
    "AnySourceNode",
    "Decision",
    "DepsT",
    "DestinationNode",
    "EndNode",
    "Fork",
    "InputT",
    "Join",
    "MiddleNode",
    "OutputT",
    "SourceNode",
    "StartNode",
    "StateT",
    "Step",
    "is_destination",
    "is_source",
)

StateT = TypeVar("StateT", default=Any)
"""The run's state type."""
DepsT = TypeVar("DepsT", default=Any)
"""The run's dependencies type."""
InputT = TypeVar("InputT", default=Any)
"""The type of the value a node takes."""
OutputT = TypeVar("OutputT", default=Any)
"""The type of the value a node gives."""

MiddleNode: TypeAlias = (
    "Step[StateT, DepsT, InputT, OutputT] | Join[StateT, DepsT, InputT, OutputT] | Fork[InputT, OutputT]"
)
"""A node that takes a value and gives one: a step, a join or a fork."""
SourceNode: TypeAlias = (
    "Step[StateT, DepsT, Any, OutputT] | Join[StateT, DepsT, Any, OutputT] | Fork[Any, OutputT] | StartNode[OutputT]"
)
"""A node an edge may start from: a middle node, or the start."""
DestinationNode: TypeAlias = (
    "Step[StateT, DepsT, InputT, Any] | Join[StateT, DepsT, InputT, Any] | Fork[InputT, Any] "
    "| Decision[StateT, DepsT, InputT] | EndNode[InputT]"
)
"""A node an edge may lead to: a middle node, a decision, or the end."""
AnySourceNode: TypeAlias = "SourceNode[Any, Any, Any]"
"""A source node of any types."""
AnyDestinationNode: TypeAlias = "DestinationNode[Any, Any, Any]"
"""A destination node of any types."""
AnyNode: TypeAlias = "AnySourceNode | AnyDestinationNode"
"""Any node of a builder graph."""


def is_source(node: object) -> TypeGuard[AnySourceNode]:
    """Whether an edge may start from `node` (the start, a step or a join)."""
    return isinstance(node, StartNode | Step | Join)


def is_destination(node: object) -> TypeGuard[AnyDestinationNode]:
    """Whether an edge may lead to `node` (the end, a step, a join or a decision)."""
    return isinstance(node, EndNode | Step | Join | Decision)
