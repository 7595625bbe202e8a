"""How much an agent run used (requests and tokens), and limits on it."""

from __future__ import annotations

from dataclasses import dataclass

from railyard.agent.exceptions import UsageLimitExceeded

__all__ = ("Usage", "UsageLimits")


def _add(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass
class Usage:
    """Requests made and tokens used (`None`: not reported)."""

    requests: int = 0
    """Requests made to the model."""
    request_tokens: int | None = None
    """Tokens sent."""
    response_tokens: int | None = None
    """Tokens received."""
    total_tokens: int | None = None
    """Tokens in all."""
    details: dict[str, int] | None = None
    """Other counts the model reports."""

    def incr(self, other: Usage, *, requests: int = 0) -> None:
        """Add `other` (and `requests`) into this usage, in place."""
        self.requests += requests + other.requests
        self.request_tokens = _add(self.request_tokens, other.request_tokens)
        self.response_tokens = _add(self.response_tokens, other.response_tokens)
        self.total_tokens = _add(self.total_tokens, other.total_tokens)
        if other.details:
            details = dict(self.details or {})
            for key, value in other.details.items():
                details[key] = details.get(key, 0) + value
            self.details = details

    def __add__(self, other: Usage) -> Usage:
        total = Usage(self.requests, self.request_tokens, self.response_tokens, self.total_tokens, self.details)
        total.incr(other)
        return total


@dataclass
class UsageLimits:
    """Limits on a run's usage; exceeding one raises `UsageLimitExceeded`."""

    request_limit: int | None = 50
    """At most this many requests (checked before each request)."""
    request_tokens_limit: int | None = None
    """At most this many tokens sent (checked after each response)."""
    response_tokens_limit: int | None = None
    """At most this many tokens received (checked after each response)."""
    total_tokens_limit: int | None = None
    """At most this many tokens in all (checked after each response)."""

    def has_token_limits(self) -> bool:
        """Whether any token limit is set."""
        return any(
            limit is not None
            for limit in (self.request_tokens_limit, self.response_tokens_limit, self.total_tokens_limit)
        )

    def check_before_request(self, usage: Usage) -> None:
        """Raise if one more request would go past `request_limit`."""
        if self.request_limit is not None and usage.requests >= self.request_limit:
            raise UsageLimitExceeded(f"The next request would exceed the request_limit of {self.request_limit}")

    def check_tokens(self, usage: Usage) -> None:
        """Raise if the tokens used so far are past a token limit."""
        for name, limit, used in (
            ("request_tokens_limit", self.request_tokens_limit, usage.request_tokens),
            ("response_tokens_limit", self.response_tokens_limit, usage.response_tokens),
            ("total_tokens_limit", self.total_tokens_limit, usage.total_tokens),
        ):
            if limit is not None and (used or 0) > limit:
                field = name.removesuffix("_limit")
                raise UsageLimitExceeded(f"Exceeded the {name} of {limit} ({field}={used})")
