"""Retrying a step that fails, and bounding how long an attempt may take.

Declare a policy where the step is defined, and a default for the whole graph:

```python
class FetchPage(BaseNode[State]):
    retry_policy = RetryPolicy(attempts=3, initial_interval=0.5)
    step_timeout = 10.0  # seconds per attempt

    async def run(self, ctx: GraphRunContext[State]) -> Parse: ...


@g.step(retry_policy=RetryPolicy(attempts=5), step_timeout=2.0)
async def call_api(ctx: StepContext[None, None, str]) -> dict: ...


graph = Graph(nodes=[FetchPage, Parse], retry_policy=RetryPolicy())  # the default of every node
```

An attempt that raises an exception the policy retries (by default any `Exception`
except `NonRetryable`) is recorded with its error; the step runs again after the
policy's backoff, with `ctx.attempt` one higher and the same `ctx.step_id`. The last
attempt's error is the step's. A map item retries in place: its siblings go on. On a
durable run each failed attempt is in the run log, so a run resumed after a crash goes
on with the attempt it had reached.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ("NonRetryable", "RetryPolicy", "StepTimeout")


class NonRetryable(Exception):
    """Raise (or raise `from` another error) to fail a step at once, whatever its retry policy says."""


class StepTimeout(TimeoutError):
    """An attempt of a step ran longer than its `timeout`: it was cancelled."""

    def __init__(self, node_id: str, timeout: float) -> None:
        self.node_id = node_id
        """The step that timed out."""
        self.timeout = timeout
        """The timeout it had, in seconds."""
        super().__init__(f"Step `{node_id}` timed out after {timeout:g} s (its `timeout`); the attempt was cancelled.")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing step runs again, and how long it waits in between.

    The wait before attempt `n + 1` is `initial_interval * backoff ** (n - 1)`, at most
    `max_interval`, spread by `jitter` (0.1: anywhere from 10% shorter to 10% longer).
    """

    attempts: int = 3
    """How many times the step may run in all (1: no retry)."""
    initial_interval: float = 1.0
    """Seconds to wait before the second attempt."""
    backoff: float = 2.0
    """How much longer each wait is than the one before."""
    max_interval: float = 60.0
    """The longest wait, in seconds."""
    jitter: float = 0.1
    """The fraction by which a wait is spread at random (0: exact waits)."""
    retry_on: Sequence[type[BaseException]] = field(default=(Exception,))
    """The exceptions that are retried (their subclasses too); `NonRetryable` never is."""

    def __post_init__(self) -> None:
        """Check the figures.

        Raises:
            ValueError: a figure is out of range (naming it).
        """
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy(attempts={self.attempts}): attempts must be at least 1")
        for name in ("initial_interval", "max_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy({name}={getattr(self, name)}): must not be negative")
        if self.backoff < 1:
            raise ValueError(f"RetryPolicy(backoff={self.backoff}): backoff must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy(jitter={self.jitter}): jitter must be between 0 and 1")
        object.__setattr__(self, "retry_on", tuple(self.retry_on))

    def retries(self, error: BaseException, attempt: int) -> bool:
        """Whether `error`, raised by attempt number `attempt`, is retried."""
        if attempt >= self.attempts or isinstance(error, NonRetryable):
            return False
        if isinstance(error.__cause__, NonRetryable):
            return False
        return isinstance(error, tuple(self.retry_on))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` failed, before the next one."""
        base = min(self.initial_interval * self.backoff ** (attempt - 1), self.max_interval)
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(base, 0.0)
