"""OpenTelemetry spans: one per run, one per step, none when tracing is off.

The attributes railyard puts on them (`railyard.*`, GenAI's `gen_ai.*`), structure as
events rather than spans, store commits as events, and one export over OTLP/HTTP to a
receiver the test starts, decoded with `opentelemetry-proto`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from railyard import FullStatePersistence, Graph, RetryPolicy
from railyard.builder import GraphBuilder, StepContext, reduce_sum
from railyard.store.memory import MemoryStore
from railyard.tracing import active_tracer
from tests.graphs import CountDown, CountDownState, Increment, MyState, never_42_graph

pytestmark = pytest.mark.anyio


class _Switch(SpanProcessor):
    """A processor on the global provider that a test may point at an exporter of its own, then take back."""

    def __init__(self) -> None:
        self.inner: SpanProcessor | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.inner is not None:
            self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.inner is not None:
            self.inner.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis) if self.inner is not None else True


_exporter = InMemorySpanExporter()
_switch = _Switch()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The global tracer provider (set once per process) exporting into memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        provider.add_span_processor(_switch)
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


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
    assert run_span.attributes["railyard.graph"] == "never_42_graph"
    assert "railyard.run_id" not in run_span.attributes  # not recorded: no run id to join a trace to
    ids = [s.id for s in persistence.history[:2]]
    for name, snapshot_id in zip(["run node Increment", "run node Check42"], ids, strict=True):
        (node_span,) = by_name[name]
        assert node_span.parent is not None and node_span.parent.span_id == run_span.context.span_id
        assert node_span.attributes is not None
        assert node_span.attributes["node_id"] == name.removeprefix("run node ")
        assert node_span.attributes["node_snapshot_id"] == snapshot_id
        assert _attrs(node_span) | {"node_id": "", "node_snapshot_id": ""} == {
            "node_id": "",
            "node_snapshot_id": "",
            "railyard.graph": "never_42_graph",
            "railyard.node_id": name.removeprefix("run node "),
            "railyard.step_id": snapshot_id,
            "railyard.attempt": 1,
        }


async def test_a_durable_node_run_puts_its_run_id_on_every_span(spans: InMemorySpanExporter) -> None:
    store = MemoryStore()
    await never_42_graph.run(Increment(), state=MyState(1), store=store, run_id="run-7")
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["run node Increment", "run node Check42", "run graph never_42_graph"]
    for span in finished:
        assert _attrs(span)["railyard.run_id"] == "run-7"
        assert _attrs(span)["railyard.graph"] == "never_42_graph"
    started = [json.loads(r.body)["task_id"] for r in await store.read("run-7") if r.kind == "step_started"]
    assert [_attrs(s)["railyard.step_id"] for s in finished[:2]] == started  # a span joins to its records


async def test_store_commits_are_timed_as_span_events(spans: InMemorySpanExporter) -> None:
    await never_42_graph.run(Increment(), state=MyState(1), store=MemoryStore(), run_id="run-8")
    commits = [e for s in spans.get_finished_spans() for e in s.events if e.name == "railyard.store.commit"]
    assert commits
    for event in commits:
        attributes = dict(event.attributes or {})
        assert isinstance(attributes["railyard.store.records"], int) and attributes["railyard.store.records"] >= 1
        assert isinstance(attributes["railyard.store.duration"], float) and attributes["railyard.store.duration"] >= 0


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


def _doubling_sum(name: str | None = None) -> Any:
    g = GraphBuilder(name=name, output_type=int)

    @g.step
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    total = g.join(reduce_sum, initial=0)
    g.add(g.edge_from(g.start_node).map().to(double), g.edge_from(double).to(total), g.edge_from(total).to(g.end_node))
    return g.build()


async def test_builder_runs_have_a_run_span_and_a_span_per_task(spans: InMemorySpanExporter) -> None:
    assert await _doubling_sum("sums").run(inputs=[1, 2], store=MemoryStore(), run_id="sums-1") == 6
    finished = spans.get_finished_spans()
    names = [span.name for span in finished]
    assert names == ["run node double", "run node double", "run graph sums"]
    run_span = finished[-1]
    assert {k: v for k, v in _attrs(run_span).items()} == {
        "railyard.graph": "sums",
        "railyard.run_id": "sums-1",
        "graph_name": "sums",
    }
    steps = finished[:-1]
    assert all(span.parent is not None and span.parent.span_id == run_span.context.span_id for span in steps)
    for span in steps:
        attributes = _attrs(span)
        assert attributes["railyard.graph"] == "sums" and attributes["railyard.run_id"] == "sums-1"
        assert attributes["railyard.node_id"] == "double" and attributes["railyard.attempt"] == 1
        assert attributes["railyard.step_id"] == attributes["node_snapshot_id"]
    assert len({_attrs(span)["railyard.step_id"] for span in steps}) == 2


async def test_a_20_item_map_is_20_step_spans_and_its_join_is_events(spans: InMemorySpanExporter) -> None:
    assert await _doubling_sum("sums").run(inputs=list(range(20))) == 380
    finished = spans.get_finished_spans()
    assert [span.name for span in finished] == ["run node double"] * 20 + ["run graph sums"]
    run_span = finished[-1]
    events = [e.name for e in run_span.events]
    assert events.count("railyard.join") == 20  # one per value reduced, none a span
    assert "railyard.route" in events  # the start, the map's fork, the end
    join_events = [dict(e.attributes or {}) for e in run_span.events if e.name == "railyard.join"]
    assert {e["railyard.node_id"] for e in join_events} == {"reduce_sum"}


_unnamed = _doubling_sum()


async def test_an_unnamed_builder_graph_is_named_after_its_variable_or_module(spans: InMemorySpanExporter) -> None:
    assert await _unnamed.run(inputs=[1], infer_name=False) == 2  # found in the module it was built in
    assert await _doubling_sum().run(inputs=[1]) == 2  # held by no variable: named after that module
    runs = [span.name for span in spans.get_finished_spans() if span.name.startswith("run graph")]
    assert runs == ["run graph _unnamed", f"run graph {__name__}"]
    assert _unnamed.name is None  # tracing names the spans, it does not rename the graph


async def test_a_retried_step_has_one_span_with_its_attempts_as_events(spans: InMemorySpanExporter) -> None:
    g = GraphBuilder(name="flaky", output_type=int)
    calls: list[int] = []

    @g.step(retry_policy=RetryPolicy(attempts=3, initial_interval=0, jitter=0))
    async def flaky(ctx: StepContext[None, None, None]) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return len(calls)

    g.add(g.edge_from(g.start_node).to(flaky), g.edge_from(flaky).to(g.end_node))
    graph: Any = g.build()  # the decorated step's types are not what this test is about
    assert await graph.run() == 3
    (step,) = [span for span in spans.get_finished_spans() if span.name == "run node flaky"]
    assert _attrs(step)["railyard.attempt"] == 3
    failed = [dict(e.attributes or {}) for e in step.events if e.name == "railyard.attempt_failed"]
    assert [(e["railyard.attempt"], e["error.type"]) for e in failed] == [
        (1, "ConnectionError"),
        (2, "ConnectionError"),
    ]


async def test_an_agent_run_is_traced_like_any_graph_run(spans: InMemorySpanExporter) -> None:
    from railyard.agent import Agent
    from railyard.agent.models.test import TestModel

    agent = Agent(TestModel())

    @agent.tool_plain
    def echo(text: str) -> str:
        return text

    assert (await agent.run("q")).data == '{"echo":"a"}'
    finished = spans.get_finished_spans()
    names = [span.name for span in finished]
    assert names == [
        "run node UserPromptNode",
        "run node ModelRequestNode",
        "execute_tool echo",
        "run node CallToolsNode",
        "run node ModelRequestNode",
        "run node CallToolsNode",
        "run graph agent",
    ]
    run_span = finished[-1]
    assert all(_attrs(span)["railyard.graph"] == "agent" for span in finished)
    assert all(_attrs(span)["railyard.attempt"] == 1 for span in finished if span.name.startswith("run node"))
    requests = [span for span in finished if span.name == "run node ModelRequestNode"]
    genai = [{k: v for k, v in _attrs(span).items() if k.startswith("gen_ai.")} for span in requests]
    model = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "test",
        "gen_ai.request.model": "test",
        "gen_ai.response.model": "test",
    }
    # the tokens each request reported (TestModel's estimate over the conversation so far)
    assert genai == [
        model | {"gen_ai.usage.input_tokens": 51, "gen_ai.usage.output_tokens": 5},
        model | {"gen_ai.usage.input_tokens": 52, "gen_ai.usage.output_tokens": 9},
    ]
    (tool,) = [span for span in finished if span.name == "execute_tool echo"]
    (calls,) = [span for span in finished if span.name == "run node CallToolsNode"][:1]
    assert tool.parent is not None and tool.parent.span_id == calls.context.span_id
    assert calls.parent is not None and calls.parent.span_id == run_span.context.span_id
    attributes = _attrs(tool)
    assert attributes.pop("railyard.step_id") == _attrs(calls)["railyard.step_id"]  # the step it ran in
    assert attributes.pop("railyard.graph") == "agent" and attributes.pop("railyard.attempt") == 1
    # sizes, never contents: `{"text":"a"}` in, `a` out (TestModel gives its calls no id)
    assert attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "echo",
        "railyard.tool.arguments_size": len('{"text":"a"}'),
        "railyard.tool.result_size": 1,
    }


async def test_each_tool_call_is_a_span_with_its_call_id(spans: InMemorySpanExporter) -> None:
    from railyard.agent import Agent
    from railyard.agent.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from railyard.agent.models import AgentInfo
    from railyard.agent.models.function import FunctionModel

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not any(isinstance(p, ToolReturnPart) for m in messages for p in m.parts):
            calls = [
                ToolCallPart("shout", {"text": "héllo"}, "call-1"),
                ToolCallPart("shout", '{"text":"x"}', "call-2"),
            ]
            return ModelResponse(parts=list[Any](calls))
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(model), name="shouter")

    @agent.tool_plain
    def shout(text: str) -> str:
        return text.upper() + "!"

    store = MemoryStore()
    assert (await agent.run("q", store=store, run_id="shout-1")).data == "done"
    tools = sorted(
        (_attrs(span) for span in spans.get_finished_spans() if span.name == "execute_tool shout"),
        key=lambda a: str(a["gen_ai.tool.call.id"]),
    )
    assert [
        (a["gen_ai.tool.call.id"], a["railyard.tool.arguments_size"], a["railyard.tool.result_size"]) for a in tools
    ] == [
        ("call-1", len('{"text":"héllo"}'.encode()), len("HÉLLO!".encode())),  # bytes, not characters
        ("call-2", len('{"text":"x"}'), len("X!")),
    ]
    assert all(a["railyard.run_id"] == "shout-1" and a["railyard.graph"] == "shouter" for a in tools)


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: decodes each export request and says when the run span came."""

    requests: list[ExportTraceServiceRequest]
    got_run: threading.Event

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).requests.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")
        names = [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        if "run graph sums" in names:
            type(self).got_run.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet


async def test_spans_go_over_otlp_http_with_their_attributes(spans: InMemorySpanExporter) -> None:
    class Receiver(_Receiver):
        requests: list[ExportTraceServiceRequest] = []  # noqa: RUF012  # one list per test's receiver class
        got_run = threading.Event()

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces"))
    _switch.inner = processor
    try:
        assert await _doubling_sum("sums").run(inputs=[1, 2], store=MemoryStore(), run_id="wire-1") == 6
        assert processor.force_flush(10_000)
        assert Receiver.got_run.wait(10)
    finally:
        _switch.inner = None
        processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        server.shutdown()
        server.server_close()
        thread.join()

    def value(v: Any) -> Any:
        return getattr(v, v.WhichOneof("value"))

    sent = [
        (ss.scope.name, s)
        for request in Receiver.requests
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert sorted(s.name for _, s in sent) == ["run graph sums", "run node double", "run node double"]
    assert {scope for scope, _ in sent} == {"railyard"}
    by_name = {s.name: s for _, s in sent}
    run = by_name["run graph sums"]
    assert {a.key: value(a.value) for a in run.attributes} == {
        "railyard.graph": "sums",
        "railyard.run_id": "wire-1",
        "graph_name": "sums",
    }
    assert "railyard.store.commit" in [e.name for e in run.events]
    assert [e.name for e in run.events].count("railyard.join") == 2
    for _, span in sent:
        if span.name == "run node double":
            attributes = {a.key: value(a.value) for a in span.attributes}
            assert attributes["railyard.run_id"] == "wire-1" and attributes["railyard.attempt"] == 1
            assert attributes["railyard.node_id"] == "double" and attributes["railyard.step_id"]
            assert span.parent_span_id == run.span_id and span.trace_id == run.trace_id
