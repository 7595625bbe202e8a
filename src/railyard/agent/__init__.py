"""The agent loop as a graph: an `Agent` whose runs are railyard node-graph runs.

`agent.iter(prompt)` gives an `AgentRun` to iterate node by node: `ModelRequestNode`,
`CallToolsNode`, ... and finally `End(FinalResult(...))`. Still to come: structured
results, more models, and durable agent runs.
"""

from railyard.agent._graph import CallToolsNode, FinalResult, ModelRequestNode
from railyard.agent.agent import Agent, AgentRun, AgentRunResult
from railyard.agent.context import RunContext
from railyard.agent.exceptions import AgentRunError, ModelRetry, UnexpectedModelBehavior, UsageLimitExceeded, UserError
from railyard.agent.tools import Tool, ToolDefinition

__all__ = (
    "Agent",
    "AgentRun",
    "AgentRunError",
    "AgentRunResult",
    "CallToolsNode",
    "FinalResult",
    "ModelRequestNode",
    "ModelRetry",
    "RunContext",
    "Tool",
    "ToolDefinition",
    "UnexpectedModelBehavior",
    "UsageLimitExceeded",
    "UserError",
)
