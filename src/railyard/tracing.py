"""OpenTelemetry tracing: one span per run and one per step, nothing when tracing is off.

railyard depends only on the OpenTelemetry API. With no SDK configured (no tracer
provider set), `active_tracer` returns `None` once per run and the per-step path does
no span work at all.
"""

from __future__ import annotations

from opentelemetry import trace

__all__ = ("TRACER_NAME", "active_tracer")

TRACER_NAME = "railyard"
"""The instrumentation scope name of railyard's spans."""


def active_tracer(enabled: bool) -> trace.Tracer | None:
    """The tracer to use for a run, or `None` if tracing is disabled or not configured."""
    if not enabled:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider.get_tracer(TRACER_NAME)
