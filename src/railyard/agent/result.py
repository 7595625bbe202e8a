"""What an agent run ends with: `FinalResult` (in the graph's `End`), `AgentRunResult`, `StreamedRunResult`.

Also the names pydantic-ai's `result` module offers beside them: `AgentStream` (a
streamed model request), `Usage`, `UsageLimits`, and the result validator types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias

from typing_extensions import TypeVar

from railyard.agent._graph import FinalResult
from railyard.agent._stream import AgentStream
from railyard.agent.agent import AgentRunResult
from railyard.agent.context import RunContext
from railyard.agent.events import AgentStreamEvent, FinalResultEvent
from railyard.agent.streaming import StreamedRunResult
from railyard.agent.usage import Usage, UsageLimits

__all__ = (
    "AgentDepsT",
    "AgentRunResult",
    "AgentStream",
    "AgentStreamEvent",
    "FinalResult",
    "FinalResultEvent",
    "ResultDataT",
    "ResultDataT_inv",
    "ResultValidatorFunc",
    "RunContext",
    "StreamedRunResult",
    "T",
    "Usage",
    "UsageLimits",
)

T = TypeVar("T")
"""An invariant type variable."""
AgentDepsT = TypeVar("AgentDepsT", default=None, contravariant=True)
"""The type of a run's dependencies."""
ResultDataT = TypeVar("ResultDataT", default=str, covariant=True)
"""The type of a run's result (covariant)."""
ResultDataT_inv = TypeVar("ResultDataT_inv", default=str)
"""The type of a run's result, invariant: a validator takes and returns it."""

ResultValidatorFunc: TypeAlias = (
    Callable[[RunContext[AgentDepsT], ResultDataT_inv], ResultDataT_inv]
    | Callable[[RunContext[AgentDepsT], ResultDataT_inv], Awaitable[ResultDataT_inv]]
    | Callable[[ResultDataT_inv], ResultDataT_inv]
    | Callable[[ResultDataT_inv], Awaitable[ResultDataT_inv]]
)
"""A result validator: takes the result (after the run context, if it wants it) and returns it, sync or async."""
