"""The graph of the three-process approval test: a run waits in one process, a worker and a signaller are others."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import pydantic

from railyard import BaseNode, End, Graph, GraphRunContext, SqliteStore, run_worker
from railyard.suspension import RunSuspended, signal

__all__ = ("Approval", "Review", "approvals", "main")


class Approval(pydantic.BaseModel):
    approved: bool
    by: str


@dataclass
class Review(BaseNode[None, None, str]):
    async def run(self, ctx: GraphRunContext) -> End[str]:
        answer = await ctx.wait_for("approval", Approval, prompt="Approve?")
        return End(f"approved by {answer.by}" if answer.approved else "refused")


approvals = Graph(nodes=[Review], name="approvals")


async def main(role: str, path: str) -> None:
    """`start` a run until it waits, `work` until one run is driven to its end, or `signal` it."""
    store = SqliteStore(path)
    if role == "start":
        try:
            await approvals.run(Review(), store=store, run_id="r1")
        except RunSuspended:
            print("suspended", flush=True)
    elif role == "work":
        print("working", flush=True)
        while (await store.runs())[0].status.value != "ended":
            await run_worker([approvals], store, max_runs=1, idle_timeout=None, poll_interval=0.05)
        print("ended", flush=True)
    else:
        await signal(store, "r1", "approval", {"approved": True, "by": "Dana"})
        print("signalled", flush=True)
    await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
