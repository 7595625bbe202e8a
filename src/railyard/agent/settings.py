"""`ModelSettings`: how a model should answer (temperature, token budget, ...), per agent or per run.

Every key is optional; a model uses those it understands and ignores the rest. A run's
settings are merged over its agent's.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = ("ModelSettings", "merge_model_settings")


class ModelSettings(TypedDict, total=False):
    """Settings sent with a request."""

    max_tokens: int
    """The most tokens the answer may have."""
    temperature: float
    """How random the answer is (0 is the most deterministic)."""
    top_p: float
    """Nucleus sampling: consider only the tokens making up this much probability."""
    timeout: float
    """Seconds the request may take."""
    parallel_tool_calls: bool
    """Whether the model may call several tools in one response."""
    seed: int
    """A seed, for models that can repeat an answer."""
    presence_penalty: float
    """Penalise tokens that have appeared at all (from -2 to 2)."""
    frequency_penalty: float
    """Penalise tokens by how often they have appeared (from -2 to 2)."""
    logit_bias: dict[str, int]
    """Raise or lower the likelihood of given tokens."""


def merge_model_settings(base: ModelSettings | None, overrides: ModelSettings | None) -> ModelSettings | None:
    """`overrides` merged over `base` (key by key); either one alone when the other is None or empty."""
    if base and overrides:
        return {**base, **overrides}
    return base or overrides
