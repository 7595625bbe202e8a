"""What an agent run ends with: `FinalResult` (in the graph's `End`) and `AgentRunResult`."""

from railyard.agent._graph import FinalResult
from railyard.agent.agent import AgentRunResult

__all__ = ("AgentRunResult", "FinalResult")
