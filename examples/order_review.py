"""Order processing where big orders wait for a person: railyard's flagship example.

Each order runs through a graph of nodes: `ValidateOrder` → `PriceOrder` → `Ship`, or
`Reject` when something is wrong. An order over $1,000 goes to `NeedsReview`, which asks
for a person's decision with `ctx.wait_for`: the run is stored *suspended* in a SQLite
file, and a worker, which drives every run that is ready, leaves it alone. Later a
reviewer answers with `signal` (it could be another process, days later), the run is
ready again, and the worker finishes it.

Run it with `./dev demo` or `python examples/order_review.py`.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from railyard import (
    BaseNode,
    DurablePersistence,
    Edge,
    End,
    EndSnapshot,
    Graph,
    GraphRunContext,
    SqliteStore,
    run_worker,
)
from railyard.suspension import RunSuspended, signal, waiting_for

CATALOG = {"widget": 3, "gadget": 20, "gizmo": 450}
"""Prices in dollars."""
REVIEW_LIMIT = 1_000
"""Orders over this many dollars need a person's approval."""


@dataclass
class Order:
    id: str
    customer: str
    items: dict[str, int]
    """Quantity of each item."""


@dataclass
class OrderState:
    order: Order
    total: int = 0
    approved_by: str | None = None


@dataclass
class Decision:
    reviewer: str
    approved: bool
    note: str = ""


Ctx = GraphRunContext[OrderState]


@dataclass
class ValidateOrder(BaseNode[OrderState]):
    async def run(self, ctx: Ctx) -> PriceOrder | Reject:
        items = ctx.state.order.items
        unknown = [name for name in items if name not in CATALOG]
        if unknown:
            return Reject(f"unknown item {unknown[0]!r}")
        if not items or any(quantity <= 0 for quantity in items.values()):
            return Reject("an order needs at least one item")
        return PriceOrder()


@dataclass
class PriceOrder(BaseNode[OrderState]):
    async def run(self, ctx: Ctx) -> Ship | Annotated[NeedsReview, Edge(label=f"over ${REVIEW_LIMIT:,}")]:
        ctx.state.total = sum(CATALOG[name] * quantity for name, quantity in ctx.state.order.items.items())
        if ctx.state.total > REVIEW_LIMIT:
            return NeedsReview(total=ctx.state.total)
        return Ship()


@dataclass
class NeedsReview(BaseNode[OrderState]):
    """Waits for a person: the run is suspended here until a reviewer's decision comes in."""

    total: int

    async def run(
        self, ctx: Ctx
    ) -> Annotated[Ship, Edge(label="approved")] | Annotated[Reject, Edge(label="turned down")]:
        prompt = f"Approve order {ctx.state.order.id} for ${self.total:,}?"
        decision = await ctx.wait_for("review", Decision, prompt=prompt)
        if not decision.approved:
            return Reject(f"turned down by {decision.reviewer}: {decision.note}")
        ctx.state.approved_by = decision.reviewer
        return Ship()


@dataclass
class Ship(BaseNode[OrderState, None, str]):
    async def run(self, ctx: Ctx) -> End[str]:
        approval = f" (approved by {ctx.state.approved_by})" if ctx.state.approved_by else ""
        return End(f"shipped to {ctx.state.order.customer}, ${ctx.state.total:,}{approval}")


@dataclass
class Reject(BaseNode[OrderState, None, str]):
    reason: str

    async def run(self, ctx: Ctx) -> End[str]:
        return End(f"rejected: {self.reason}")


order_graph: Graph[OrderState, None, str] = Graph(
    nodes=[ValidateOrder, PriceOrder, NeedsReview, Ship, Reject], name="orders"
)


async def outcome(store: SqliteStore, run_id: str) -> str:
    """How a run ended, read from the store."""
    persistence: DurablePersistence[OrderState, str] = DurablePersistence(store, run_id)
    persistence.set_graph_types(order_graph)
    last = (await persistence.load_all())[-1]
    assert isinstance(last, EndSnapshot)
    return last.result.data


async def show_runs(store: SqliteStore) -> None:
    """The runs in the store: status, steps, the node each reached, and what a suspended one waits for."""
    for info in await store.runs():
        waits = ", ".join(f"{w.key!r}: {w.prompt}" for w in await waiting_for(store, info.run_id))
        line = f"  {info.run_id}  {info.status.value:<9}  {info.steps} steps, at {info.last_node}"
        print(line + (f"  waits for {waits}" if waits else ""))


async def main() -> None:
    print("railyard demo: orders, with a wait for human review")
    print("====================================================")
    print()
    print("The graph, as mermaid (paste it into https://mermaid.live to draw it):")
    print()
    print(order_graph.mermaid_code(start_node=ValidateOrder))
    print()
    orders = [
        Order("A-1001", "Ada", {"widget": 4, "gadget": 1}),
        Order("A-1002", "Bob", {"gizmo": 3}),
        Order("A-1003", "Cleo", {"widget": 2, "flux capacitor": 1}),
        Order("A-1004", "Dev", {"gadget": 60}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "orders.db")
        for order in orders:
            items = ", ".join(f"{quantity} x {name}" for name, quantity in order.items.items())
            print(f"Order {order.id} from {order.customer}: {items}")
            try:
                result = await order_graph.run(ValidateOrder(), state=OrderState(order), store=store, run_id=order.id)
                print(f"  -> {result.output}")
            except RunSuspended as suspended:
                print(f"  || suspended at NeedsReview: {suspended.waiting.prompt}")
        print()
        print("The store (orders.db):")
        await show_runs(store)
        print()
        ready = await run_worker([order_graph], store)
        print(f"A worker drives the runs that are ready: {ready} (the suspended ones wait for their review)")
        print()
        await signal(store, "A-1002", "review", Decision(reviewer="Dana", approved=True))
        print("Dana approves A-1002.")
        await signal(store, "A-1004", "review", Decision("Dana", False, "over the customer's credit limit"))
        print("Dana turns down A-1004 (over the customer's credit limit).")
        print(f"The worker takes the answered runs up: {await run_worker([order_graph], store)}")
        print()
        print("The store (orders.db):")
        await show_runs(store)
        print()
        print("Summary:")
        for order in orders:
            print(f"  {order.id}: {await outcome(store, order.id)}")
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
