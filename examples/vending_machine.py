"""A vending machine as a state machine: coins go in, a product is chosen, the machine vends.

The states are nodes (`InsertCoin` → `CoinsInserted` → `SelectProduct` → `Purchase`),
the money and the choice live in `MachineState`, and the customer is a script passed as
the run's `deps`, so the example needs no keyboard. `Purchase` labels its edges with
`Annotated[..., Edge(label=...)]`; the labels show up in the mermaid diagram printed last.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from railyard import BaseNode, Edge, End, Graph, GraphRunContext

PRICES = {"water": 90, "soda": 125, "chips": 150}
"""What the machine sells, in cents."""


def money(cents: int) -> str:
    return f"${cents / 100:.2f}"


@dataclass
class MachineState:
    user_balance: int = 0
    """Money inserted and not yet spent, in cents."""
    product: str | None = None
    """The product the customer chose, once they have."""


@dataclass
class Customer:
    """Stands in for the person at the machine: reads each answer off a script."""

    script: list[str]

    def answer(self, prompt: str) -> str:
        reply = self.script.pop(0)
        print(f"    {prompt} {reply}")
        return reply


@dataclass
class Receipt:
    product: str
    price: int
    change: int


Ctx = GraphRunContext[MachineState, Customer]


@dataclass
class InsertCoin(BaseNode[MachineState, Customer]):
    async def run(self, ctx: Ctx) -> CoinsInserted:
        amount = ctx.deps.answer("Insert coins ($):")
        return CoinsInserted(round(float(amount) * 100))


@dataclass
class CoinsInserted(BaseNode[MachineState, Customer]):
    amount: int

    async def run(self, ctx: Ctx) -> SelectProduct | Purchase:
        ctx.state.user_balance += self.amount
        print(f"    balance is now {money(ctx.state.user_balance)}")
        if ctx.state.product is not None:
            return Purchase(ctx.state.product)
        return SelectProduct()


@dataclass
class SelectProduct(BaseNode[MachineState, Customer]):
    async def run(self, ctx: Ctx) -> Purchase:
        return Purchase(ctx.deps.answer("Choose a product:"))


@dataclass
class Purchase(BaseNode[MachineState, Customer, Receipt]):
    product: str

    async def run(
        self, ctx: Ctx
    ) -> (
        Annotated[End[Receipt], Edge(label="vend")]
        | Annotated[InsertCoin, Edge(label="not enough money")]
        | Annotated[SelectProduct, Edge(label="unknown product")]
    ):
        price = PRICES.get(self.product)
        if price is None:
            print(f"    no such product: {self.product!r}")
            return SelectProduct()
        ctx.state.product = self.product
        if ctx.state.user_balance < price:
            print(f"    {self.product} costs {money(price)}: insert {money(price - ctx.state.user_balance)} more")
            return InsertCoin()
        change = ctx.state.user_balance - price
        ctx.state.user_balance = 0
        print(f"    vending {self.product}, change {money(change)}")
        return End(Receipt(self.product, price, change))


vending_machine_graph: Graph[MachineState, Customer, Receipt] = Graph(
    nodes=[InsertCoin, CoinsInserted, SelectProduct, Purchase]
)


async def main() -> None:
    print("Menu:", ", ".join(f"{name} {money(price)}" for name, price in PRICES.items()))
    customer = Customer(script=["1.00", "caviar", "chips", "0.25", "0.50"])
    state = MachineState()
    async with vending_machine_graph.iter(InsertCoin(), state=state, deps=customer) as run:
        async for node in run:
            print("->", node)
    assert run.result is not None
    print("Result:", run.result.output)
    print("Final state:", state)
    print()
    print(vending_machine_graph.mermaid_code(start_node=InsertCoin))


if __name__ == "__main__":
    asyncio.run(main())
