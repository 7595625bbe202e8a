"""Graphs the inspector's tests show, answer, resume and fork (`tests.support.inspector_subjects:NAME`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum

import anyio
import anyio.to_thread
import pydantic

from railyard import BaseNode, End, Graph, GraphRunContext

__all__ = ("Ask", "Awkward", "Order", "Verdict", "decide", "notes", "ticker", "tricky")


class Verdict(StrEnum):
    ship = "ship"
    hold = "hold"


class Order(pydantic.BaseModel):
    """What a person decides about an order."""

    verdict: Verdict
    quantity: int = pydantic.Field(ge=1, description="How many to ship")
    rush: bool = False
    note: str = ""


@dataclass
class DecideState:
    order_id: int = 7
    decided: list[str] = field(default_factory=list)


@dataclass
class Prepare(BaseNode[DecideState, None, str]):
    async def run(self, ctx: GraphRunContext[DecideState]) -> Decide:
        ctx.state.decided.append("prepared")
        return Decide()


@dataclass
class Decide(BaseNode[DecideState, None, str]):
    async def run(self, ctx: GraphRunContext[DecideState]) -> End[str]:
        order = await ctx.wait_for("order", Order, prompt="Ship order 7?")
        ctx.state.decided.append(f"{order.verdict.value} x{order.quantity}")
        return End(f"{order.verdict.value} {order.quantity}")


decide = Graph(nodes=[Prepare, Decide], state_type=DecideState, name="decide")


@dataclass
class NoteState:
    note: str = ""


@dataclass
class Scribble(BaseNode[NoteState, None, str]):
    text: str = "<script>window.__pwned = 1; alert('pwned')</script>"

    async def run(self, ctx: GraphRunContext[NoteState]) -> End[str]:
        ctx.state.note = self.text
        return End(self.text)


notes = Graph(nodes=[Scribble], state_type=NoteState, name="notes")


@dataclass
class TickState:
    left: int = 3
    ticks: list[int] = field(default_factory=list)


@dataclass
class Tick(BaseNode[TickState, None, int]):
    """Each step waits for a line on stdin (the test's go-ahead), then counts down."""

    async def run(self, ctx: GraphRunContext[TickState]) -> Tick | End[int]:
        print(f"tick {ctx.state.left} waits", file=sys.stderr, flush=True)
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:  # the test closed stdin: stop here, resumable
            await anyio.sleep_forever()
        ctx.state.ticks.append(ctx.state.left)
        ctx.state.left -= 1
        return Tick() if ctx.state.left > 0 else End(len(ctx.state.ticks))


ticker = Graph(nodes=[Tick], state_type=TickState, name="ticker")


class Awkward(pydantic.BaseModel):
    """A payload whose field names are the answer form's own, one that may be null, one with a default."""

    key: str
    form_token: str
    maybe: int | None
    ratio: float = 1.0


@dataclass
class Ask(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        answer = await ctx.wait_for("question", Awkward)
        return End(answer.key)


tricky = Graph(nodes=[Ask], name="tricky")
