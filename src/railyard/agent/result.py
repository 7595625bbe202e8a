"""What an agent run ends with: `FinalResult` (in the graph's `End`), `AgentRunResult`, `StreamedRunResult`."""

from railyard.agent._graph import FinalResult
from railyard.agent.agent import AgentRunResult
from railyard.agent.streaming import StreamedRunResult

__all__ = ("AgentRunResult", "FinalResult", "StreamedRunResult")
