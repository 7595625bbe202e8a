"""`GraphBuilder`: declare steps, decisions, forks and joins, then `build()` a `Graph`."""

from __future__ import annotations

import inspect
import types
import typing
from collections import defaultdict
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, overload

import typing_extensions
from typing_extensions import TypeVar

from railyard._introspect import UNSET, Unset, parent_namespace
from railyard.builder.decision import Decision, DecisionBranch, DecisionBranchBuilder
from railyard.builder.graph import Graph
from railyard.builder.id_types import ForkID, JoinID, NodeID, generate_placeholder_node_id, replace_placeholder_id
from railyard.builder.join import Join, JoinNode, ReducerFunction, default_join_id
from railyard.builder.mermaid import build_mermaid_graph
from railyard.builder.node import END_ID, START_ID, EndNode, Fork, StartNode
from railyard.builder.node_types import AnyDestinationNode, AnyNode, DestinationNode, SourceNode
from railyard.builder.parent_forks import ParentFork, ParentForkFinder, find_parent_forks
from railyard.builder.paths import (
    PLACEHOLDER,
    BroadcastMarker,
    DestinationMarker,
    EdgePath,
    EdgePathBuilder,
    LabelMarker,
    MapMarker,
    Path,
    PathBuilder,
    PathItem,
    TransformMarker,
    node_id_of,
    placeholder_id,
)
from railyard.builder.step import NodeStep, Step, StepContext, StepFunction, StepNode, StreamFunction
from railyard.builder.util import TypeOrTypeExpression, get_callable_name, unpack_type_expression
from railyard.exceptions import GraphBuildingError, GraphSetupError, GraphValidationError
from railyard.nodes import BaseNode, End
from railyard.retries import RetryPolicy
from railyard.versioning import Migration

if typing.TYPE_CHECKING:
    from railyard.children import ChildGraph

__all__ = (
    "UNSET",
    "AnyDestinationNode",
    "AnyNode",
    "DestinationNode",
    "ForkID",
    "GraphBuilder",
    "GraphInputT",
    "GraphOutputT",
    "JoinID",
    "JoinNode",
    "NodeID",
    "ParentFork",
    "ParentForkFinder",
    "ReducerFunction",
    "SourceNode",
    "SourceNodeT",
    "SourceOutputT",
    "SourceT",
    "StepContext",
    "StepFunction",
    "StepNode",
    "StreamFunction",
    "T",
    "TypeOrTypeExpression",
    "Unset",
    "build_mermaid_graph",
    "generate_placeholder_node_id",
    "get_callable_name",
    "replace_placeholder_id",
    "unpack_type_expression",
)

StateT = TypeVar("StateT", default=None)
DepsT = TypeVar("DepsT", default=None)
InputT = TypeVar("InputT", default=None)
OutputT = TypeVar("OutputT", default=None)
GraphInputT = TypeVar("GraphInputT", default=None)
"""The type of a graph's `inputs`."""
GraphOutputT = TypeVar("GraphOutputT", default=None)
"""The type of a graph's output."""
SourceT = TypeVar("SourceT", default=Any)
"""The type a decision branch matches."""
SourceNodeT = TypeVar("SourceNodeT", bound=BaseNode[Any, Any, Any], default=BaseNode[Any, Any, Any])
"""A node-API class a decision branch matches."""
SourceOutputT = TypeVar("SourceOutputT", default=Any)
"""The type of the value leaving an edge's sources."""
T = TypeVar("T")

_SUPPRESS = (
    " If this is intentional, you can suppress this error by passing `validate_graph_structure=False` "
    "to the call to `GraphBuilder.build`."
)
_NONE_TYPE: Any = type(None)


class GraphBuilder(Generic[StateT, DepsT, InputT, OutputT]):
    """Declares a graph of steps, then builds it.

    ```python
    g = GraphBuilder(state_type=State, output_type=list[int])

    @g.step
    async def double(ctx: StepContext[State, None, int]) -> int:
        return ctx.inputs * 2

    collect = g.join(reduce_list_append, initial_factory=list[int])
    g.add(
        g.edge_from(g.start_node).map().to(double),
        g.edge_from(double).to(collect),
        g.edge_from(collect).to(g.end_node),
    )
    graph = g.build()
    ```
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        state_type: Any = _NONE_TYPE,
        deps_type: Any = _NONE_TYPE,
        input_type: Any = _NONE_TYPE,
        output_type: Any = _NONE_TYPE,
        auto_instrument: bool = True,
        max_concurrency: int | None = None,
        retry_policy: RetryPolicy | None = None,
        step_timeout: float | None = None,
        run_timeout: float | None = None,
        version: int = 1,
        migrations: Sequence[Migration] = (),
    ) -> None:
        from railyard.builder.paths import _check_concurrency  # pyright: ignore[reportPrivateUsage]
        from railyard.graph import _run_timeout  # pyright: ignore[reportPrivateUsage]

        self.run_timeout = _run_timeout(run_timeout)
        """How long a run of the built graph may take, in seconds from its start (`None`: no limit)."""
        self.version = version
        """The built graph's version, recorded with each run it creates (`railyard.versioning`)."""
        self.migrations: tuple[Migration, ...] = tuple(migrations)
        """How runs stored by older versions are upgraded as they are read (`railyard.versioning.Migration`)."""
        self.retry_policy = retry_policy
        """The retry policy of every step that declares none of its own (`None`: a step runs once)."""
        self.step_timeout = step_timeout
        """The timeout of each attempt of a step that declares none of its own, in seconds."""
        self.name = name
        caller = inspect.currentframe()
        caller = caller.f_back if caller is not None else None
        self._defined_in: str | None = caller.f_globals.get("__name__") if caller is not None else None
        """The module this builder was made in (its graph's spans are named after it when nothing else names it)."""
        self.state_type = state_type
        self.deps_type = deps_type
        self.input_type = input_type
        self.output_type = output_type
        self.auto_instrument = auto_instrument
        self.max_concurrency = _check_concurrency(max_concurrency, "GraphBuilder")
        self._start: StartNode[InputT] = StartNode()
        self._end: EndNode[OutputT] = EndNode()
        self._edges: list[EdgePath[Any]] = []
        self._node_classes: dict[type[BaseNode[Any, Any, Any]], NodeStep] = {}
        self._nodes: dict[str, Any] = {}
        self._seen_destinations: list[Any] = []
        self._hinted: dict[str, tuple[Step[Any, Any, Any, Any], Any]] = {}
        """Steps whose return annotation names nodes: they get edges to them unless given their own."""
        self._namespaces: dict[type[BaseNode[Any, Any, Any]], dict[str, Any] | None] = {}
        """Where a node class used as a destination was added: its annotations resolve there."""

    def __repr__(self) -> str:
        return (
            f"GraphBuilder(name={self.name!r}, state_type={self.state_type!r}, deps_type={self.deps_type!r}, "
            f"input_type={self.input_type!r}, output_type={self.output_type!r}, "
            f"auto_instrument={self.auto_instrument!r})"
        )

    @property
    def start_node(self) -> StartNode[InputT]:
        """The start of the graph: the run's `inputs` flow out of it."""
        return self._start

    @property
    def end_node(self) -> EndNode[OutputT]:
        """The end of the graph: the value that reaches it is the run's output."""
        return self._end

    # -- steps ----------------------------------------------------------------------------

    @overload
    def step(self, call: Callable[..., Any], /) -> Step[StateT, DepsT, Any, Any]: ...
    @overload
    def step(
        self,
        *,
        node_id: str | None = None,
        label: str | None = None,
        retry_policy: RetryPolicy | None = None,
        step_timeout: float | None = None,
        child_graphs: Sequence[ChildGraph] = (),
    ) -> Callable[[Callable[..., Any]], Step[StateT, DepsT, Any, Any]]: ...
    def step(
        self,
        call: Callable[..., Any] | None = None,
        *,
        node_id: str | None = None,
        label: str | None = None,
        retry_policy: RetryPolicy | None = None,
        step_timeout: float | None = None,
        child_graphs: Sequence[ChildGraph] = (),
    ) -> Step[StateT, DepsT, Any, Any] | Callable[[Callable[..., Any]], Step[StateT, DepsT, Any, Any]]:
        """Make an async function a step: `@g.step` or `@g.step(node_id=..., label=..., retry_policy=...)`.

        `retry_policy` and `step_timeout` (seconds per attempt) override the graph's
        (`GraphBuilder(retry_policy=..., step_timeout=...)`) for this step. `child_graphs`
        names the graphs the step runs with `ctx.run_child`, which its diagram state holds.

        Raises:
            GraphBuildingError: the function is not `async def`.
        """

        def make(function: Callable[..., Any]) -> Step[StateT, DepsT, Any, Any]:
            if not inspect.iscoroutinefunction(function):
                raise GraphBuildingError(
                    f"Step `{getattr(function, '__name__', function)}` must be an `async def` function; "
                    f"use @g.stream for an async generator."
                )
            return Step(
                id=node_id or function.__name__,
                call=function,
                label=label,
                retry_policy=retry_policy,
                step_timeout=step_timeout,
                child_graphs=child_graphs,
            )

        return make(call) if call is not None else make

    @overload
    def stream(self, call: Callable[..., AsyncIterable[Any]], /) -> Step[StateT, DepsT, Any, Any]: ...
    @overload
    def stream(
        self, *, node_id: str | None = None, label: str | None = None
    ) -> Callable[[Callable[..., AsyncIterable[Any]]], Step[StateT, DepsT, Any, Any]]: ...
    def stream(
        self,
        call: Callable[..., AsyncIterable[Any]] | None = None,
        *,
        node_id: str | None = None,
        label: str | None = None,
    ) -> Step[StateT, DepsT, Any, Any] | Callable[[Callable[..., AsyncIterable[Any]]], Step[StateT, DepsT, Any, Any]]:
        """Make an async generator function a step; `.map()` after it handles items as they are yielded."""

        def make(function: Callable[..., AsyncIterable[Any]]) -> Step[StateT, DepsT, Any, Any]:
            if not inspect.isasyncgenfunction(function):
                raise GraphBuildingError(
                    f"Stream step `{getattr(function, '__name__', function)}` must be an async generator."
                )
            return Step(id=node_id or function.__name__, call=function, label=label, stream=True)

        return make(call) if call is not None else make

    def node(self, node_type: type[BaseNode[Any, Any, Any]]) -> EdgePath[StateT, DepsT]:
        """Add a node-API class: it runs as a step, and its `run` return annotation gives its edges.

        The annotation may name other node classes, `End[...]`, and a builder step or join
        a node goes on to: `Annotated[StepNode[S, D], my_step]` (return
        `my_step.as_node(value)`), `Annotated[JoinNode[S, D], my_join]`.

        Raises:
            GraphSetupError: `run` has no return annotation, or it cannot be resolved, or it
                names something else (plain `BaseNode` included: name each class).
        """
        return self._node_edge(node_type, parent_namespace(inspect.currentframe().f_back))  # type: ignore[union-attr]

    def _node_edge(self, node_type: Any, namespace: dict[str, Any] | None) -> EdgePath[StateT, DepsT]:
        step = self._node_step(node_type)
        node_id = step.node_type.get_node_id()
        run = getattr(step.node_type, "run", None)
        if run is None or getattr(run, "__isabstractmethod__", False) or not inspect.iscoroutinefunction(run):
            raise GraphSetupError(f"`{node_id}.run` must be an `async def` method: `async def run(self, ctx) -> ...`.")
        hint = _return_hint(run, namespace, f"`{node_id}.run`")
        if hint is None:
            raise GraphSetupError(
                f"Node {step.node_type} is missing a return type hint on its `run` method. Annotate it with "
                f"what it may return, e.g. `-> NextNode | End[int]`."
            )
        edge = self._edge_from_hint(step, hint, strict=True)
        assert edge is not None, "a strict reading gives an edge or raises"
        return edge

    def _node_step(self, node_type: Any) -> NodeStep:
        node_type = typing.get_origin(node_type) or node_type
        step = self._node_classes.get(node_type)
        if step is None:
            step = self._node_classes[node_type] = NodeStep(node_type)
        return step

    def _edge_from_hint(self, source: Any, hint: Any, *, strict: bool) -> EdgePath[StateT, DepsT] | None:
        """The edge a return annotation gives `source`, if every type it names is a node (or `End`).

        `strict`: anything else in it is an error (a node-API class's `run`), not just no edge.
        """
        where = f"`{node_id_of(source)}`"
        destinations: list[Any] = []
        for member in _union_members(hint):
            base, metadata = _unannotated(member)
            origin = typing.get_origin(base) or base
            if origin is End:
                destinations.append(self._end)
            elif origin is StepNode or origin is JoinNode:
                kind = Step if origin is StepNode else Join
                target = next((m for m in metadata if isinstance(m, kind)), None)
                if target is None:
                    name = origin.__name__
                    raise GraphSetupError(
                        f"{where} may return a `{name}`, but its return annotation does not say which "
                        f"{kind.__name__.lower()} it leads to. Write `Annotated[{name}[StateT, DepsT], my_"
                        f"{kind.__name__.lower()}]`, as `my_{kind.__name__.lower()}.as_node(...)` is returned."
                    )
                destinations.append(target)
            elif isinstance(origin, type) and issubclass(origin, BaseNode):
                if origin.__dict__.get("_stands_for_any_node", False):
                    raise GraphSetupError(
                        f"{where} return type hint includes a plain `BaseNode`. Edge inference requires each "
                        f"possible returned `BaseNode` subclass to be listed explicitly."
                    )
                destinations.append(self._node_step(origin))
            elif member in _NEVER:
                continue
            elif strict:
                raise GraphSetupError(
                    f"Invalid return type: {member!r} in the return annotation of {where}; it must name "
                    f"`BaseNode` subclasses, `End[...]`, and `Annotated[StepNode[...], step]` or "
                    f"`Annotated[JoinNode[...], join]` only."
                )
            else:
                return None
        if not destinations:
            return None
        builder: EdgePathBuilder[StateT, DepsT, Any] = EdgePathBuilder((source,), PathBuilder())
        if len(destinations) == 1:
            return builder.to(destinations[0])
        # a node step's value is routed by what it returns; the decision draws (and validates) the ways out
        decision = self.decision()
        for destination in destinations:
            decision.branch(self.match(_NONE_TYPE).to(destination))
        return builder.to(decision)

    # -- edges ----------------------------------------------------------------------------

    def add(self, *edges: EdgePath[StateT, DepsT]) -> None:
        """Add edges to the graph (a node is in the graph once an edge names it).

        A step an edge leads to whose return annotation names only node-API classes (or
        `End`) gets the edges to them too, unless it is given edges of its own. Two nodes
        with one id are refused by `build`.
        """
        namespace = parent_namespace(inspect.currentframe().f_back)  # type: ignore[union-attr]
        for edge in edges:
            _canonical_node_steps(edge, self._node_step)
            for source in edge.sources:
                self._insert(source)
            for destination in edge.destinations:
                self._insert_destination(destination, namespace)
            _insert_forks(edge.path, self._insert)
            self._edges.append(edge)

    def _insert(self, node: Any) -> None:
        """Register `node` under its id (placeholder ids are unique).

        Raises:
            GraphBuildingError: another node already has this id (as pydantic-graph refuses at `add`).
        """
        if isinstance(node, StartNode | EndNode):
            return
        node_id = node_id_of(node)
        existing = self._nodes.get(node_id)
        if existing is None:
            self._nodes[node_id] = node
        elif existing is not node and not (isinstance(node, _ForkMarker) and existing == node):
            raise GraphBuildingError(
                f"All nodes must have unique node IDs. {node_id!r} was the ID for {existing!r} and {node!r}"
            )

    def _insert_destination(self, node: Any, namespace: dict[str, Any] | None) -> None:
        if any(node is seen for seen in self._seen_destinations):
            return  # a cycle of decisions, or a node already added
        self._seen_destinations.append(node)
        self._insert(node)
        if isinstance(node, Decision):
            for branch in node.branches:
                _canonical_branch_steps(branch, self._node_step)
                _insert_forks(branch.path, self._insert)
                for destination in branch.destinations:
                    self._insert_destination(destination, namespace)
        elif isinstance(node, NodeStep):
            self._namespaces.setdefault(node.node_type, namespace)
        elif isinstance(node, Step) and not node.stream:
            hint = _return_hint(node.call, namespace, None)
            if hint is not None:
                self._hinted[node.id] = (node, hint)

    def add_edge(self, source: Any, destination: Any, *, label: str | None = None) -> None:
        """Add a plain edge from `source` to `destination`."""
        builder = self.edge_from(source)
        if label is not None:
            builder = builder.label(label)
        self.add(builder.to(destination))

    def add_mapping_edge(
        self,
        source: Any,
        map_to: Any,
        *,
        pre_map_label: str | None = None,
        post_map_label: str | None = None,
        fork_id: str | None = None,
        downstream_join_id: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        """Add an edge that maps over `source`'s output, sending each item to `map_to`."""
        builder = self.edge_from(source)
        if pre_map_label is not None:
            builder = builder.label(pre_map_label)
        builder = builder.map(fork_id=fork_id, downstream_join_id=downstream_join_id, max_concurrency=max_concurrency)
        if post_map_label is not None:
            builder = builder.label(post_map_label)
        self.add(builder.to(map_to))

    def edge_from(self, *sources: Any) -> EdgePathBuilder[Any]:
        """Start an edge from one or more sources: chain `.transform`, `.label`, `.map`, then `.to`."""
        return EdgePathBuilder(tuple(self._node_step(s) if _is_node_class(s) else s for s in sources), PathBuilder())

    # -- decisions and joins ----------------------------------------------------------------

    def decision(self, *, note: str | None = None, node_id: str | None = None) -> Decision:
        """A decision node; add branches with `.branch(g.match(...).to(...))`."""
        return Decision(id=node_id or placeholder_id("decision"), note=note)

    def match(self, source: Any, *, matches: Callable[[Any], bool] | None = None) -> DecisionBranchBuilder[Any]:
        """A decision branch for values of type `source`, or for which `matches(value)` is true."""
        return DecisionBranchBuilder(decision=None, source=source, matches=matches, path_builder=PathBuilder())

    def match_node(
        self, source: type[BaseNode[Any, Any, Any]], *, matches: Callable[[Any], bool] | None = None
    ) -> DecisionBranch[Any]:
        """A decision branch sending node-API instances of `source` to that node."""
        step = self._node_step(source)
        return DecisionBranch(source, matches, Path([DestinationMarker(step.id)]), [step])

    def join(
        self,
        reducer: Callable[..., Any],
        *,
        initial: Any = None,
        initial_factory: Callable[[], Any] | None = None,
        node_id: str | None = None,
        parent_fork_id: str | None = None,
        preferred_parent_fork: Literal["farthest", "closest"] = "farthest",
    ) -> Join[Any, Any, Any, Any]:
        """A join: waits for the branches of its parent fork and reduces their values with `reducer`.

        `initial` (copied for each run) or `initial_factory` gives the value reduction starts from.
        """
        if initial_factory is not None:
            factory = initial_factory
        else:
            import copy

            def factory() -> Any:
                return copy.deepcopy(initial)

        return Join(
            id=node_id or placeholder_id(default_join_id(reducer)),
            reducer=reducer,
            initial_factory=factory,
            parent_fork_id=parent_fork_id,
            preferred_parent_fork=preferred_parent_fork,
        )

    # -- build ----------------------------------------------------------------------------

    def build(self, validate_graph_structure: bool = True) -> Graph[StateT, DepsT, InputT, OutputT]:
        """Build the graph: resolve ids, turn maps and broadcasts into fork nodes, validate.

        Raises:
            GraphBuildingError: two nodes share an id.
            GraphValidationError: the structure is wrong (the message names the nodes);
                pass `validate_graph_structure=False` to build it anyway.
        """
        nodes: dict[str, Any] = {START_ID: self._start}
        objects: list[Any] = []
        edges = list(self._edges)
        self._add_automatic_node_edges(edges, parent_namespace(inspect.currentframe().f_back))  # type: ignore[union-attr]

        def register(node: Any) -> None:
            if any(node is seen for seen in objects):
                return
            objects.append(node)
            if isinstance(node, Decision):
                for branch in node.branches:
                    for destination in branch.destinations:
                        register(destination)

        for edge in edges:
            for source in edge.sources:
                register(source)
            for destination in edge.destinations:
                register(destination)
        _resolve_placeholders(objects, edges)
        for candidate in objects:
            if candidate is self._start:
                continue
            node = self._end if isinstance(candidate, EndNode) else candidate
            node_id = node_id_of(node)
            existing = nodes.get(node_id)
            if existing is not None and existing is not node:
                raise GraphBuildingError(
                    f"All nodes must have unique node IDs. {node_id!r} was the ID for {existing!r} and {node!r}"
                )
            nodes[node_id] = node
        edges_by_source: dict[str, list[Path]] = defaultdict(list)
        branch_paths: dict[str, list[list[Path]]] = {}
        forks: dict[str, Fork] = {}
        for edge in edges:
            for source in edge.sources:
                source_id = START_ID if isinstance(source, StartNode) else node_id_of(source)
                _normalize(source_id, edge.path.items, edges_by_source, forks)
        for node in list(nodes.values()):
            if isinstance(node, Decision):
                paths: list[list[Path]] = []
                for branch in node.branches:
                    collected: dict[str, list[Path]] = defaultdict(list)
                    _normalize(node.id, branch.path.items, collected, forks)
                    paths.append(collected.pop(node.id, []))
                    for fork_id, fork_paths in collected.items():
                        edges_by_source[fork_id].extend(fork_paths)
                    edges_by_source[node.id].extend(paths[-1])
                branch_paths[node.id] = paths
        for source_id, outgoing in list(edges_by_source.items()):
            # several edges from one node send the value down each: an implicit broadcast fork
            if len(outgoing) > 1 and not isinstance(nodes.get(source_id), Fork | Decision) and source_id not in forks:
                fork_id = f"{source_id}_broadcast_fork"
                forks[fork_id] = Fork(fork_id, False)
                edges_by_source[fork_id] = outgoing
                edges_by_source[source_id] = [Path([DestinationMarker(fork_id)])]
        for fork_id, fork in forks.items():
            if fork_id in nodes and not isinstance(nodes[fork_id], Fork):
                raise GraphBuildingError(
                    f"All nodes must have unique node IDs. {fork_id!r} was the ID for {nodes[fork_id]!r} and {fork!r}"
                )
            nodes[fork_id] = fork
        nodes.pop(END_ID, None)
        nodes[END_ID] = self._end
        ordered = _order_nodes(nodes, edges_by_source)
        if validate_graph_structure:
            _validate(ordered, edges_by_source)
            _check_types(ordered, edges_by_source)
        parent_forks = find_parent_forks(ordered, edges_by_source, render=lambda: _diagram(ordered, edges_by_source))
        graph: Graph[StateT, DepsT, InputT, OutputT] = Graph(
            name=self.name,
            state_type=self.state_type,
            deps_type=self.deps_type,
            input_type=self.input_type,
            output_type=self.output_type,
            auto_instrument=self.auto_instrument,
            nodes=ordered,
            edges_by_source=dict(edges_by_source),
            branch_paths=branch_paths,
            parent_forks=parent_forks,
            max_concurrency=self.max_concurrency,
            retry_policy=self.retry_policy,
            step_timeout=self.step_timeout,
            run_timeout=self.run_timeout,
            version=self.version,
            migrations=self.migrations,
        )
        graph._defined_in = self._defined_in  # pyright: ignore[reportPrivateUsage]
        return graph

    def _add_automatic_node_edges(self, edges: list[EdgePath[Any]], namespace: dict[str, Any] | None) -> None:
        """Edges the graph implies: a node class's own edges, a step's from its return annotation.

        A node-API class used as a destination gets the edges `g.node(...)` gives it; a step
        whose return annotation names only nodes (and `End`) gets edges to them. Neither is
        added when the node has edges of its own.
        """
        sourced = {id(source) for edge in edges for source in edge.sources}
        todo = list(edges)
        while todo:
            edge = todo.pop(0)
            for destination in _all_destinations(edge):
                if id(destination) in sourced:
                    continue
                implied: EdgePath[Any] | None = None
                if isinstance(destination, NodeStep):
                    local = self._namespaces.get(destination.node_type) or namespace
                    implied = self._node_edge(destination.node_type, local)
                elif isinstance(destination, Step) and destination.id in self._hinted:
                    _, hint = self._hinted[destination.id]
                    if isinstance(hint, _Unresolved):
                        hint = _return_hint(destination.call, namespace, None)
                    if hint is not None and not isinstance(hint, _Unresolved):
                        implied = self._edge_from_hint(destination, hint, strict=False)
                sourced.add(id(destination))
                if implied is not None:
                    _canonical_node_steps(implied, self._node_step)
                    edges.append(implied)
                    todo.append(implied)


class _Unresolved:
    """A return annotation that could not be resolved where the step was added (tried again at build)."""


_NEVER: tuple[Any, ...] = (typing.NoReturn, typing_extensions.Never, typing_extensions.NoReturn)


def _return_hint(function: Any, namespace: dict[str, Any] | None, strict_where: str | None) -> Any:
    """`function`'s return annotation, resolved in its module and `namespace` (`None` if it has none).

    Raises:
        GraphSetupError: it cannot be resolved and `strict_where` names what it belongs to.
    """
    try:
        hints = typing.get_type_hints(function, localns=namespace, include_extras=True)
    except Exception as error:  # a name not defined yet, or not a type at all
        if strict_where is None:
            return _Unresolved()
        raise GraphSetupError(
            f"Cannot resolve the return annotation of {strict_where}: {error}. Define the names it uses at "
            f"module level, or in the function that adds it to the graph, before adding it."
        ) from None
    return hints.get("return")


def _union_members(hint: Any) -> tuple[Any, ...]:
    base, _ = _unannotated(hint)
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        return tuple(typing.get_args(base))
    return (hint,)


def _unannotated(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(hint) is typing.Annotated:
        base, *metadata = typing.get_args(hint)
        return base, tuple(metadata)
    return hint, ()


def _all_destinations(edge: EdgePath[Any]) -> list[Any]:
    """The edge's destinations, and the destinations of the decisions among them (recursively)."""
    found: list[Any] = []

    def visit(node: Any) -> None:
        if any(node is seen for seen in found):
            return
        found.append(node)
        if isinstance(node, Decision):
            for branch in node.branches:
                for destination in branch.destinations:
                    visit(destination)

    for destination in edge.destinations:
        visit(destination)
    return found


def _canonical_node_steps(edge: EdgePath[Any], node_step: Callable[[Any], NodeStep]) -> None:
    """One `NodeStep` per node class: the builder's (an edge may have made its own)."""
    edge.destinations[:] = [
        node_step(d.node_type if isinstance(d, NodeStep) else d) if _is_node_step_like(d) else d
        for d in edge.destinations
    ]
    for destination in edge.destinations:
        if isinstance(destination, Decision):
            for branch in destination.branches:
                _canonical_branch_steps(branch, node_step)


def _canonical_branch_steps(branch: DecisionBranch[Any], node_step: Callable[[Any], NodeStep]) -> None:
    branch.destinations[:] = [
        node_step(d.node_type if isinstance(d, NodeStep) else d) if _is_node_step_like(d) else d
        for d in branch.destinations
    ]


def _is_node_step_like(value: Any) -> bool:
    return isinstance(value, NodeStep) or _is_node_class(typing.get_origin(value) or value)


def _insert_forks(path: Path, insert: Callable[[Any], None]) -> None:
    """Register the forks a path's maps and broadcasts will become (their markers stand for them)."""
    for item in path.items:
        if isinstance(item, MapMarker):
            insert(_ForkMarker(item.fork_id, item))
        elif isinstance(item, BroadcastMarker):
            insert(_ForkMarker(item.fork_id, item))
            for inner in item.paths:
                _insert_forks(inner, insert)


@dataclass(frozen=True)
class _ForkMarker:
    """A fork as `add` sees it: its id and the marker that makes it (the same marker is the same fork)."""

    id: str
    marker: Any = field(compare=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ForkMarker) and other.marker is self.marker

    def __hash__(self) -> int:
        return id(self.marker)


def _diagram(nodes: dict[str, Any], edges: dict[str, list[Path]]) -> str:
    from railyard.builder.mermaid import build_mermaid_graph

    return build_mermaid_graph(nodes, edges).render()


def _is_node_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseNode)


def _resolve_placeholders(objects: list[Any], edges: list[EdgePath[Any]]) -> None:
    """Give forks, decisions and joins without an explicit id `kind`, `kind_2`, ... in order."""
    taken = {node_id_of(o) for o in objects if not node_id_of(o).startswith(PLACEHOLDER)}
    mapping: dict[str, str] = {}

    def resolve(placeholder: str) -> str:
        if not placeholder.startswith(PLACEHOLDER):
            return placeholder
        if placeholder not in mapping:
            kind = placeholder.split(":")[1]
            candidate, n = kind, 1
            while candidate in taken:
                n += 1
                candidate = f"{kind}_{n}"
            taken.add(candidate)
            mapping[placeholder] = candidate
        return mapping[placeholder]

    def walk(items: list[PathItem]) -> None:
        for item in items:
            if isinstance(item, MapMarker):
                item.fork_id = resolve(item.fork_id)
                if item.downstream_join_id is not None:
                    item.downstream_join_id = resolve(item.downstream_join_id)
            elif isinstance(item, BroadcastMarker):
                item.fork_id = resolve(item.fork_id)
                for path in item.paths:
                    walk(path.items)
            elif isinstance(item, DestinationMarker):
                item.destination_id = resolve(item.destination_id)

    # ids in the order the graph mentions them: sources and destinations, then path markers
    for edge in edges:
        for source in edge.sources:
            if isinstance(source, Join | Decision):
                source.id = resolve(source.id)
        walk(edge.path.items)
    for node in objects:
        if isinstance(node, Join | Decision):
            node.id = resolve(node.id)
        if isinstance(node, Decision):
            for branch in node.branches:
                walk(branch.path.items)


def _normalize(source_id: str, items: Sequence[PathItem], edges: dict[str, list[Path]], forks: dict[str, Fork]) -> None:
    """Add the path `items` from `source_id`, turning map and broadcast markers into fork nodes."""
    prefix: list[PathItem] = []
    for index, item in enumerate(items):
        if isinstance(item, TransformMarker | LabelMarker):
            prefix.append(item)
        elif isinstance(item, DestinationMarker):
            edges[source_id].append(Path([*prefix, item]))
            return
        elif isinstance(item, MapMarker):
            edges[source_id].append(Path([*prefix, DestinationMarker(item.fork_id)]))
            forks[item.fork_id] = Fork(item.fork_id, True, item.downstream_join_id, item.max_concurrency, item.on_error)
            _normalize(item.fork_id, items[index + 1 :], edges, forks)
            return
        else:  # a broadcast
            edges[source_id].append(Path([*prefix, DestinationMarker(item.fork_id)]))
            forks.setdefault(item.fork_id, Fork(item.fork_id, False))
            for path in item.paths:
                _normalize(item.fork_id, path.items, edges, forks)
            return


def destinations(paths: Sequence[Path]) -> list[str]:
    """The node ids a list of paths leads to."""
    return [item.destination_id for path in paths for item in path.items if isinstance(item, DestinationMarker)]


def _order_nodes(nodes: dict[str, Any], edges: dict[str, list[Path]]) -> dict[str, Any]:
    """Start first, end last, the rest in the order edges first mention them."""
    order: list[str] = [START_ID]
    for source, paths in edges.items():
        for node_id in [source, *destinations(paths)]:
            if node_id not in order and node_id in nodes and node_id != END_ID:
                order.append(node_id)
    order += [node_id for node_id in nodes if node_id not in order and node_id != END_ID]
    return {node_id: nodes[node_id] for node_id in [*order, END_ID] if node_id in nodes}


def _validate(nodes: dict[str, Any], edges: dict[str, list[Path]]) -> None:
    """pydantic-graph's structural checks, in its order, with what railyard can add about the cause."""
    if not edges.get(START_ID):
        raise GraphValidationError(f"The graph has no edges from the start node.{_SUPPRESS}")
    empty = [n for n, node in nodes.items() if isinstance(node, Decision) and not node.branches]
    dead_ends = [n for n in nodes if n != END_ID and not edges.get(n)]
    details = ""
    if dead_ends:
        details = f" The following nodes have no outgoing edges: {dead_ends}."
        classes = [n for n in dead_ends if isinstance(nodes[n], NodeStep)]
        if classes:
            details += f" Node-API classes need `g.node(...)` to get their edges: {classes}."
    for node_id in empty:
        details += f" Decision node `{node_id}` has no branches: add one with `.branch(g.match(...).to(...))`."
    if END_ID not in {d for paths in edges.values() for d in destinations(paths)}:
        raise GraphValidationError(f"The graph has no edges to the end node.{details}{_SUPPRESS}")
    if details:
        raise GraphValidationError(f"{details.lstrip()}{_SUPPRESS}")
    reachable = _reach(START_ID, {s: destinations(p) for s, p in edges.items()})
    unreachable = [n for n in nodes if n not in reachable and n not in (START_ID, END_ID)]
    if unreachable:
        raise GraphValidationError(
            f"The following nodes are not reachable from the start node: {unreachable}.{_SUPPRESS}"
        )
    if END_ID not in reachable:
        raise GraphValidationError(f"The graph has no edges to the end node.{_SUPPRESS}")
    backwards: dict[str, list[str]] = defaultdict(list)
    for source, paths in edges.items():
        for destination in destinations(paths):
            backwards[destination].append(source)
    reaches_end = _reach(END_ID, backwards)
    stuck = [n for n in nodes if n not in reaches_end and n != END_ID]
    if stuck:
        raise GraphValidationError(f"The following nodes have no path to the end node: {stuck}.{_SUPPRESS}")


def _step_types(step: Any) -> tuple[Any, Any]:
    """A step's declared input type (from its `StepContext[...]`) and return type, where knowable."""
    if not isinstance(step, Step) or isinstance(step, NodeStep) or step.stream:
        return None, None
    try:
        hints = typing.get_type_hints(step.call)
        first = next(iter(inspect.signature(step.call).parameters))
    except Exception:  # unresolvable hints: nothing to check
        return None, None
    args = typing.get_args(hints.get(first))
    return (args[2] if len(args) == 3 else None), hints.get("return")


def _plain_class(hint: Any) -> type | None:
    if hint is typing.Any or hint is object or not isinstance(hint, type) or typing.get_origin(hint) is not None:
        return None
    return hint


def _check_types(nodes: dict[str, Any], edges: dict[str, list[Path]]) -> None:
    """A step whose declared input type cannot take what the step before it returns is an error.

    Checked where both hints are plain classes: on a direct edge, and on a map over a
    `list[...]` (each item against the input type).
    """
    for source_id, paths in edges.items():
        _, returned = _step_types(nodes.get(source_id))
        if returned is None:
            continue
        for path in paths:
            if any(isinstance(item, TransformMarker) for item in path.items):
                continue
            flowing, target = returned, path.items[-1]
            if isinstance(target, DestinationMarker) and isinstance(nodes.get(target.destination_id), Fork):
                fork: Fork = nodes[target.destination_id]
                item_types = typing.get_args(returned) if typing.get_origin(returned) in (list, tuple, set) else ()
                if not fork.is_map or len(item_types) != 1:
                    continue
                flowing = item_types[0]
                following = edges.get(fork.id, [])
                if len(following) != 1 or any(isinstance(i, TransformMarker) for i in following[0].items):
                    continue
                target = following[0].items[-1]
            if not isinstance(target, DestinationMarker):
                continue
            accepted, _ = _step_types(nodes.get(target.destination_id))
            given, wanted = _plain_class(flowing), _plain_class(accepted)
            if given is not None and wanted is not None and not issubclass(given, wanted):
                raise GraphValidationError(
                    f"`{target.destination_id}` takes `{wanted.__name__}` (its StepContext input type), but "
                    f"`{source_id}` gives it `{given.__name__}`. Change one of the two types, or add a "
                    f"`.transform(...)` on the edge.{_SUPPRESS}"
                )


def _reach(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for following in edges.get(todo.pop(), []):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen
