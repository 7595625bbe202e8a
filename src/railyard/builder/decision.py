"""Decisions: send a value down the first branch whose type or predicate matches it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from railyard.builder.paths import BroadcastMarker, EdgePath, EdgePathBuilder, Path, PathBuilder
from railyard.builder.util import matches_type

__all__ = ("Decision", "DecisionBranch", "DecisionBranchBuilder")

T = TypeVar("T")


@dataclass
class DecisionBranch(Generic[T]):
    """One branch: values of type `source` (or for which `matches` is true) go along `path`."""

    source: Any
    matches: Callable[[Any], bool] | None
    path: Path
    destinations: list[Any] = field(default_factory=list[Any])

    def accepts(self, value: Any) -> bool:
        """Whether this branch takes `value`: the predicate decides when given, else the type."""
        if self.matches is not None:
            return bool(self.matches(value))
        return matches_type(value, self.source)


@dataclass(kw_only=True)
class Decision:
    """A choice node: tries its branches in order; the first that accepts the value takes it."""

    id: str
    branches: list[DecisionBranch[Any]] = field(default_factory=list[DecisionBranch[Any]])
    note: str | None = None

    def branch(self, branch: DecisionBranch[Any]) -> Decision:
        """Add a branch (after the existing ones) and return the decision."""
        self.branches.append(branch)
        return self

    def choose(self, value: Any) -> DecisionBranch[Any]:
        """The branch that takes `value`.

        Raises:
            RuntimeError: no branch takes it.
        """
        for branch in self.branches:
            if branch.accepts(value):
                return branch
        raise RuntimeError(f"No branch matched inputs {value!r} for decision node {self!r}.")


class DecisionBranchBuilder(Generic[T]):
    """Builds a branch from `GraphBuilder.match(...)`: chain like an edge, end with `.to`."""

    def __init__(
        self,
        *,
        decision: Decision | None,
        source: Any,
        matches: Callable[[Any], bool] | None,
        path_builder: PathBuilder,
    ) -> None:
        self.decision = decision
        self.source = source
        self.matches = matches
        self.path_builder = path_builder

    def _next(self, path_builder: PathBuilder) -> DecisionBranchBuilder[Any]:
        return DecisionBranchBuilder(
            decision=self.decision, source=self.source, matches=self.matches, path_builder=path_builder
        )

    def to(self, destination: Any, /, *extra_destinations: Any, fork_id: str | None = None) -> DecisionBranch[T]:
        """Where the branch's values go (several destinations broadcast)."""
        path, destinations = self.path_builder.to(destination, *extra_destinations, fork_id=fork_id)
        return DecisionBranch(self.source, self.matches, path, destinations)

    def map(
        self, *, fork_id: str | None = None, downstream_join_id: str | None = None, max_concurrency: int | None = None
    ) -> DecisionBranchBuilder[Any]:
        """Fork over the items of the value."""
        return self._next(
            self.path_builder.map(
                fork_id=fork_id, downstream_join_id=downstream_join_id, max_concurrency=max_concurrency
            )
        )

    def transform(self, func: Callable[..., Any], /) -> DecisionBranchBuilder[Any]:
        """Turn the value into `func(ctx)`."""
        return self._next(self.path_builder.transform(func))

    def label(self, label: str) -> DecisionBranchBuilder[T]:
        """Label the branch on diagrams."""
        return self._next(self.path_builder.label(label))

    def broadcast(
        self, get_forks: Callable[[EdgePathBuilder[Any]], Sequence[EdgePath[Any]]], /, *, fork_id: str | None = None
    ) -> DecisionBranch[T]:
        """Send the value down each of the edges `get_forks` builds."""
        from railyard.builder.paths import placeholder_id

        forks = get_forks(EdgePathBuilder((), PathBuilder()))
        marker = BroadcastMarker([fork.path for fork in forks], fork_id or placeholder_id("broadcast"))
        destinations = [d for fork in forks for d in fork.destinations]
        return DecisionBranch(self.source, self.matches, Path([*self.path_builder.working_items, marker]), destinations)
