"""A durable agent run: the process dies mid-run, another one finishes it without repeating a step.

A travel agent finds a flight, books it, and answers with a structured `Itinerary`.
Every step of the run is stored in a SQLite database (railyard's embedded store), so
when the first process is killed right after the booking, a second process resumes the
run from its next node: the booking tool is not called again, and the result is the
one an uninterrupted run gives.

    python examples/agent_trip.py trips.db start T-1 --die-after 5
    python examples/agent_trip.py trips.db resume T-1

The model is a scripted `FunctionModel` so the example runs offline; with
`Agent("openai:gpt-4o", ...)` the same code drives a real model.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from pydantic import BaseModel

from railyard.agent import Agent, RunContext
from railyard.agent.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.durable import DurablePersistence
from railyard.store.sqlite import SqliteStore


class Itinerary(BaseModel):
    """The trip as booked."""

    city: str
    flight: str
    booking_ref: str


def planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A scripted model: find a flight, book it, then give the itinerary."""
    last = messages[-1]
    returned = {p.tool_name: p.content for p in last.parts if isinstance(p, ToolReturnPart)}
    if isinstance(last, ModelRequest) and "find_flight" in returned:
        return ModelResponse(parts=[ToolCallPart("book", {"flight": returned["find_flight"]}, "call-2")])
    if "book" in returned:
        itinerary = {"city": "Lisbon", "flight": "TP-1351", "booking_ref": returned["book"]}
        return ModelResponse(parts=[ToolCallPart("final_result", itinerary, "call-3")])
    return ModelResponse(parts=[ToolCallPart("find_flight", {"city": "Lisbon"}, "call-1")])


agent = Agent(FunctionModel(planner), result_type=Itinerary, deps_type=Path, system_prompt="You book trips.")


@agent.tool_plain
def find_flight(city: str) -> str:
    """Find the next flight to `city`."""
    return "TP-1351"


@agent.tool
def book(ctx: RunContext[Path], flight: str) -> str:
    """Book `flight` and return the booking reference."""
    with ctx.deps.open("a") as ledger:  # a real side effect: one line per booking
        ledger.write(f"booked {flight}\n")
    return f"REF-{flight}"


async def start(db: Path, run_id: str, die_after: int | None) -> None:
    persistence = DurablePersistence(SqliteStore(db), run_id)
    ledger = db.with_suffix(".bookings")
    async with agent.iter("Book me a trip to Lisbon", deps=ledger, persistence=persistence) as run:
        steps = 0
        async for node in run:
            steps += 1
            print(f"step {steps}: {type(node).__name__}")
            if steps == die_after:
                print("the process dies here")
                sys.stdout.flush()
                os._exit(1)  # no cleanup, no goodbye: like a crash or a kill -9
    assert run.result is not None
    print(run.result.data)


async def resume(db: Path, run_id: str) -> None:
    ledger = db.with_suffix(".bookings")
    result = await agent.resume(DurablePersistence(SqliteStore(db), run_id), deps=ledger)
    print(result.data)
    print(f"requests: {result.usage().requests}")
    print(f"bookings: {ledger.read_text().splitlines()}")


def main(argv: list[str]) -> None:
    db, command, run_id = Path(argv[0]), argv[1], argv[2]
    if command == "start":
        die_after = int(argv[4]) if len(argv) > 4 and argv[3] == "--die-after" else None
        asyncio.run(start(db, run_id, die_after))
    elif command == "resume":
        asyncio.run(resume(db, run_id))
    else:
        raise SystemExit(f"unknown command {command!r}: use start or resume")


if __name__ == "__main__":
    main(sys.argv[1:])
