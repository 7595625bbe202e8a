"""Small graphs shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from railyard import BaseNode, Edge, End, Graph, GraphRunContext


@dataclass
class CountDownState:
    counter: int


@dataclass
class CountDown(BaseNode[CountDownState, None, int]):
    async def run(self, ctx: GraphRunContext[CountDownState]) -> CountDown | End[int]:
        if ctx.state.counter <= 0:
            return End(ctx.state.counter)
        ctx.state.counter -= 1
        return CountDown()


count_down_graph = Graph(nodes=[CountDown])


@dataclass
class MyState:
    number: int
    log: list[str] = field(default_factory=list[str])


@dataclass
class Increment(BaseNode[MyState]):
    async def run(self, ctx: GraphRunContext[MyState]) -> Check42:
        ctx.state.number += 1
        ctx.state.log.append(f"inc {ctx.state.number}")
        return Check42()


@dataclass
class Check42(BaseNode[MyState, None, int]):
    async def run(self, ctx: GraphRunContext[MyState]) -> Annotated[Increment, Edge(label="is 42")] | End[int]:
        if ctx.state.number == 42:
            return Increment()
        return End(ctx.state.number)


never_42_graph = Graph(nodes=(Increment, Check42))


@dataclass
class Deps:
    greeting: str


@dataclass
class Greet(BaseNode[None, Deps, str]):
    name: str

    async def run(self, ctx: GraphRunContext[None, Deps]) -> End[str]:
        return End(f"{ctx.deps.greeting}, {self.name}!")


greet_graph = Graph(nodes=[Greet])
