"""The node API compiled for the loop: a node's routes, and the `Program` every node run goes through."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from railyard._ids import new_snapshot_id
from railyard.exceptions import GraphRuntimeError
from railyard.nodes import BaseNode, End, NodeDef
from railyard.runtime._tasks import Task

# What only a run, a diagram or a history needs (the runtime loop, the in-memory log,
# tracing, the mermaid code and service) is imported where it is first used: in the
# functions that start a run, draw or dump, never on the per-step path.
if TYPE_CHECKING:
    from railyard.graph import Graph
    from railyard.runtime._loop import Loop
    from railyard.runtime._program import StepRules
    from railyard.runtime._recorder import Outcome
    from railyard.runtime._tasks import ForkStack


__all__ = ("NodeProgram", "Route")

AnyNode = BaseNode[Any, Any, Any]
_SNAPSHOT_KEY = "__snapshot_id"


class Route:
    """Where a node's result may go: checks it against the graph and the node's annotation.

    Built once per node at graph construction; `__call__` is on the per-step path.
    """

    __slots__ = ("allowed", "any_node", "graph", "source")

    def __init__(self, graph: Graph[Any, Any, Any], node_def: NodeDef) -> None:
        self.graph = graph
        self.source = node_def.node_id
        self.allowed: dict[type, str] = {cls: node_id for node_id, cls in node_def.next_node_classes.items()}
        self.any_node = node_def.returns_base_node

    def __call__(self, result: Any) -> Outcome:
        node_id = self.allowed.get(type(result))
        if node_id is None:
            if isinstance(result, End):
                result.get_snapshot_id()  # the end's id is made now, as the run ends (a patched generator sees it)
                return result
            node_id = self._check(result)
        # every step gets a new id, even when a node returns itself or an earlier node
        snapshot_id = result.__dict__[_SNAPSHOT_KEY] = new_snapshot_id(node_id)
        return [Task(node_id, result, (), snapshot_id)]

    def _check(self, result: Any) -> str:
        if not isinstance(result, BaseNode):
            error = GraphRuntimeError(
                f"Invalid node return type: `{type(result).__name__}`. Expected `BaseNode` or `End`."
            )
            error.add_note(f"`{self.source}.run` returned {result!r}.")
            raise error
        node: AnyNode = result
        node_id = node.get_node_id()
        node_def = self.graph.node_defs.get(node_id)
        if node_def is None or node_def.node is not type(node):
            raise GraphRuntimeError(f"Node `{node!r}` is not in the graph.")
        if not self.any_node:
            allowed = ", ".join(f"`{name}`" for name in self.allowed.values()) or "no node"
            raise GraphRuntimeError(
                f"`{self.source}.run` returned `{node!r}`, but its return annotation does not allow "
                f"`{node_id}` (it allows {allowed}). Add `{node_id}` to the annotation or return "
                f"an allowed node."
            )
        return node_id


class NodeProgram:
    """The node API as a runtime program: every task is a step whose result leads to at most one task."""

    __slots__ = ("graph", "kinds", "routes", "run_timeout", "step_rules")

    def __init__(self, graph: Graph[Any, Any, Any]) -> None:
        from railyard.runtime._program import NodeKind

        self.graph = graph
        self.routes: dict[str, Route] = graph._routes  # pyright: ignore[reportPrivateUsage]
        self.kinds: dict[str, NodeKind] = dict.fromkeys(graph.node_defs, NodeKind.STEP)
        """Every node is a step."""
        self.step_rules: dict[str, StepRules] = {}
        """The retry policy and timeout of each node that has either (its own, else the graph's)."""
        self.run_timeout: float | None = graph.run_timeout
        """How long a run may take, in seconds (`None`: no limit)."""
        for node_id, node_def in graph.node_defs.items():
            policy = node_def.node.retry_policy or graph.retry_policy
            timeout = node_def.node.step_timeout if node_def.node.step_timeout is not None else graph.step_timeout
            if policy is not None or timeout is not None:
                self.step_rules[node_id] = (policy, timeout)

    @property
    def name(self) -> str | None:
        """The graph's name."""
        return self.graph.name

    def runner(self, run: Loop) -> Callable[[Task], Any]:
        """Calls the node's `run` on the run's one context (one task at a time: it can carry the step id)."""
        ctx = run.ctx
        attempts = run.attempts
        ctx.answers = run.answers  # the same dict for the whole run (a resume fills it in place)

        def call(task: Task) -> Any:
            ctx.step_id = task.task_id
            return task.inputs.run(ctx)

        def call_attempt(task: Task) -> Any:
            ctx.step_id = task.task_id
            ctx.attempt = attempts.get(task.task_id, 1)
            return task.inputs.run(ctx)

        return call_attempt if self.step_rules else call  # without retries, every attempt is the first

    def inline(self, task: Task, run: Loop) -> Any:
        """Never called: node graphs have only steps."""
        raise AssertionError("node graphs have no inline nodes")

    def route(self, task: Task, result: Any, run: Loop) -> Outcome:
        """The next node's task, or the `End`; checked against the graph and the node's annotation."""
        return self.routes[task.node_id](result)

    def follow(self, source_id: str, value: Any, fork_stack: ForkStack, run: Loop) -> list[Task]:
        """Never called: node graphs have no maps or joins."""
        raise AssertionError("node graphs have no maps or joins")

    def join_key(self, join_id: str, fork_stack: ForkStack) -> tuple[tuple[str, str], ForkStack]:
        """Never called: node graphs have no joins."""
        raise AssertionError("node graphs have no joins")

    def join_initial(self, join_id: str) -> Any:
        """Never called: node graphs have no joins."""
        raise AssertionError("node graphs have no joins")

    def map_spec(self, task: Task) -> None:
        """Node graphs have no maps."""
        return None

    def reduce(self, task: Task, state: Any, run: Any, cancel: Any) -> Any:
        """Never called: node graphs have no joins."""
        raise AssertionError("node graphs have no joins")

    def error_note(self, task: Task) -> str | None:
        """A node's exception propagates as it was raised, as in pydantic-graph."""
        return None
