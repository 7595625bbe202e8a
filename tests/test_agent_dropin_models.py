"""pydantic-ai drop-in: models, providers, the parts manager, helpers and the names pydantic-ai code imports."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pydantic
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from railyard.agent import Agent, ModelHTTPError, UnexpectedModelBehavior, UserError
from railyard.agent import models as agent_models
from railyard.agent._parts_manager import ModelResponsePartsManager
from railyard.agent._utils import UNSET, PeekableAsyncStream, check_object_json_schema, group_by_temporal
from railyard.agent.format_as_xml import format_as_xml
from railyard.agent.messages import (
    DocumentUrl,
    ModelMessage,
    ModelResponse,
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolCallPartDelta,
)
from railyard.agent.models import (
    Model,
    ModelRequestParameters,
    StreamedResponse,
    cached_async_http_client,
    check_allow_model_requests,
    infer_model,
    override_allow_model_requests,
)
from railyard.agent.models.fallback import FallbackModel
from railyard.agent.models.function import AgentInfo, FunctionModel
from railyard.agent.models.instrumented import InstrumentationSettings, InstrumentedModel
from railyard.agent.models.openai import OpenAIModel
from railyard.agent.models.test import TestModel
from railyard.agent.providers import infer_provider
from railyard.agent.settings import merge_model_settings
from railyard.agent.usage import Usage

pytestmark = pytest.mark.anyio


# -- names --------------------------------------------------------------------------------------------

PYDANTIC_AI_NAMES = {
    "railyard.agent.result": ["AgentStream", "FinalResult", "StreamedRunResult", "Usage", "UsageLimits", "RunContext"],
    "railyard.agent.messages": ["PartStartEvent", "FinalResultEvent", "ImageMediaType", "tool_return_ta"],
    "railyard.agent.models": ["ALLOW_MODEL_REQUESTS", "ModelRequestParameters", "ModelResponsePartsManager"],
    "railyard.agent.models.function": ["FunctionStreamedResponse", "PeekableAsyncStream", "ToolDefinition"],
    "railyard.agent.models.wrapper": ["WrapperModel"],
    "railyard.agent.tools": ["ToolFuncEither", "SystemPromptFunc", "ObjectJsonSchema", "ToolParams"],
    "railyard.agent.agent": ["InstrumentedModel", "merge_model_settings", "RunResultDataT", "ToolPrepareFunc"],
    "railyard.agent.exceptions": ["ExceptionGroup"],
    "railyard.agent.providers": ["Provider", "InterfaceClient", "infer_provider"],
    "railyard.agent.providers.openai": ["OpenAIProvider", "Provider", "cached_async_http_client"],
    "railyard.agent.models.openai": ["OpenAIModelSettings", "OpenAISystemPromptRole", "OpenAIModelName"],
    "railyard.agent.common_tools": [],
}


@pytest.mark.parametrize("module", sorted(PYDANTIC_AI_NAMES))
def test_the_names_pydantic_ai_code_imports(module: str) -> None:
    imported = importlib.import_module(module)
    assert [name for name in PYDANTIC_AI_NAMES[module] if not hasattr(imported, name)] == []


# -- model names and requests -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt-4o", "o1", "o3-mini", "openai:gpt-4o"])
def test_bare_openai_model_names(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    model = infer_model(name)
    assert isinstance(model, OpenAIModel) and model.model_name == name.removeprefix("openai:")


def test_an_unknown_model_name() -> None:
    with pytest.raises(UserError, match=r"^Unknown model: foobar$"):
        infer_model("foobar")


async def test_model_requests_can_be_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    check_allow_model_requests()
    with override_allow_model_requests(False):
        assert agent_models.ALLOW_MODEL_REQUESTS is False
        with pytest.raises(RuntimeError, match="ALLOW_MODEL_REQUESTS is False"):
            await Agent("openai:gpt-4o").run("q")
        assert (await Agent("test").run("q")).data == "success (no tool calls)"  # test models are not affected
    assert agent_models.ALLOW_MODEL_REQUESTS is True


async def test_the_cached_http_client_is_shared_until_closed() -> None:
    client = cached_async_http_client()
    assert cached_async_http_client() is client
    assert client.headers["User-Agent"].startswith("railyard/")
    await client.aclose()
    fresh = cached_async_http_client()
    assert fresh is not client and not fresh.is_closed
    await fresh.aclose()


def test_function_model_needs_a_function() -> None:
    with pytest.raises(TypeError, match="Either `function` or `stream_function` must be provided"):
        FunctionModel()


def test_an_unknown_document_extension_is_a_value_and_a_runtime_error() -> None:
    for kind in (ValueError, RuntimeError):
        with pytest.raises(kind, match=r"^Unknown document file extension: https://x/doc.potato$"):
            _ = DocumentUrl("https://x/doc.potato").media_type


def test_merge_model_settings() -> None:
    assert merge_model_settings({"temperature": 1, "seed": 2}, {"temperature": 0}) == {"temperature": 0, "seed": 2}
    assert merge_model_settings(None, {"seed": 1}) == {"seed": 1}
    assert merge_model_settings({"seed": 1}, None) == {"seed": 1}


def test_providers_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    provider = infer_provider("openai")
    assert (provider.name, provider.base_url, provider.client) == ("openai", "https://api.openai.com/v1", None)
    with pytest.raises(ValueError, match=r"^Unknown provider: nope$"):
        infer_provider("nope")


# -- fallback --------------------------------------------------------------------------------------------


def failing(messages: list[ModelMessage], info: AgentInfo) -> Any:
    raise ModelHTTPError(500, "failing")


async def failing_stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
    raise ModelHTTPError(500, "failing")
    yield ""  # pragma: no cover


async def hello_stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
    yield "hello "
    yield "world"


async def test_fallback_streams_from_the_first_model_whose_stream_starts() -> None:
    model = FallbackModel(
        FunctionModel(failing, stream_function=failing_stream), FunctionModel(stream_function=hello_stream)
    )
    assert model.base_url is None
    async with Agent(model).run_stream("q") as result:
        texts = [response.parts[0].content async for response, _ in result.stream_structured(debounce_by=None)]  # type: ignore[union-attr]
    assert texts == ["hello ", "hello world", "hello world"]


async def test_fallback_streams_fail_together() -> None:
    model = FallbackModel(FunctionModel(stream_function=failing_stream), FunctionModel(stream_function=failing_stream))
    with pytest.raises(ExceptionGroup, match="All models from FallbackModel failed"):
        async with Agent(model).run_stream("q"):
            pass  # pragma: no cover


# -- instrumentation ------------------------------------------------------------------------------------


async def test_an_instrumented_model_records_each_request_as_a_span() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = InstrumentationSettings(tracer_provider=tracer_provider)
    agent = Agent(TestModel(), instrument=settings, model_settings={"temperature": 0.5})
    assert (await agent.run("q")).data == "success (no tool calls)"
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat test"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.system"] == "test"
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.usage.input_tokens"] == 51
    assert '"gen_ai.user.message"' in str(attributes["events"])


def test_instrument_all_wraps_the_models_of_agents_that_do_not_say() -> None:
    model = TestModel()
    agent = Agent()
    try:
        Agent.instrument_all()
        wrapped = agent._get_model(model)
        assert isinstance(wrapped, InstrumentedModel) and wrapped.wrapped is model
        assert Agent(instrument=False)._get_model(model) is model
    finally:
        Agent.instrument_all(False)
    assert agent._get_model(model) is model


# -- the parts manager ---------------------------------------------------------------------------------


def test_the_parts_manager_starts_a_call_once_it_has_a_name_and_arguments() -> None:
    manager = ModelResponsePartsManager()
    assert manager.handle_tool_call_delta(vendor_part_id=1, tool_name="f", args=None, tool_call_id=None) is None
    assert manager.get_parts() == []
    started = manager.handle_tool_call_delta(vendor_part_id=1, tool_name=None, args='{"a":', tool_call_id="c")
    assert started == PartStartEvent(0, ToolCallPart("f", '{"a":', "c"))
    grown = manager.handle_tool_call_delta(vendor_part_id=1, tool_name=None, args="1}", tool_call_id=None)
    assert grown == PartDeltaEvent(0, ToolCallPartDelta(None, "1}", None))
    assert manager.handle_text_delta(vendor_part_id=None, content="hi") == PartStartEvent(1, TextPart("hi"))
    assert manager.handle_text_delta(vendor_part_id=None, content="!") == PartDeltaEvent(1, TextPartDelta("!"))
    assert manager.get_parts() == [ToolCallPart("f", '{"a":1}', "c"), TextPart("hi!")]
    with pytest.raises(UnexpectedModelBehavior, match=r"^Cannot apply a text delta to existing_part=ToolCallPart"):
        manager.handle_text_delta(vendor_part_id=1, content="x")
    with pytest.raises(UnexpectedModelBehavior, match="already has one"):
        manager.handle_tool_call_delta(vendor_part_id=1, tool_name=None, args=None, tool_call_id="other")


def test_a_whole_call_replaces_the_part_of_its_id() -> None:
    manager = ModelResponsePartsManager()
    manager.handle_tool_call_part(vendor_part_id="x", tool_name="f", args={})
    assert manager.handle_tool_call_part(vendor_part_id="x", tool_name="g", args={"a": 1}) == PartStartEvent(
        0, ToolCallPart("g", {"a": 1})
    )
    with pytest.raises(UnexpectedModelBehavior, match=r"^Cannot apply JSON deltas to non-JSON tool arguments"):
        manager.handle_tool_call_delta(vendor_part_id="x", tool_name=None, args="{", tool_call_id=None)


# -- helpers --------------------------------------------------------------------------------------------------


async def test_group_by_temporal_without_an_interval_gives_each_item_alone() -> None:
    async def numbers() -> AsyncIterator[int]:
        for number in range(3):
            yield number

    async with group_by_temporal(numbers(), None) as groups:
        assert [group async for group in groups] == [[0], [1], [2]]
    async with group_by_temporal(numbers(), 60) as groups:
        assert [group async for group in groups] == [[0, 1, 2]]  # all within one window


async def test_a_peekable_stream() -> None:
    async def numbers() -> AsyncIterator[int]:
        yield 1
        yield 2

    stream = PeekableAsyncStream(numbers())
    assert await stream.peek() == 1
    assert [item async for item in stream] == [1, 2]
    assert await stream.is_exhausted() and await stream.peek() is UNSET


def test_check_object_json_schema() -> None:
    schema = pydantic.TypeAdapter(TextPart).json_schema()
    assert check_object_json_schema(schema) is schema
    assert check_object_json_schema({"$ref": "#/$defs/A", "$defs": {"A": {"type": "object"}}}) == {"type": "object"}
    with pytest.raises(UserError, match=r"^Schema must be an object$"):
        check_object_json_schema({"type": "array"})


@dataclasses.dataclass
class Person:
    name: str
    born: datetime.date


class Pet(pydantic.BaseModel):
    kind: str


def test_format_as_xml() -> None:
    assert format_as_xml("a <b>") == "<examples>a &lt;b&gt;</examples>"
    assert format_as_xml(None, none_str="nil") == "<examples>nil</examples>"
    assert format_as_xml([Person("Ann", datetime.date(2000, 1, 2)), Pet(kind="cat")], root_tag="all") == (
        "<all>\n"
        "  <Person>\n    <name>Ann</name>\n    <born>2000-01-02</born>\n  </Person>\n"
        "  <Pet>\n    <kind>cat</kind>\n  </Pet>\n"
        "</all>"
    )
    assert format_as_xml({"a": [1, 2], 3: b"x"}, include_root_tag=False) == (
        "<a>\n  <example>1</example>\n  <example>2</example>\n</a>\n<3>x</3>"
    )
    assert format_as_xml([1, 2], indent=None) == "<examples><example>1</example><example>2</example></examples>"
    with pytest.raises(TypeError, match="Unsupported type"):
        format_as_xml(object())
    with pytest.raises(TypeError, match="Unsupported key type for XML formatting"):
        format_as_xml({(1, 2): 3})


async def test_httpx_is_what_the_cached_client_is() -> None:
    client = cached_async_http_client()
    assert isinstance(client, httpx.AsyncClient)
    await client.aclose()


@pytest.mark.skipif(importlib.util.find_spec("tavily") is not None, reason="the Tavily SDK is installed")
def test_common_tools_import_without_their_sdks() -> None:
    from railyard.agent.common_tools import tavily

    with pytest.raises(ImportError, match="pip install tavily-python"):
        tavily.tavily_search_tool("k")


async def test_a_duckduckgo_tool_with_a_client_of_ones_own() -> None:
    from railyard.agent.common_tools.duckduckgo import duckduckgo_search_tool

    class Client:
        def text(self, query: str, max_results: int | None = None) -> list[dict[str, str]]:
            return [{"title": query, "href": "https://x", "body": str(max_results)}]

    tool = duckduckgo_search_tool(Client(), max_results=3)
    assert tool.name == "duckduckgo_search"
    assert await tool.function("q") == [{"title": "q", "href": "https://x", "body": "3"}]


# -- models written for pydantic-ai -----------------------------------------------------------------


@dataclasses.dataclass
class EchoStream(StreamedResponse):
    """A stream in pydantic-ai's style: a dataclass with its own name and time, fed to `_parts_manager`."""

    text: str
    _model_name: str = "echo"
    _timestamp: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        for word in self.text.split(" "):
            self._usage = self._usage + Usage(response_tokens=1)
            yield self._parts_manager.handle_text_delta(vendor_part_id="text", content=word + " ")

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def timestamp(self) -> datetime.datetime:
        return self._timestamp


class EchoModel(Model):
    """A model in pydantic-ai's style: `request(messages, model_settings, model_request_parameters)`."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, bool]] = []

    async def request(  # type: ignore[override]
        self, messages: list[ModelMessage], model_settings: Any, model_request_parameters: ModelRequestParameters
    ) -> tuple[ModelResponse, Usage]:
        self.seen.append((model_settings, model_request_parameters.allow_text_result))
        return ModelResponse([TextPart("echo")], model_name="echo"), Usage(requests=1)

    @asynccontextmanager
    async def request_stream(  # type: ignore[override]
        self, messages: list[ModelMessage], model_settings: Any, model_request_parameters: ModelRequestParameters
    ) -> AsyncIterator[StreamedResponse]:
        yield EchoStream("one two")

    @property
    def model_name(self) -> str:
        return "echo"

    @property
    def system(self) -> str:
        return "echo"


async def test_a_model_written_for_pydantic_ai_runs() -> None:
    model = EchoModel()
    result = await Agent(model, model_settings={"seed": 1}).run("q")
    assert result.data == "echo"
    assert model.seen == [({"seed": 1}, True)]
    fallback = FallbackModel(InstrumentedModel(model))
    assert (await Agent(fallback).run("q")).data == "echo"


async def test_a_stream_written_for_pydantic_ai_streams() -> None:
    async with Agent(EchoModel()).run_stream("q") as result:
        assert [text async for text in result.stream_text(delta=True, debounce_by=None)] == ["one ", "two "]
    assert result.all_messages()[-1].model_name == "echo"  # type: ignore[union-attr]
    assert result.usage().response_tokens == 2
