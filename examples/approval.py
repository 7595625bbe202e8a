"""Order approval with a human in the loop: each command is a separate process.

Large orders stop at `AwaitApproval` until a person decides; the run waits in a SQLite
database (railyard's embedded durable store), and the decision resumes it later, in
another process. `reopen` goes back in time: it forks the run from the step before the
decision, under a new id, and leaves the original untouched.

    python examples/approval.py orders.db submit A-7 2500
    python examples/approval.py orders.db list
    python examples/approval.py orders.db decide A-7 approve "looks fine"
    python examples/approval.py orders.db reopen A-7
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from railyard import BaseNode, Edge, End, Graph, GraphRunContext
from railyard.durable import DurablePersistence
from railyard.exceptions import PersistenceError
from railyard.store.sqlite import SqliteStore

LIMIT = 1000


@dataclass
class Order:
    order_id: str
    amount: int
    log: list[str] = field(default_factory=list[str])


@dataclass
class Validate(BaseNode[Order, None, str]):
    async def run(self, ctx: GraphRunContext[Order]) -> AutoApprove | AwaitApproval | End[str]:
        order = ctx.state
        if order.amount <= 0:
            return End(f"{order.order_id} rejected: the amount must be positive")
        order.log.append(f"validated ${order.amount}")
        return AutoApprove() if order.amount <= LIMIT else AwaitApproval()


@dataclass
class AutoApprove(BaseNode[Order, None, str]):
    async def run(self, ctx: GraphRunContext[Order]) -> Fulfil:
        ctx.state.log.append(f"approved automatically (at most ${LIMIT})")
        return Fulfil()


@dataclass
class AwaitApproval(BaseNode[Order, None, str]):
    """Waits for a person: the run stops here until `decide` gives a decision."""

    decision: str | None = None
    note: str = ""

    async def run(
        self, ctx: GraphRunContext[Order]
    ) -> Annotated[Fulfil, Edge(label="approve")] | Annotated[End[str], Edge(label="reject")]:
        suffix = f": {self.note}" if self.note else ""
        verdict = "approved" if self.decision == "approve" else "rejected"
        ctx.state.log.append(f"{verdict} by a person{suffix}")
        if self.decision == "approve":
            return Fulfil()
        return End(f"{ctx.state.order_id} rejected")


@dataclass
class Fulfil(BaseNode[Order, None, str]):
    async def run(self, ctx: GraphRunContext[Order]) -> End[str]:
        ctx.state.log.append("fulfilled")
        return End(f"{ctx.state.order_id} fulfilled: ${ctx.state.amount}")


approval_graph: Graph[Order, None, str] = Graph(nodes=(Validate, AutoApprove, AwaitApproval, Fulfil))


class UsageError(Exception):
    """A command the user must correct: printed, exit status 1."""


def needs_person(node: object) -> bool:
    return isinstance(node, AwaitApproval) and node.decision is None


async def drive(
    persistence: DurablePersistence[Order, str], *, start: Order | None, decision: AwaitApproval | None
) -> None:
    """Run (or resume) until the end, or until a person is needed."""
    if start is not None:
        context = approval_graph.iter(Validate(), state=start, persistence=persistence)
    else:
        context = approval_graph.iter_from_persistence(persistence)
    async with context as run:
        node = run.next_node
        if decision is not None:
            if not needs_person(node):
                raise UsageError(f"{persistence.run_id} is not waiting for a decision")
            node = await run.next(decision)  # the person's decision runs in place of the waiting node
        while not isinstance(node, End):
            if needs_person(node):
                print(f"{run.state.order_id} waits for approval (${run.state.amount} is over ${LIMIT})")
                return
            node = await run.next(node)
        print(node.data)
        print("  " + "; ".join(run.state.log))


async def main(database: Path, command: str, args: list[str]) -> None:
    store = SqliteStore(database)
    try:
        if command == "submit" and len(args) == 2:
            order_id, amount = args[0], int(args[1])
            await drive(DurablePersistence(store, order_id), start=Order(order_id, amount), decision=None)
        elif command == "decide" and len(args) in (2, 3) and args[1] in ("approve", "reject"):
            note = args[2] if len(args) == 3 else ""
            decision = AwaitApproval(decision=args[1], note=note)
            await drive(DurablePersistence(store, args[0]), start=None, decision=decision)
        elif command == "list" and not args:
            for info in await store.runs():
                print(f"{info.run_id}: {info.status.value}, {info.steps} steps, last node {info.last_node}")
        elif command == "reopen" and len(args) == 1:
            # the step before the decision: the one that led to AwaitApproval
            reader: DurablePersistence[Order, str] = DurablePersistence(store, args[0])
            reader.set_graph_types(approval_graph)
            snapshots = await reader.load_all()
            waiting = [i for i, s in enumerate(snapshots) if isinstance(s.node, AwaitApproval)]
            if not waiting:
                raise UsageError(f"{args[0]} never waited for a decision")
            new_id = await approval_graph.fork(store, args[0], at_step=waiting[0], new_run_id=f"{args[0]}-reopened")
            print(f"{args[0]} reopened as {new_id}; it waits for a decision again")
        else:
            raise UsageError(f"unknown command: {' '.join([command, *args])}")
    except PersistenceError as error:
        raise UsageError(str(error)) from None
    finally:
        await store.aclose()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
