"""An agent run for the durable tests, driven as a script in its own process.

    python -m tests.support.agent_subject STORE_URL RUN_ID start|resume LOG [--die-in-request N]

Every model request and tool call appends a line to LOG, so the test can count how
often each ran across processes. `--die-in-request N` kills the process (no cleanup)
in the middle of the N-th model request of this process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from railyard.agent import Agent, RunContext
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.durable import DurablePersistence
from railyard.store.urls import open_store

LOG = Path(os.devnull)
DIE_IN_REQUEST: int | None = None
requests_here = [0]


def log(line: str) -> None:
    with LOG.open("a") as file:
        file.write(line + "\n")


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    requests_here[0] += 1
    returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    log(f"request {len(returns)}")
    if requests_here[0] == DIE_IN_REQUEST:
        os._exit(3)
    if len(returns) < 2:
        return ModelResponse(parts=[ToolCallPart("add", {"n": len(returns) + 1}, f"call-{len(returns)}")])
    return ModelResponse(parts=[TextPart(f"total {returns[-1].content}")])


agent = Agent(FunctionModel(model), system_prompt="Count.", deps_type=list)


@agent.tool
def add(ctx: RunContext[list[int]], n: int) -> int:
    log(f"tool add {n}")
    ctx.deps.append(n)
    return n * 10


async def main(url: str, run_id: str, command: str) -> None:
    persistence = DurablePersistence(open_store(url), run_id)
    if command == "start":
        result = await agent.run("Add things up", deps=[], persistence=persistence)
    else:
        result = await agent.resume(persistence, deps=[])
    print(result.data, result.usage().requests)


if __name__ == "__main__":
    url, run_id, command, LOG = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    if len(sys.argv) > 6 and sys.argv[5] == "--die-in-request":
        DIE_IN_REQUEST = int(sys.argv[6])
    asyncio.run(main(url, run_id, command))
