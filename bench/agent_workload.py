"""One agent workload, run by `bench/agent.py` in railyard's or pydantic-ai's environment.

Each run asks a FunctionModel a question; its first answer calls one tool, its second
answers in text. The model is instant, so the time per run is the framework's overhead.

    python bench/agent_workload.py railyard|pydantic-ai RUNS WARMUP   # prints µs per run
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

if sys.argv[1] == "railyard":
    from railyard.agent import Agent
    from railyard.agent.messages import ModelResponse, TextPart, ToolCallPart
    from railyard.agent.models.function import FunctionModel
else:
    from pydantic_ai import Agent  # type: ignore[no-redef,import-not-found,unused-ignore]
    from pydantic_ai.messages import (  # type: ignore[no-redef,import-not-found,unused-ignore,assignment]
        ModelResponse,
        TextPart,
        ToolCallPart,
    )
    from pydantic_ai.models.function import FunctionModel  # type: ignore[no-redef,import-not-found,unused-ignore]


def model(messages: list[Any], info: Any) -> Any:
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart("get_capital", {"country": "France"})])
    return ModelResponse(parts=[TextPart("Paris")])


agent: Any = Agent(FunctionModel(model))


@agent.tool_plain
def get_capital(country: str) -> str:
    """The capital of a country."""
    return {"France": "Paris"}[country]


async def main(runs: int, warmup: int) -> None:
    for _ in range(warmup):
        await agent.run("What is the capital of France?")
    start = time.perf_counter()
    for _ in range(runs):
        result = await agent.run("What is the capital of France?")
    elapsed = time.perf_counter() - start
    assert result.data == "Paris"
    print(elapsed / runs * 1e6)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[2]), int(sys.argv[3])))
