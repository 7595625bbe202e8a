"""Graphs driven in child processes by the triage tests: one that a test kills, one that another process cancels."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import anyio

from railyard import BaseNode, End, Graph, GraphRunContext, SqliteStore
from railyard.exceptions import RunCancelled

__all__ = ("Stick", "Tick", "main", "sticky", "ticks")


@dataclass
class Tick(BaseNode[None, None, int]):
    """Counts to 1,000, one step per number."""

    n: int = 0

    async def run(self, ctx: GraphRunContext) -> Tick | End[int]:
        if self.n == 20:
            print("under way", flush=True)  # the test asks to cancel the run now,
            await anyio.to_thread.run_sync(sys.stdin.readline)  # and lets it go on once it has
        return Tick(self.n + 1) if self.n < 1000 else End(self.n)


ticks = Graph(nodes=[Tick], name="ticks")


@dataclass
class Stick(BaseNode[None, str | None, str]):
    """Given deps, says it is in its step and never finishes; without, ends at once."""

    async def run(self, ctx: GraphRunContext[None, str | None]) -> End[str]:
        if ctx.deps is not None:
            print("in the step", flush=True)
            await anyio.sleep_forever()
        return End("finished by another")


sticky = Graph(nodes=[Stick], name="sticky")


async def main(role: str, path: str, argument: str) -> None:
    """`tick`: drive run `argument` of `ticks` until it ends or is cancelled; `stick`: drive `sticky` into its step."""
    store = SqliteStore(path, lease=0.5)
    try:
        if role == "tick":
            try:
                await ticks.run(Tick(), store=store, run_id=argument)
                print("ended", flush=True)
            except RunCancelled as cancelled:
                print(f"cancelled: {cancelled.reason}", flush=True)
        else:
            await sticky.run(Stick(), deps=argument, store=store, run_id="stuck")  # never returns
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
