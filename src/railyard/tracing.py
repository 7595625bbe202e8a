"""OpenTelemetry tracing: one span per run and one per step, nothing when tracing is off.

railyard depends only on the OpenTelemetry API. With no SDK configured (no tracer
provider set), `active_tracer` returns `None` once per run and the per-step path does
no span work at all.

What a traced run emits (span names are pydantic-graph's, so its dashboards keep working;
attributes are namespaced under `railyard.`, or follow the OpenTelemetry GenAI
conventions where one exists):

- span `run graph {graph}`: `railyard.graph`, `railyard.run_id` (a durable run's).
- span `run node {node}`, one per step: the run's two, `railyard.node_id`,
  `railyard.step_id`, `railyard.attempt`.
- events on the enclosing span, not spans: `railyard.route` (a fork, decision, start or
  end node ran) and `railyard.join` (a value reduced into a join), each with
  `railyard.node_id` and `railyard.step_id`; `railyard.attempt_failed` on a step's span
  (`railyard.attempt`, `error.type`, `railyard.retry_at`); `railyard.store.commit` on
  the current span (`railyard.store.records`, `railyard.store.duration` in seconds).
- span `execute_tool {tool}`, one per agent tool call: `gen_ai.operation.name`
  (`execute_tool`), `gen_ai.tool.name`, `gen_ai.tool.call.id`,
  `railyard.tool.arguments_size` and `railyard.tool.result_size` (bytes, never contents).
- model requests: `gen_ai.operation.name` (`chat`), `gen_ai.system`,
  `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.input_tokens`,
  `gen_ai.usage.output_tokens` (on the `ModelRequestNode` step span, and on the
  `chat {model}` span of an instrumented model).

`node_id`, `node_snapshot_id` and `graph_name` are pydantic-graph's attribute names,
kept so that a drop-in replacement traces the same.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

__all__ = (
    "ATTEMPT",
    "GRAPH",
    "NODE_ID",
    "RUN_ID",
    "STEP_ID",
    "TRACER_NAME",
    "active_tracer",
    "run_attributes",
)

TRACER_NAME = "railyard"
"""The instrumentation scope name of railyard's spans."""
RUN_ID = "railyard.run_id"
"""The attribute holding a run's id in its store (the key to join a trace to the run log)."""
GRAPH = "railyard.graph"
"""The attribute holding the graph's name."""
STEP_ID = "railyard.step_id"
"""The attribute holding a step's id (its `ctx.step_id`, the task id in the run log)."""
NODE_ID = "railyard.node_id"
"""The attribute holding the id of the node a step runs."""
ATTEMPT = "railyard.attempt"
"""The attribute holding the attempt number of a step (1 for its first)."""


def active_tracer(enabled: bool) -> trace.Tracer | None:
    """The tracer to use for a run, or `None` if tracing is disabled or not configured."""
    if not enabled:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider.get_tracer(TRACER_NAME)


def run_attributes(graph_name: str, run_id: str | None) -> dict[str, AttributeValue]:
    """The attributes of a run's span, and the base of each of its step spans' attributes."""
    attributes: dict[str, AttributeValue] = {GRAPH: graph_name}
    if run_id is not None:
        attributes[RUN_ID] = run_id
    return attributes
