"""A builder graph compiled for the loop: its steps, forks, maps, decisions and joins as a `Program`."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from railyard.builder.decision import Decision
from railyard.builder.join import ItemFailure, Join, JoinNode, ReducerContext
from railyard.builder.node import EndNode, Fork, StartNode
from railyard.builder.paths import DestinationMarker, Path, TransformMarker
from railyard.builder.step import NodeStep, Step, StepContext, StepNode
from railyard.exceptions import GraphRuntimeError
from railyard.nodes import BaseNode, End, GraphRunContext
from railyard.runtime._joins import JoinState
from railyard.runtime._program import HasContext, MapItems, NodeKind, Routed, StepRules
from railyard.runtime._tasks import ForkStack, ForkStackItem, Task

if TYPE_CHECKING:
    from railyard.builder.graph import Graph
    from railyard.runtime._executor import StepCall
    from railyard.runtime._loop import Loop

__all__ = ("BuilderProgram", "join_key")

_Route = tuple[tuple[Callable[[StepContext[Any, Any, Any]], Any], ...], str | None]
"""A path, compiled: the transforms to apply, then the destination."""


class BuilderProgram:
    """Routes a builder run's values through forks, maps, decisions and joins."""

    __slots__ = (
        "_blocking",
        "_branches",
        "_collecting",
        "_routes",
        "collect_failure",
        "graph",
        "join_blocking",
        "kinds",
        "run_timeout",
        "step_rules",
    )

    def __init__(self, graph: Graph[Any, Any, Any, Any], branch_paths: dict[str, list[list[Path]]]) -> None:
        self.graph = graph
        self._routes: dict[str, list[_Route]] = {
            source: [_compile(path) for path in paths] for source, paths in graph.edges_by_source.items()
        }
        self._branches: dict[str, list[list[_Route]]] = {
            node_id: [[_compile(path) for path in paths] for paths in branches]
            for node_id, branches in branch_paths.items()
        }
        self.kinds: dict[str, NodeKind] = {node_id: _kind(node) for node_id, node in graph.nodes.items()}
        """Steps run through the executor; forks, decisions, start and end inline; joins reduce."""
        self._collecting: dict[str, str] = _collecting_joins(graph)
        """Maps with `on_error="collect"`, by fork id: the join their failed branches go to."""
        self.collect_failure: Callable[[Task, Exception, Loop], Task | None] | None = (
            self._collect_failure if self._collecting else None
        )
        """For a failed task inside such a map: the join task carrying its `ItemFailure` (`None`: raise)."""
        self.run_timeout: float | None = graph.run_timeout
        """How long a run may take, in seconds (`None`: no limit)."""
        self.step_rules: dict[str, StepRules] = {}
        """The retry policy and timeout of each step that has either (its own, else the graph's)."""
        for node_id, node in graph.nodes.items():
            if isinstance(node, Step) and not node.stream:
                policy = node.retry_policy or graph.retry_policy
                timeout = node.step_timeout if node.step_timeout is not None else graph.step_timeout
                if policy is not None or timeout is not None:
                    self.step_rules[node_id] = (policy, timeout)
        self._blocking: dict[str, frozenset[str]] = {
            join_id: frozenset({*parent.intermediate_nodes, join_id, parent.fork_id})
            for join_id, parent in graph.parent_forks.items()
        }
        self.join_blocking: Callable[[str], frozenset[str]] | None = (
            self._blocking.__getitem__ if _needs_blocking(graph, self._blocking) else None
        )
        """The nodes where a task of a join's fork run keeps the join open: the way from the fork to it.

        A task of the same fork run elsewhere (a branch that does not lead to the join) does
        not keep it waiting. `None` when no join's fork run can hold such a task while the
        join is open: then anything in the fork run keeps it open, which is the same, and
        the loop need not track where tasks are.
        """

    @property
    def name(self) -> str | None:
        """The graph's name."""
        return self.graph.name

    def runner(self, run: Loop) -> Callable[[Task], Any]:
        """Runs a step's function on a `StepContext` (a node step's `run` on a `GraphRunContext`)."""
        nodes = self.graph.nodes
        attempts = run.attempts
        answers = run.answers

        def call(task: Task) -> Any:
            node = nodes[task.node_id]
            ctx = run.ctx  # read at each step: a resumed run's context replaces the first one
            if isinstance(node, NodeStep):
                instance: BaseNode[Any, Any, Any] = task.inputs
                return instance.run(
                    GraphRunContext(
                        state=ctx.state,
                        deps=ctx.deps,
                        step_id=task.task_id,
                        run_id=ctx.run_id,
                        answers=answers,
                        store=ctx.store,
                    )
                )
            context = StepContext(
                state=ctx.state,
                deps=ctx.deps,
                inputs=task.inputs,
                step_id=task.task_id,
                run_id=ctx.run_id,
                attempt=attempts.get(task.task_id, 1) if attempts else 1,
                answers=answers,
                store=ctx.store,
            )
            if node.stream:
                return _value(node.call(context))  # its items flow on through a map as they are yielded
            return node.call(context)

        def describe(task: Task) -> StepCall | None:
            from railyard.runtime._executor import StepCall  # only executors that run steps elsewhere ask

            node = nodes[task.node_id]
            if not isinstance(node, Step) or node.stream:
                return None  # a streaming step's items flow on as they are yielded: it stays here
            ctx = run.ctx
            return StepCall(
                node_id=task.node_id,
                function=None if isinstance(node, NodeStep) else node.call,
                inputs=task.inputs,
                state=ctx.state,
                state_type=self.graph.state_type,
                deps=ctx.deps,
                step_id=task.task_id,
                run_id=ctx.run_id,
                attempt=attempts.get(task.task_id, 1) if attempts else 1,
            )

        call.__dict__["describe"] = describe  # for executors that run steps elsewhere (`Describable`)
        return call

    def _collect_failure(self, task: Task, error: Exception, run: Loop) -> Task | None:
        """The task that takes `task`'s failure to its collecting map's join, if it runs inside such a map."""
        stack = task.fork_stack
        for depth in range(len(stack) - 1, -1, -1):
            join_id = self._collecting.get(stack[depth].fork_id)
            if join_id is not None and join_id != task.node_id:  # a reducer's own error is not an item's
                failure = ItemFailure(
                    index=stack[depth].thread_index,
                    step=task.node_id,
                    inputs=task.inputs,
                    error_type=f"{type(error).__module__}.{type(error).__qualname__}",
                    message=str(error),
                )
                return run.new_task(join_id, failure, stack[: depth + 1])
        return None

    @property
    def collecting_joins(self) -> frozenset[str]:
        """The joins that may get an `ItemFailure` (those of maps with `on_error="collect"`)."""
        return frozenset(self._collecting.values())

    def inline(self, task: Task, run: Loop) -> Any:
        """Start, end, forks and decisions pass their value on."""
        return task.inputs

    def route(self, task: Task, result: Any, run: Loop) -> Routed:
        """Where a node's value goes: along its paths, into a map, down a decision's branch, or to the end."""
        node = self.graph.nodes[task.node_id]
        if isinstance(node, EndNode):
            return End(result)
        if isinstance(node, Fork):
            if node.is_map:
                return self._map(node, result)
            tasks: list[Task] = []
            for index, compiled in enumerate(self._routes.get(node.id, [])):
                stack = (*task.fork_stack, ForkStackItem(node.id, task.task_id, index))
                tasks += self._along((compiled,), result, stack, run)
            return tasks
        if isinstance(node, Decision):
            branch = node.choose(result)
            return self._along(self._branches[node.id][node.branches.index(branch)], result, task.fork_stack, run)
        if isinstance(node, Join):
            return []
        if isinstance(node, NodeStep):
            return self._after_node(node, result, task.fork_stack, run)
        return self.follow(task.node_id, result, task.fork_stack, run)

    def _after_node(self, step: NodeStep, result: Any, fork_stack: ForkStack, run: Loop) -> Routed:
        """A node-API node leads where the value it returned says: another node, a step, a join, or the end."""
        if isinstance(result, StepNode):
            target, inputs = result.step.id, result.inputs
        elif isinstance(result, JoinNode):
            target, inputs = result.join.id, result.inputs
        elif isinstance(result, BaseNode):
            target, inputs = type(result).get_node_id(), result
        elif isinstance(result, End):
            return End(result.data)
        else:
            raise GraphRuntimeError(
                f"Node `{step.id}` returned {result!r}: a node's `run` must return another node, `End(...)`, "
                f"or `my_step.as_node(...)` / `my_join.as_node(...)`."
            )
        if target not in self.graph.nodes:
            raise GraphRuntimeError(
                f"Node `{step.id}` returned {result!r}, which leads to `{target}`, but the graph has no node "
                f"`{target}`. Add it (`g.node(...)` for a node class) or name it in the return annotation "
                f"of `{step.id}.run`."
            )
        return [run.new_task(target, inputs, fork_stack)]

    def follow(self, source_id: str, value: Any, fork_stack: ForkStack, run: Loop) -> list[Task]:
        """The tasks `value` leads to along the paths leaving `source_id`."""
        routes = self._routes.get(source_id)
        if routes is None:
            return []
        if len(routes) == 1 and not routes[0][0] and routes[0][1] is not None:  # straight to one node
            return [run.new_task(routes[0][1], value, fork_stack)]
        return self._along(routes, value, fork_stack, run)

    def _along(self, routes: Sequence[_Route], value: Any, fork_stack: ForkStack, run: Loop) -> list[Task]:
        tasks: list[Task] = []
        ctx = run.ctx
        for transforms, destination in routes:
            current = value
            for transform in transforms:
                current = transform(StepContext(state=ctx.state, deps=ctx.deps, inputs=current, run_id=ctx.run_id))
            if destination is not None:
                tasks.append(run.new_task(destination, current, fork_stack))
        return tasks

    def _map(self, fork: Fork, value: Any) -> MapItems:
        if isinstance(value, AsyncIterable):
            items: Any = aiter(value)
        else:
            try:
                items = iter(value)
            except TypeError:
                raise RuntimeError(f"Cannot map non-iterable value: {value!r}") from None
        return MapItems(fork.id, items, fork.max_concurrency, fork.downstream_join_id)

    def join_key(self, join_id: str, fork_stack: ForkStack) -> tuple[tuple[str, str], ForkStack]:
        """The join instance a branch's value belongs to, and the fork stack its value goes on with."""
        return join_key(self.graph, join_id, fork_stack)

    def join_initial(self, join_id: str) -> Any:
        """A fresh initial value of the join."""
        join: Join[Any, Any, Any, Any] = self.graph.nodes[join_id]
        return join.initial_factory()

    def map_spec(self, task: Task) -> MapItems | None:
        """The map a finished task of a map fork began, with its items as stored (a list)."""
        fork = self.graph.nodes.get(task.node_id)
        if not isinstance(fork, Fork) or not fork.is_map:
            return None
        items = list(task.inputs) if task.inputs is not None else []
        return MapItems(fork.id, items, fork.max_concurrency, fork.downstream_join_id)

    def reduce(self, task: Task, state: JoinState, run: HasContext, cancel: Callable[[], None]) -> Any:
        """The join's reducer applied to the value so far and the arriving one."""
        join: Join[Any, Any, Any, Any] = self.graph.nodes[task.node_id]
        ctx = run.ctx
        context: ReducerContext[Any, Any] = ReducerContext(
            state=ctx.state, deps=ctx.deps, join_state=state, cancel=cancel, run_id=ctx.run_id
        )
        return join.reduce(context, state.current, task.inputs)

    def error_note(self, task: Task) -> str | None:
        """Names the node and the task that raised."""
        node = self.graph.nodes.get(task.node_id)
        return f"raised by node `{task.node_id}` ({type(node).__name__}) in task {task.task_id}"


def join_key(
    graph: Graph[Any, Any, Any, Any], join_id: str, fork_stack: ForkStack
) -> tuple[tuple[str, str], ForkStack]:
    """The join instance a branch's value belongs to, and the fork stack the joined value continues with.

    The joined value leaves the join's parent fork: it continues with the stack outside
    that fork (the start of the run, the outermost fork, is never left) — unless a later
    join waits for a fork this join's branches are in (the join is one of its intermediate
    nodes): then the value keeps its branch's stack, so that it reaches that join's
    instance for the same fork run.
    """
    fork_id = graph.get_parent_fork(join_id).fork_id
    final = graph.is_final_join(join_id)
    for index in range(len(fork_stack) - 1, -1, -1):
        if fork_stack[index].fork_id == fork_id:
            return (join_id, fork_stack[index].node_run_id), fork_stack[: max(index, 1)] if final else fork_stack
    return (join_id, fork_stack[0].node_run_id), fork_stack[:1] if final else fork_stack


def _needs_blocking(graph: Graph[Any, Any, Any, Any], blocking: dict[str, frozenset[str]]) -> bool:
    """Whether some join's fork reaches, without passing the join, a node not on the way to it."""
    successors = {
        source: [item.destination_id for path in paths for item in path.items if isinstance(item, DestinationMarker)]
        for source, paths in graph.edges_by_source.items()
    }
    for join_id, parent in graph.parent_forks.items():
        seen = {parent.fork_id}
        todo = [parent.fork_id]
        while todo:
            for following in successors.get(todo.pop(), ()):
                if following == join_id or following in seen:
                    continue
                if following not in blocking[join_id]:
                    return True
                seen.add(following)
                todo.append(following)
    return False


def _kind(node: Any) -> NodeKind:
    if isinstance(node, Join):
        return NodeKind.JOIN
    if isinstance(node, StartNode | EndNode | Fork | Decision):
        return NodeKind.INLINE
    if isinstance(node, Step):
        return NodeKind.STEP
    raise RuntimeError(f"Node `{getattr(node, 'id', node)}` ({node!r}) cannot be run")


def _compile(path: Path) -> _Route:
    transforms = tuple(item.transform for item in path.items if isinstance(item, TransformMarker))
    destination = next((item.destination_id for item in path.items if isinstance(item, DestinationMarker)), None)
    return transforms, destination


async def _value(value: Any) -> Any:
    return value


def _collecting_joins(graph: Graph[Any, Any, Any, Any]) -> dict[str, str]:
    """Each map with `on_error="collect"`, by fork id: the nearest join its branches reach (on the way from a fork)."""
    collecting: dict[str, str] = {}
    for fork_id, fork in graph.nodes.items():
        if not (isinstance(fork, Fork) and fork.is_map and fork.on_error == "collect"):
            continue
        reached = [
            (len(parent.intermediate_nodes), join_id)
            for join_id, parent in graph.parent_forks.items()
            if parent.fork_id == fork_id or fork_id in parent.intermediate_nodes
        ]
        if reached:
            collecting[fork_id] = min(reached)[1]
    return collecting
