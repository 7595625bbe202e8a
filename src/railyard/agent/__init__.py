"""The agent loop as a graph (in progress): messages, usage and limits, the run context and tools so far.

The agent's nodes, models and tools will run on railyard's node graph runtime; this
package holds the parts that are done.
"""

from railyard.agent.context import RunContext
from railyard.agent.exceptions import AgentRunError, ModelRetry, UnexpectedModelBehavior, UsageLimitExceeded, UserError
from railyard.agent.tools import Tool, ToolDefinition

__all__ = (
    "AgentRunError",
    "ModelRetry",
    "RunContext",
    "Tool",
    "ToolDefinition",
    "UnexpectedModelBehavior",
    "UsageLimitExceeded",
    "UserError",
)
