"""The agent loop as a graph: iterate over an agent run node by node.

The model here is a `FunctionModel` that answers "Paris", so the example needs no
network or API key; swap in `OpenAIModel("gpt-4o")` (or `Agent("openai:gpt-4o")`) to
ask a real model the same question.

    python examples/agent_capital.py
"""

from __future__ import annotations

import asyncio

from railyard.agent import Agent
from railyard.agent.messages import ModelMessage, ModelResponse, TextPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel


def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart("Paris")])


agent = Agent(FunctionModel(answer))


async def main() -> None:
    nodes = []
    async with agent.iter("What is the capital of France?") as agent_run:
        async for node in agent_run:
            nodes.append(node)
    print(nodes)
    assert agent_run.result is not None
    print(agent_run.result.data)
    print(agent_run.usage())


if __name__ == "__main__":
    asyncio.run(main())
