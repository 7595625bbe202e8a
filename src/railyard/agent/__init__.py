"""The agent loop as a graph (in progress): messages, usage and limits so far.

The agent's nodes, models and tools will run on railyard's node graph runtime; this
package holds the parts that are done.
"""

from railyard.agent.exceptions import AgentRunError, ModelRetry, UnexpectedModelBehavior, UsageLimitExceeded, UserError

__all__ = ("AgentRunError", "ModelRetry", "UnexpectedModelBehavior", "UsageLimitExceeded", "UserError")
