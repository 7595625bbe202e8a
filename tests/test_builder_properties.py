"""Property test: random shapes of steps, broadcasts, maps and joins compute what a plain loop does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from railyard.builder import GraphBuilder, StepContext, reduce_sum


@dataclass(frozen=True)
class Apply:
    """x -> a * x + b."""

    a: int
    b: int


@dataclass(frozen=True)
class Seq:
    first: Expr
    second: Expr


@dataclass(frozen=True)
class Broadcast:
    """Every branch gets x; the results are summed."""

    branches: tuple[Expr, ...]


@dataclass(frozen=True)
class Map:
    """Each of x, x+1, ..., x+k-1 goes through `inner`; the results are summed (0 for k = 0)."""

    k: int
    inner: Expr


Expr = Apply | Seq | Broadcast | Map


def evaluate(expr: Expr, x: int) -> int:
    """The plain, sequential meaning of an expression."""
    match expr:
        case Apply(a, b):
            return a * x + b
        case Seq(first, second):
            return evaluate(second, evaluate(first, x))
        case Broadcast(branches):
            return sum(evaluate(branch, x) for branch in branches)
        case Map(k, inner):
            return sum(evaluate(inner, x + i) for i in range(k))


def expressions() -> st.SearchStrategy[Expr]:
    leaf = st.builds(Apply, st.integers(-3, 3), st.integers(-5, 5))
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.builds(Seq, children, children),
            st.builds(Broadcast, st.tuples(children, children) | st.tuples(children, children, children)),
            st.builds(Map, st.integers(0, 4), children),
        ),
        max_leaves=8,
    )


Connect = Callable[[Any], None]


class Crash(BaseException):
    """The process dies here."""


@dataclass
class CrashPlan:
    """Crash at the `crash_at`-th step call (never, if `None`)."""

    crash_at: int | None
    calls: int = 0


class Compiler:
    """Turns an expression into a builder graph, step by step."""

    def __init__(self) -> None:
        self.g = GraphBuilder(input_type=int, output_type=int)
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def step(self, kind: str, function: Callable[[int], Any]) -> Any:
        async def run(ctx: StepContext[None, Any, int]) -> Any:
            await asyncio.sleep(0)  # let branches interleave
            plan = ctx.deps
            if isinstance(plan, CrashPlan):
                plan.calls += 1
                if plan.calls == plan.crash_at:
                    raise Crash  # the process dies mid-run
            return function(ctx.inputs)

        return self.g.step(node_id=self.name(kind))(run)

    def compile(self, expr: Expr, connect: Connect) -> Connect:
        g = self.g
        match expr:
            case Apply(a, b):
                node = self.step("apply", lambda x, a=a, b=b: a * x + b)
                connect(node)
                return lambda d: g.add(g.edge_from(node).to(d))
            case Seq(first, second):
                return self.compile(second, self.compile(first, connect))
            case Broadcast(branches):
                fan = self.step("fan", lambda x: x)
                connect(fan)
                join = g.join(reduce_sum, initial=0, node_id=self.name("sum"), preferred_parent_fork="closest")
                for branch in branches:
                    self.compile(branch, lambda d, fan=fan: g.add(g.edge_from(fan).to(d)))(join)
                return lambda d: g.add(g.edge_from(join).to(d))
            case Map(k, inner):
                expand = self.step("expand", lambda x, k=k: [x + i for i in range(k)])
                connect(expand)
                join = g.join(reduce_sum, initial=0, node_id=self.name("total"), preferred_parent_fork="closest")
                self.compile(
                    inner,
                    lambda d, expand=expand, join=join: g.add(
                        g.edge_from(expand).map(downstream_join_id=join.id).to(d)
                    ),
                )(join)
                return lambda d: g.add(g.edge_from(join).to(d))


def build(expr: Expr) -> Any:
    compiler = Compiler()
    g = compiler.g
    compiler.compile(expr, lambda d: g.add(g.edge_from(g.start_node).to(d)))(g.end_node)
    return g.build()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), st.integers(-10, 10))
def test_a_random_graph_computes_what_a_plain_loop_does(expr: Expr, x: int) -> None:
    assert build(expr).run_sync(inputs=x) == evaluate(expr, x)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), st.integers(-10, 10), st.integers(1, 4))
def test_bounded_concurrency_changes_nothing_but_timing(expr: Expr, x: int, limit: int) -> None:
    assert build(expr).run_sync(inputs=x, max_concurrency=limit) == evaluate(expr, x)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), st.integers(-10, 10), st.integers(1, 12), st.integers(1, 3))
def test_a_run_crashed_anywhere_and_resumed_computes_the_same(expr: Expr, x: int, crash_at: int, limit: int) -> None:
    from railyard.store.memory import MemoryStore

    graph = build(expr)
    store = MemoryStore()

    async def crash_then_resume() -> int:
        try:
            return await graph.run(inputs=x, deps=CrashPlan(crash_at), store=store, run_id="r", max_concurrency=limit)
        except Crash:
            return await graph.resume(store, "r", deps=CrashPlan(None), max_concurrency=limit)

    assert asyncio.run(crash_then_resume()) == evaluate(expr, x)
