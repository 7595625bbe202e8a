"""`InstrumentedModel`: a model whose requests are OpenTelemetry spans, by the GenAI semantic conventions.

```python
agent = Agent(model, instrument=True)  # or InstrumentationSettings(...), or Agent.instrument_all()
```

Each request is a span `chat <model>` carrying the system, the model asked for and
answering, the request settings (temperature, max tokens, ...) and the token counts. The
conversation goes with it as events: in `'attributes'` mode as one JSON attribute
`events` on the span, in `'logs'` mode as span events (one per message part). Without an
OpenTelemetry SDK configured, spans are not recorded and cost next to nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from pydantic import TypeAdapter

from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import (
    AgentInfo,
    KnownModelName,
    Model,
    ModelRequestParameters,  # noqa: F401  # as in pydantic-ai's module
    StreamedResponse,
    open_stream,
    send_request,
)
from railyard.agent.models.wrapper import WrapperModel
from railyard.agent.settings import ModelSettings  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.usage import Usage

__all__ = (
    "ANY_ADAPTER",
    "GEN_AI_REQUEST_MODEL_ATTRIBUTE",
    "GEN_AI_SYSTEM_ATTRIBUTE",
    "MODEL_SETTING_ATTRIBUTES",
    "InstrumentationSettings",
    "InstrumentedModel",
)

GEN_AI_SYSTEM_ATTRIBUTE = "gen_ai.system"
"""The span attribute naming who provides the model."""
GEN_AI_REQUEST_MODEL_ATTRIBUTE = "gen_ai.request.model"
"""The span attribute naming the model asked for."""
MODEL_SETTING_ATTRIBUTES = ("max_tokens", "top_p", "seed", "temperature", "presence_penalty", "frequency_penalty")
"""The model settings recorded on a span, as `gen_ai.request.<name>`."""
ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(Any)
"""Turns any value into JSON-ready data, for event bodies."""


class InstrumentationSettings:
    """How models (and agents) are instrumented with OpenTelemetry."""

    def __init__(
        self,
        *,
        event_mode: Literal["attributes", "logs"] = "attributes",
        tracer_provider: trace.TracerProvider | None = None,
        event_logger_provider: Any = None,
    ) -> None:
        """Use `tracer_provider` (the global one by default) to make spans.

        `event_mode` says where the conversation goes: `'attributes'` (one JSON span
        attribute) or `'logs'` (span events). `event_logger_provider` is accepted for
        pydantic-ai's signature and not used.
        """
        from railyard import __version__

        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer: trace.Tracer = provider.get_tracer("railyard.agent", __version__)
        """The tracer spans are made with."""
        self.event_mode: Literal["attributes", "logs"] = event_mode
        """Where the conversation's events go."""
        self.event_logger_provider = event_logger_provider

    def __repr__(self) -> str:
        return f"InstrumentationSettings(event_mode={self.event_mode!r})"


class InstrumentedModel(WrapperModel):
    """A model that records each request to `wrapped` as an OpenTelemetry span."""

    def __init__(self, wrapped: Model | KnownModelName, options: InstrumentationSettings | None = None) -> None:
        super().__init__(wrapped)
        self.options = options or InstrumentationSettings()
        """How the spans are made."""

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """The wrapped model's answer, inside a span."""
        with self._span(messages, info) as finish:
            response, usage = await send_request(self.wrapped, messages, info)
            finish(response, usage)
            return response, usage

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[StreamedResponse]:
        """The wrapped model's streamed answer, inside a span that ends with the stream."""
        with self._span(messages, info) as finish:
            async with open_stream(self.wrapped, messages, info) as response:
                try:
                    yield response
                finally:
                    finish(response.get(), response.usage())

    @contextmanager
    def _span(self, messages: list[ModelMessage], info: AgentInfo) -> Iterator[Callable[[ModelResponse, Usage], None]]:
        attributes: dict[str, AttributeValue] = {"gen_ai.operation.name": "chat", **self.model_attributes(self.wrapped)}
        settings: dict[str, Any] = dict(info.model_settings or {})
        for key in MODEL_SETTING_ATTRIBUTES:
            value = settings.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[f"gen_ai.request.{key}"] = value
        with self.options.tracer.start_as_current_span(
            f"chat {self.wrapped.model_name}", attributes=attributes
        ) as span:

            def finish(response: ModelResponse, usage: Usage) -> None:
                if not span.is_recording():
                    return
                span.set_attributes(
                    {
                        **usage_attributes(usage),
                        "gen_ai.response.model": response.model_name or self.wrapped.model_name,
                    }
                )
                events = self.messages_to_otel_events(messages)
                for event in self.messages_to_otel_events([response]):
                    events.append({"event.name": "gen_ai.choice", "index": 0, "message": event})
                for event in events:
                    event.setdefault(GEN_AI_SYSTEM_ATTRIBUTE, self.wrapped.system)
                if self.options.event_mode == "logs":
                    for event in events:
                        span.add_event(str(event.get("event.name", "gen_ai.event")), {"body": json.dumps(event)})
                else:
                    span.set_attribute("events", json.dumps(events))

            yield finish

    @staticmethod
    def model_attributes(model: Model) -> dict[str, AttributeValue]:
        """The span attributes naming `model`: its system, name, and its server's address and port."""
        attributes: dict[str, AttributeValue] = {
            GEN_AI_SYSTEM_ATTRIBUTE: model.system,
            GEN_AI_REQUEST_MODEL_ATTRIBUTE: model.model_name,
        }
        if model.base_url:
            parts = urlsplit(model.base_url)
            if parts.hostname:
                attributes["server.address"] = parts.hostname
            if parts.port:
                attributes["server.port"] = parts.port
        return attributes

    @staticmethod
    def messages_to_otel_events(messages: list[ModelMessage]) -> list[dict[str, Any]]:
        """The GenAI events of a conversation: one per system, user, tool and assistant part."""
        events: list[dict[str, Any]] = []
        for index, message in enumerate(messages):
            for event in _message_events(message):
                events.append({**event, "gen_ai.message.index": index})
        return events

    @staticmethod
    def serialize_any(value: Any) -> Any:
        """`value` as JSON-ready data, or its `str` if it has no JSON form."""
        try:
            return ANY_ADAPTER.dump_python(value, mode="json")
        except Exception:  # any value a tool returns may end up here
            return str(value)


def usage_attributes(usage: Usage) -> dict[str, AttributeValue]:
    """The GenAI span attributes of `usage`'s token counts."""
    attributes: dict[str, AttributeValue] = {}
    if usage.request_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.request_tokens
    if usage.response_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = usage.response_tokens
    for key, value in (usage.details or {}).items():
        attributes[f"gen_ai.usage.details.{key}"] = value
    return attributes


def _message_events(message: ModelMessage) -> list[dict[str, Any]]:
    serialize = InstrumentedModel.serialize_any
    if isinstance(message, ModelRequest):
        events: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, SystemPromptPart):
                events.append({"event.name": "gen_ai.system.message", "content": part.content, "role": "system"})
            elif isinstance(part, UserPromptPart):
                events.append({"event.name": "gen_ai.user.message", "content": serialize(part.content), "role": "user"})
            elif isinstance(part, ToolReturnPart):
                events.append(
                    {
                        "event.name": "gen_ai.tool.message",
                        "content": serialize(part.content),
                        "role": "tool",
                        "id": part.tool_call_id,
                        "name": part.tool_name,
                    }
                )
            elif isinstance(part, RetryPromptPart):
                name = "gen_ai.user.message" if part.tool_name is None else "gen_ai.tool.message"
                events.append({"event.name": name, "content": part.model_response(), "role": "user"})
        return events
    text = "\n\n".join(part.content for part in message.parts if isinstance(part, TextPart))
    calls = [
        {"id": part.tool_call_id, "type": "function", "function": {"name": part.tool_name, "arguments": part.args}}
        for part in message.parts
        if isinstance(part, ToolCallPart)
    ]
    body: dict[str, Any] = {"event.name": "gen_ai.assistant.message", "role": "assistant"}
    if text:
        body["content"] = text
    if calls:
        body["tool_calls"] = calls
    return [body]
