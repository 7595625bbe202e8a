"""OpenTelemetry spans: one per run, one per step, none when tracing is off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from railyard import FullStatePersistence, Graph
from railyard.tracing import active_tracer
from tests.graphs import CountDown, CountDownState, Increment, MyState, never_42_graph

pytestmark = pytest.mark.anyio

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The global tracer provider (set once per process) exporting into memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def _by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    result: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        result.setdefault(span.name, []).append(span)
    return result


async def test_a_span_per_run_and_per_step(spans: InMemorySpanExporter) -> None:
    persistence = FullStatePersistence()
    await never_42_graph.run(Increment(), state=MyState(1), persistence=persistence)
    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["run node Increment", "run node Check42", "run graph never_42_graph"]
    by_name = _by_name(finished)
    run_span = by_name["run graph never_42_graph"][0]
    assert run_span.attributes is not None and run_span.attributes["graph_name"] == "never_42_graph"
    ids = [s.id for s in persistence.history[:2]]
    for name, snapshot_id in zip(["run node Increment", "run node Check42"], ids, strict=True):
        (node_span,) = by_name[name]
        assert node_span.parent is not None and node_span.parent.span_id == run_span.context.span_id
        assert node_span.attributes is not None
        assert node_span.attributes["node_id"] == name.removeprefix("run node ")
        assert node_span.attributes["node_snapshot_id"] == snapshot_id


async def test_the_run_span_nests_under_the_callers_span(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        await never_42_graph.run(Increment(), state=MyState(1))
    run_span = _by_name(spans.get_finished_spans())["run graph never_42_graph"][0]
    assert run_span.parent is not None and run_span.parent.span_id == outer.get_span_context().span_id


async def test_span_argument_replaces_the_run_span(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    async with never_42_graph.iter(Increment(), state=MyState(1), span=tracer.start_as_current_span("mine")) as run:
        async for _ in run:
            pass
    names = [span.name for span in spans.get_finished_spans()]
    assert names == ["run node Increment", "run node Check42", "mine"]


async def test_auto_instrument_off_creates_no_spans(spans: InMemorySpanExporter) -> None:
    quiet = Graph(nodes=[CountDown], auto_instrument=False)
    await quiet.run(CountDown(), state=CountDownState(2))
    assert spans.get_finished_spans() == ()


def test_no_tracer_without_an_sdk_or_when_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    assert active_tracer(False) is None
    monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
    assert active_tracer(True) is None
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    assert active_tracer(True) is None


async def test_builder_runs_have_a_run_span_and_a_span_per_task(spans: InMemorySpanExporter) -> None:
    from railyard.builder import GraphBuilder, StepContext, reduce_sum

    g = GraphBuilder(name="sums", output_type=int)

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    total = g.join(reduce_sum, initial=0)
    g.add(g.edge_from(g.start_node).map().to(double), g.edge_from(double).to(total), g.edge_from(total).to(g.end_node))
    assert await g.build().run(inputs=[1, 2]) == 6
    names = [span.name for span in spans.get_finished_spans()]
    assert names.count("run node double") == 2
    assert names[-1] == "run graph sums"
    run_span = spans.get_finished_spans()[-1]
    assert all(
        span.parent is not None and span.parent.span_id == run_span.context.span_id
        for span in spans.get_finished_spans()[:-1]
    )


async def test_an_agent_run_is_traced_like_any_graph_run(spans: InMemorySpanExporter) -> None:
    from railyard.agent import Agent
    from railyard.agent.models.test import TestModel

    agent = Agent(TestModel())

    @agent.tool_plain
    def echo(text: str) -> str:
        return text

    assert (await agent.run("q")).data == '{"echo":"a"}'
    names = [span.name for span in spans.get_finished_spans()]
    assert names == [
        "run node UserPromptNode",
        "run node ModelRequestNode",
        "run node CallToolsNode",
        "run node ModelRequestNode",
        "run node CallToolsNode",
        "run graph agent",
    ]
    requests = [span for span in spans.get_finished_spans() if span.name == "run node ModelRequestNode"]
    genai = [{k: v for k, v in (span.attributes or {}).items() if k.startswith("gen_ai.")} for span in requests]
    model = {"gen_ai.system": "test", "gen_ai.request.model": "test", "gen_ai.response.model": "test"}
    # the tokens each request reported (TestModel's estimate over the conversation so far)
    assert genai == [
        model | {"gen_ai.usage.input_tokens": 51, "gen_ai.usage.output_tokens": 5},
        model | {"gen_ai.usage.input_tokens": 52, "gen_ai.usage.output_tokens": 9},
    ]
