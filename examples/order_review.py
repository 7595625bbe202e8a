"""Order processing where big orders wait for a person: railyard's flagship example.

Each order runs through a graph of nodes: `ValidateOrder` → `PriceOrder` → `Ship`, or
`Reject` when something is wrong. An order over $1,000 goes to `NeedsReview` instead,
and that node needs a human decision, so the run *pauses* there: every step is saved
to a JSON file by `FileStatePersistence`, and the script stops driving that run. Later a
reviewer approves the order, and the run is resumed from the file alone with
`Graph.iter_from_persistence` (it could as well be another process, days later).

Run it with `./dev demo` or `python examples/order_review.py`.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from railyard import BaseNode, Edge, End, EndSnapshot, FileStatePersistence, Graph, GraphRunContext

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


@dataclass
class ReviewDesk:
    """The runs' deps: decisions made by people, by order id."""

    decisions: dict[str, Decision] = field(default_factory=dict)


Ctx = GraphRunContext[OrderState, ReviewDesk]


@dataclass
class ValidateOrder(BaseNode[OrderState, ReviewDesk]):
    async def run(self, ctx: Ctx) -> PriceOrder | Reject:
        items = ctx.state.order.items
        unknown = [name for name in items if name not in CATALOG]
        if unknown:
            return Reject(f"unknown item {unknown[0]!r}")
        if not items or any(quantity <= 0 for quantity in items.values()):
            return Reject("an order needs at least one item")
        return PriceOrder()


@dataclass
class PriceOrder(BaseNode[OrderState, ReviewDesk]):
    async def run(self, ctx: Ctx) -> Ship | Annotated[NeedsReview, Edge(label=f"over ${REVIEW_LIMIT:,}")]:
        ctx.state.total = sum(CATALOG[name] * quantity for name, quantity in ctx.state.order.items.items())
        if ctx.state.total > REVIEW_LIMIT:
            return NeedsReview(total=ctx.state.total)
        return Ship()


@dataclass
class NeedsReview(BaseNode[OrderState, ReviewDesk]):
    """Waits for a person: the run pauses before this node until a decision is on the desk."""

    total: int

    async def run(
        self, ctx: Ctx
    ) -> Annotated[Ship, Edge(label="approved")] | Annotated[Reject, Edge(label="turned down")]:
        decision = ctx.deps.decisions.get(ctx.state.order.id)
        if decision is None:
            raise LookupError(f"order {ctx.state.order.id} has not been reviewed yet")
        if not decision.approved:
            return Reject(f"turned down by {decision.reviewer}: {decision.note}")
        ctx.state.approved_by = decision.reviewer
        return Ship()


@dataclass
class Ship(BaseNode[OrderState, ReviewDesk, str]):
    async def run(self, ctx: Ctx) -> End[str]:
        approval = f" (approved by {ctx.state.approved_by})" if ctx.state.approved_by else ""
        return End(f"shipped to {ctx.state.order.customer}, ${ctx.state.total:,}{approval}")


@dataclass
class Reject(BaseNode[OrderState, ReviewDesk, str]):
    reason: str

    async def run(self, ctx: Ctx) -> End[str]:
        return End(f"rejected: {self.reason}")


order_graph: Graph[OrderState, ReviewDesk, str] = Graph(nodes=[ValidateOrder, PriceOrder, NeedsReview, Ship, Reject])


async def show_file(path: Path) -> None:
    """What the run's JSON file holds: one snapshot per node, and the end once it has ended."""
    persistence: FileStatePersistence[OrderState, str] = FileStatePersistence(path)
    persistence.set_graph_types(order_graph)
    steps = [
        "end" if isinstance(snapshot, EndSnapshot) else f"{snapshot.node.get_node_id()} ({snapshot.status})"
        for snapshot in await persistence.load_all()
    ]
    print(f"     {path.name}: {', '.join(steps)}")


async def start(order: Order, folder: Path, desk: ReviewDesk) -> str | None:
    """Run an order until it ends, or until it needs a review; return how it ended, if it did."""
    items = ", ".join(f"{quantity} x {name}" for name, quantity in order.items.items())
    print(f"Order {order.id} from {order.customer}: {items}")
    path = folder / f"{order.id}.json"
    persistence: FileStatePersistence[OrderState, str] = FileStatePersistence(path)
    async with order_graph.iter(ValidateOrder(), state=OrderState(order), deps=desk, persistence=persistence) as run:
        async for node in run:
            print(f"  -> {node}")
            if isinstance(node, NeedsReview):
                print(f"  || paused: ${node.total:,} is over ${REVIEW_LIMIT:,}, so a person has to decide")
                await show_file(path)
                return None
    assert run.result is not None
    return run.result.output


async def resume(path: Path, desk: ReviewDesk) -> str:
    """Pick a paused run up from its file and run it to the end."""
    persistence: FileStatePersistence[OrderState, str] = FileStatePersistence(path)
    async with order_graph.iter_from_persistence(persistence, deps=desk) as run:
        async for node in run:
            print(f"  -> {node}")
    await show_file(path)
    assert run.result is not None
    return run.result.output


async def main() -> None:
    print("railyard demo: orders, with a pause for human review")
    print("=====================================================")
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
    # What the reviewer will decide, once asked.
    reviews = {
        "A-1002": Decision(reviewer="Dana", approved=True),
        "A-1004": Decision(reviewer="Dana", approved=False, note="over the customer's credit limit"),
    }
    desk = ReviewDesk()
    outcomes: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for order in orders:
            outcomes[order.id] = await start(order, folder, desk)
            print()
        waiting = [order_id for order_id, outcome in outcomes.items() if outcome is None]
        print(f"Waiting for review: {', '.join(waiting)}")
        print()
        for order_id in waiting:
            decision = desk.decisions[order_id] = reviews[order_id]
            verdict = "approves" if decision.approved else "turns down"
            why = f" ({decision.note})" if decision.note else ""
            print(f"{decision.reviewer} {verdict} {order_id}{why}. Resuming its run from {order_id}.json:")
            outcomes[order_id] = await resume(folder / f"{order_id}.json", desk)
            print()
    print("Summary:")
    for order_id, outcome in outcomes.items():
        print(f"  {order_id}: {outcome}")


if __name__ == "__main__":
    asyncio.run(main())
