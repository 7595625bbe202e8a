"""A graph to crash-test: each tick writes a side effect keyed by its step id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.testing.crash import CrashSubject


@dataclass
class Ticks:
    count: int = 0


@dataclass
class Ledger:
    path: Path

    def record(self, step_id: str) -> None:
        with self.path.open("a") as file:  # a real side effect: the idempotency key goes with it
            file.write(f"{step_id}\n")


@dataclass
class Tick(BaseNode[Ticks, Ledger, int]):
    target: int

    async def run(self, ctx: GraphRunContext[Ticks, Ledger]) -> Tick | End[int]:
        if ctx.state.count >= self.target:
            return End(ctx.state.count)
        ctx.deps.record(ctx.step_id)
        ctx.state.count += 1
        return Tick(self.target)


ticks = Graph(nodes=[Tick], name="ticks")


def subject(workdir: Path) -> CrashSubject:
    """What `crash_test` runs: the graph, its start, state and dependencies."""
    return CrashSubject(ticks, start=Tick(50), state=Ticks(), deps=Ledger(workdir / "ledger.txt"))
