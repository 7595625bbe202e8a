"""The agent loop as a graph: an `Agent` whose runs are railyard node-graph runs.

`agent.iter(prompt)` gives an `AgentRun` to iterate node by node: `ModelRequestNode`,
`CallToolsNode`, ... and finally `End(FinalResult(...))`. The nodes are `BaseNode`s
of `agent_graph`, so stores, resume, tracing and diagrams work on agent runs as on any
other railyard run.
"""

from railyard.agent._graph import CallToolsNode, EndStrategy, FinalResult, ModelRequestNode, UserPromptNode
from railyard.agent.agent import Agent, AgentRun, AgentRunResult, capture_run_messages
from railyard.agent.content import AudioUrl, BinaryContent, DocumentUrl, ImageUrl
from railyard.agent.context import RunContext
from railyard.agent.exceptions import (
    AgentRunError,
    FallbackExceptionGroup,
    ModelConnectionError,
    ModelHTTPError,
    ModelRetry,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
    UserError,
)
from railyard.agent.tools import Tool, ToolDefinition

__all__ = (
    "Agent",
    "AgentRun",
    "AgentRunError",
    "AgentRunResult",
    "AudioUrl",
    "BinaryContent",
    "CallToolsNode",
    "DocumentUrl",
    "FallbackExceptionGroup",
    "EndStrategy",
    "FinalResult",
    "ImageUrl",
    "ModelConnectionError",
    "ModelHTTPError",
    "ModelRequestNode",
    "ModelRetry",
    "RunContext",
    "Tool",
    "ToolDefinition",
    "UnexpectedModelBehavior",
    "UsageLimitExceeded",
    "UserError",
    "UserPromptNode",
    "capture_run_messages",
)
