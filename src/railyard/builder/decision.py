"""Decisions: send a value down the first branch whose type or predicate matches it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Never, Self

from typing_extensions import TypeVar

from railyard.builder.id_types import NodeID
from railyard.builder.paths import Path, PathBuilder, TransformFunction, _destination  # pyright: ignore[reportPrivateUsage]
from railyard.builder.step import NodeStep, StepContext
from railyard.builder.util import TypeOrTypeExpression, matches_type
from railyard.exceptions import GraphBuildingError
from railyard.nodes import BaseNode

__all__ = (
    "BaseNode",
    "Decision",
    "DecisionBranch",
    "DecisionBranchBuilder",
    "DepsT",
    "GraphBuildingError",
    "HandledT",
    "NewOutputT",
    "NodeID",
    "NodeStep",
    "OutputT",
    "SourceT",
    "StateT",
    "StepContext",
    "TransformFunction",
    "TypeOrTypeExpression",
)

StateT = TypeVar("StateT", default=Any)
"""The run's state type."""
DepsT = TypeVar("DepsT", default=Any)
"""The run's dependencies type."""
HandledT = TypeVar("HandledT", default=Any)
"""The types of value a decision's branches handle so far."""
SourceT = TypeVar("SourceT", default=Any)
"""The type of value a branch takes."""
OutputT = TypeVar("OutputT", default=Any)
"""The type of the value at the end of a branch's path so far."""
NewOutputT = TypeVar("NewOutputT", default=Any)
"""The type a transform turns the value into."""
T = TypeVar("T")


@dataclass
class DecisionBranch(Generic[SourceT]):
    """One branch: values of type `source` (or for which `matches` is true) go along `path`."""

    source: Any
    """The type of value the branch takes (a class, or a `TypeExpression[...]`)."""
    matches: Callable[[Any], bool] | None
    """A predicate that decides instead of the type, when given."""
    path: Path
    """What happens to a value that takes the branch."""
    destinations: list[Any] = field(default_factory=list[Any])
    """The nodes the path leads to."""

    def accepts(self, value: Any) -> bool:
        """Whether this branch takes `value`: the predicate decides when given, else the type."""
        if self.matches is not None:
            return bool(self.matches(value))
        return matches_type(value, self.source)


@dataclass(kw_only=True)
class Decision(Generic[StateT, DepsT, HandledT]):
    """A choice node: tries its branches in order; the first that accepts the value takes it."""

    id: str
    """The decision's node id."""
    branches: list[DecisionBranch[Any]] = field(default_factory=list[DecisionBranch[Any]])
    """The branches, in the order they are tried."""
    note: str | None = None
    """A note shown beside the decision on diagrams."""

    def branch(self, branch: DecisionBranch[T]) -> Decision[StateT, DepsT, HandledT | T]:
        """Add a branch after the existing ones; returns the decision (this one, with the branch added)."""
        self.branches.append(branch)
        return self  # type: ignore[return-value]  # the same decision, now handling `T` too

    def choose(self, value: Any) -> DecisionBranch[Any]:
        """The branch that takes `value`.

        Raises:
            RuntimeError: no branch takes it.
        """
        for branch in self.branches:
            if branch.accepts(value):
                return branch
        raise RuntimeError(f"No branch matched inputs {value!r} for decision node {self!r}.")

    def _force_handled_contravariant(self, inputs: HandledT) -> Never:  # pragma: no cover
        raise RuntimeError("This method exists for type checkers only.")


class DecisionBranchBuilder(Generic[StateT, DepsT, OutputT, SourceT, HandledT]):
    """Builds a branch from `GraphBuilder.match(...)`: chain like an edge, end with `.to`."""

    def __init__(
        self,
        *,
        decision: Decision[StateT, DepsT, HandledT] | None,
        source: Any,
        matches: Callable[[Any], bool] | None,
        path_builder: PathBuilder[StateT, DepsT, OutputT],
    ) -> None:
        self.decision = decision
        """The decision the branch is for (`None` until it is added to one)."""
        self.source = source
        """The type of value the branch takes."""
        self.matches = matches
        """The predicate that decides instead of the type, when given."""
        self.path_builder = path_builder
        """The branch's path so far."""

    def _next(self, path_builder: PathBuilder[StateT, DepsT, Any]) -> DecisionBranchBuilder[Any, Any, Any, Any, Any]:
        return DecisionBranchBuilder(
            decision=self.decision, source=self.source, matches=self.matches, path_builder=path_builder
        )

    def to(self, destination: Any, /, *extra_destinations: Any, fork_id: str | None = None) -> DecisionBranch[SourceT]:
        """Where the branch's values go (several destinations broadcast)."""
        destinations = [_destination(d) for d in (destination, *extra_destinations)]
        path = self.path_builder.to(*destinations, fork_id=fork_id)
        return DecisionBranch(self.source, self.matches, path, destinations)

    def map(
        self, *, fork_id: str | None = None, downstream_join_id: str | None = None, max_concurrency: int | None = None
    ) -> DecisionBranchBuilder[StateT, DepsT, Any, SourceT, HandledT]:
        """Fork over the items of the value."""
        return self._next(
            self.path_builder.map(
                fork_id=fork_id, downstream_join_id=downstream_join_id, max_concurrency=max_concurrency
            )
        )

    def transform(self, func: TransformFunction, /) -> DecisionBranchBuilder[StateT, DepsT, Any, SourceT, HandledT]:
        """Turn the value into `func(ctx)`."""
        return self._next(self.path_builder.transform(func))

    def label(self, label: str) -> DecisionBranchBuilder[StateT, DepsT, OutputT, SourceT, HandledT]:
        """Label the branch on diagrams."""
        return self._next(self.path_builder.label(label))

    def broadcast(
        self, get_forks: Callable[[Self], Sequence[DecisionBranch[Any]]], /, *, fork_id: str | None = None
    ) -> DecisionBranch[SourceT]:
        """Send the value down each of the branches `get_forks` builds from this builder.

        Raises:
            GraphBuildingError: `get_forks` built no branch.
        """
        forks = get_forks(self)
        if not forks:
            raise GraphBuildingError(f"The call to {get_forks} returned no branches, but must return at least one.")
        prefix = list(self.path_builder.working_items)
        paths = [
            Path(list(fork.path.items[len(prefix) :]))
            if all(a is b for a, b in zip(fork.path.items, prefix, strict=False))
            and len(fork.path.items) >= len(prefix)
            else fork.path
            for fork in forks
        ]
        destinations = [d for fork in forks for d in fork.destinations]
        return DecisionBranch(
            self.source, self.matches, self.path_builder.broadcast(paths, fork_id=fork_id), destinations
        )
