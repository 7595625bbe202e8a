"""Graphs the conformance suite and the crash test run: small, deterministic, typed richly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pydantic

from railyard.graph import Graph
from railyard.nodes import BaseNode, End, GraphRunContext
from railyard.testing.crash import CrashSubject

__all__ = (
    "Color",
    "CountTo",
    "CrashState",
    "Effects",
    "Fail",
    "FailPlan",
    "FanOutState",
    "Mixed",
    "Point",
    "RichState",
    "Tick",
    "count_graph",
    "crash_graph",
    "crash_subject",
    "fan_out_graph",
    "fan_out_subject",
    "map_graph",
    "rich_graph",
)


class Color(Enum):
    """An enum, to check enums round-trip."""

    RED = "red"
    GREEN = "green"


class Point(pydantic.BaseModel):
    """A pydantic model, to check models round-trip."""

    x: int
    y: float
    label: str | None = None


@dataclass
class CrashState:
    """The state of the crash test's graph: a count and a checksum of every step."""

    count: int = 0
    checksum: int = 0


@dataclass
class RichState:
    """A state with every kind of field a store must round-trip."""

    count: int = 0
    when: datetime = field(default_factory=lambda: datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    color: Color = Color.RED
    points: list[Point] = field(default_factory=list[Point])
    tags: dict[str, int | str] = field(default_factory=dict[str, int | str])
    choice: Literal["a", "b"] | None = None
    nested: CrashState | None = None


@dataclass
class Mixed(BaseNode[RichState, None, Point]):
    """A node with fields of several kinds; adds a point per step, then ends with the last."""

    steps: int
    color: Color = Color.GREEN
    when: datetime | None = None
    fail_at: int | None = None

    async def run(self, ctx: GraphRunContext[RichState, None]) -> Mixed | Fail | End[Point]:
        state = ctx.state
        if self.fail_at is not None and state.count == self.fail_at:
            return Fail(reason=f"asked to fail at {self.fail_at}")
        if state.count >= self.steps:
            return End(state.points[-1] if state.points else Point(x=0, y=0.0))
        state.count += 1
        state.points.append(Point(x=state.count, y=state.count / 2, label=self.color.value))
        state.tags[f"t{state.count}"] = state.count if state.count % 2 else str(state.count)
        state.color = self.color
        state.choice = "a" if state.count % 2 else "b"
        return Mixed(self.steps, Color.RED if self.color is Color.GREEN else Color.GREEN, self.when, self.fail_at)


@dataclass
class Fail(BaseNode[RichState, None, Point]):
    """Raises: to check a failed step is recorded."""

    reason: str

    async def run(self, ctx: GraphRunContext[RichState, None]) -> End[Point]:
        raise RuntimeError(self.reason)


rich_graph = Graph(nodes=(Mixed, Fail), name="rich_graph")


@dataclass
class CountTo(BaseNode[CrashState, None, int]):
    """Counts up to `target`, one step at a time."""

    target: int

    async def run(self, ctx: GraphRunContext[CrashState, None]) -> CountTo | End[int]:
        if ctx.state.count >= self.target:
            return End(ctx.state.count)
        ctx.state.count += 1
        return CountTo(self.target)


count_graph = Graph(nodes=(CountTo,), name="count_graph")


@dataclass
class Effects:
    """Where `Tick` records its side effect: one line per attempt, keyed by the step id."""

    path: str

    def record(self, step_id: str) -> None:
        """Append `step_id` to the effects file, durably (as a real side effect would be)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{step_id}\n".encode())
        finally:
            os.close(fd)


@dataclass
class Tick(BaseNode[CrashState, Effects, int]):
    """One step of the crash test: a side effect keyed by the step id, then the next tick."""

    target: int

    async def run(self, ctx: GraphRunContext[CrashState, Effects]) -> Tick | End[int]:
        state = ctx.state
        if state.count >= self.target:
            return End(state.checksum)
        ctx.deps.record(ctx.step_id)
        state.count += 1
        state.checksum = (state.checksum * 31 + state.count) % 1_000_000_007
        return Tick(self.target)


crash_graph = Graph(nodes=(Tick,), name="crash_graph")


def crash_subject(workdir: Path) -> CrashSubject:
    """The crash test's subject: 300 ticks, each writing its step id to `workdir/effects.log`."""
    return CrashSubject(crash_graph, Tick(300), CrashState(), Effects(str(workdir / "effects.log")))


@dataclass
class FanOutState:
    """What the fan-out graph's branches add to as they finish (the same whatever their order)."""

    squared: int = 0
    total: int = 0


def _fan_out_graph() -> Any:
    from railyard.builder import GraphBuilder, StepContext, reduce_sum

    g = GraphBuilder(name="fan_out_graph", state_type=FanOutState, deps_type=Effects, input_type=int, output_type=int)

    @g.step
    async def numbers(ctx: StepContext[FanOutState, Effects, int]) -> list[int]:
        return list(range(ctx.inputs))

    @g.step
    async def square(ctx: StepContext[FanOutState, Effects, int]) -> int:
        ctx.deps.record(ctx.step_id)  # the side effect, keyed by the step id
        await anyio.lowlevel.checkpoint()  # let the branches interleave
        ctx.state.squared += 1
        return ctx.inputs * ctx.inputs

    @g.step
    async def finish(ctx: StepContext[FanOutState, Effects, int]) -> int:
        ctx.state.total = ctx.inputs
        return ctx.inputs

    total = g.join(reduce_sum, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).to(numbers),
        g.edge_from(numbers).map(downstream_join_id="total", max_concurrency=4).to(square),
        g.edge_from(square).to(total),
        g.edge_from(total).to(finish),
        g.edge_from(finish).to(g.end_node),
    )
    return g.build()


fan_out_graph = _fan_out_graph()
"""A builder graph that maps `square` over `range(n)` and sums the squares."""


def fan_out_subject(workdir: Path) -> CrashSubject:
    """The builder crash test's subject: 150 squares, 4 at a time, each writing its step id to `workdir/effects.log`."""
    return CrashSubject(fan_out_graph, state=FanOutState(), deps=Effects(str(workdir / "effects.log")), inputs=150)


@dataclass
class FailPlan:
    """Makes `map_graph`'s step fail once, on item `fail_at`, and counts every call per item."""

    fail_at: int | None = None
    calls: dict[int, int] = field(default_factory=dict[int, int])


def _map_graph() -> Any:
    from railyard.builder import GraphBuilder, StepContext, reduce_sum

    g = GraphBuilder(name="map_graph", deps_type=FailPlan, input_type=int, output_type=int)

    @g.step
    async def items(ctx: StepContext[None, FailPlan, int]) -> list[int]:
        return list(range(ctx.inputs))

    @g.step
    async def cube(ctx: StepContext[None, FailPlan, int]) -> int:
        plan = ctx.deps
        plan.calls[ctx.inputs] = plan.calls.get(ctx.inputs, 0) + 1
        await anyio.lowlevel.checkpoint()
        if ctx.inputs == plan.fail_at:
            raise RuntimeError(f"asked to fail at item {ctx.inputs}")
        return ctx.inputs**3

    total = g.join(reduce_sum, initial=0, node_id="total")
    g.add(
        g.edge_from(g.start_node).to(items),
        g.edge_from(items).map(downstream_join_id="total", max_concurrency=2).to(cube),
        g.edge_from(cube).to(total),
        g.edge_from(total).to(g.end_node),
    )
    return g.build()


map_graph = _map_graph()
"""A builder graph that maps `cube` over `range(n)`, two at a time, and sums the cubes."""
