"""A model that talks to an OpenAI-compatible Chat Completions API over HTTP.

`OpenAIModel('gpt-4o')` sends each request as `POST {base_url}/chat/completions` with
httpx (the `openai` extra): the conversation becomes Chat Completions `messages`, the
agent's tools become `tools`, and the answer's text and tool calls become a
`ModelResponse`, with its token counts as the `Usage`. Any server that speaks the same
API (a proxy, a local server) works through `base_url`.

The base URL and key come from the arguments, else from the `OPENAI_BASE_URL` and
`OPENAI_API_KEY` environment variables. Rate limits (429), timeouts of the server (408),
conflicts (409), server errors (5xx) and failed connections are retried, up to
`max_retries` times, waiting as the server's `retry-after` says or with exponential
backoff; what still fails raises `ModelHTTPError` or `ModelConnectionError`.

`request_stream` asks for the answer as a stream of server-sent events
(`"stream": true`) and gives its text and tool calls piece by piece as they arrive;
the same retries apply until the stream begins.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import importlib.metadata
import json
import math
import os
import random
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import anyio

try:
    import httpx
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "railyard.agent.models.openai needs httpx: install it with `pip install 'railyard[openai]'`"
    ) from _exc

from railyard.agent.content import BinaryContent, ImageUrl
from railyard.agent.events import ModelResponseStreamEvent
from railyard.agent.exceptions import ModelConnectionError, ModelHTTPError, UnexpectedModelBehavior, UserError
from railyard.agent.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo, Model, StreamedResponse
from railyard.agent.tools import ToolDefinition
from railyard.agent.usage import Usage

__all__ = ("DEFAULT_BASE_URL", "OpenAIModel", "OpenAIProvider", "OpenAIStreamedResponse")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""Where requests go when neither `base_url` nor `OPENAI_BASE_URL` says otherwise."""

_RETRY_STATUSES = frozenset({408, 409, 429})
"""Statuses worth another attempt, besides every 5xx."""

_SETTINGS = (
    "frequency_penalty",
    "logit_bias",
    "max_tokens",
    "parallel_tool_calls",
    "presence_penalty",
    "seed",
    "temperature",
    "top_p",
)
"""Model settings sent in the body under their own name (when not None)."""

_EXCERPT = 200
"""How many characters of an unusable body an error message quotes."""

_DRAIN_SECONDS = 2.0
"""How long to wait for the end of a stream's body after `data: [DONE]`."""


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("railyard")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - only from a bare source tree
        version = "unknown"
    return f"railyard/{version}"


_USER_AGENT = _user_agent()


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for the clients this module makes (loading the CA bundle is slow)."""
    return httpx.create_ssl_context()


class OpenAIProvider:
    """Where an OpenAI-compatible API is and how to authenticate to it.

    `base_url` defaults to the `OPENAI_BASE_URL` environment variable, else
    `https://api.openai.com/v1`; `api_key` to `OPENAI_API_KEY`. Without a key,
    construction raises `UserError`. `http_client`, when given, is used for every
    request (and never closed here); otherwise each request gets a fresh client.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        if not url.startswith(("http://", "https://")):
            raise UserError(f"The OpenAI base URL must start with http:// or https://, got {url!r}")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise UserError(
                "No OpenAI API key: set the OPENAI_API_KEY environment variable "
                "or pass api_key= (to OpenAIModel or OpenAIProvider)"
            )
        self.base_url: str = url.rstrip("/")
        """The API's base URL, without a trailing slash."""
        self.http_client = http_client
        """The client every request uses, or None for a fresh one per request."""
        self._api_key = key

    @property
    def name(self) -> str:
        """Always `'openai'`."""
        return "openai"

    @property
    def api_key(self) -> str:
        """The key sent as `Authorization: Bearer <key>` (never shown in a repr)."""
        return self._api_key

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r})"


class OpenAIModel(Model):
    """A model served by an OpenAI-compatible Chat Completions API.

    Give either `provider=` or `base_url`/`api_key`/`http_client` (see `OpenAIProvider`
    for their defaults). Failed attempts are retried up to `max_retries` times;
    `timeout` is the seconds allowed for each attempt (a request's
    `model_settings['timeout']` overrides it).

    Without `http_client`, each request opens and closes its own connection, which is
    safe when runs use different event loops; pass a client to reuse connections.
    """

    retry_base_delay: float = 0.5
    """Seconds before the first retry when the server does not say (doubling after)."""
    retry_max_delay: float = 8.0
    """The longest backoff between two attempts."""
    retry_after_cap: float = 60.0
    """The longest wait a server's `retry-after` can ask for."""

    def __init__(
        self,
        model_name: str,
        *,
        provider: OpenAIProvider | Literal["openai"] | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_retries: int = 2,
        timeout: float = 600,
    ) -> None:
        if isinstance(provider, OpenAIProvider):
            if base_url is not None or api_key is not None or http_client is not None:
                raise UserError("Pass either provider= or base_url=/api_key=/http_client= to OpenAIModel, not both")
        elif provider in (None, "openai"):
            provider = OpenAIProvider(base_url=base_url, api_key=api_key, http_client=http_client)
        else:
            raise UserError(f"Unknown provider {provider!r}: use 'openai' or an OpenAIProvider")
        if max_retries < 0:
            raise UserError(f"max_retries must be 0 or more, got {max_retries}")
        if timeout <= 0:
            raise UserError(f"timeout must be more than 0 seconds, got {timeout}")
        self.provider: OpenAIProvider = provider
        """Where requests go and the key they carry."""
        self.max_retries = max_retries
        """How many times a failed attempt is retried."""
        self.timeout = timeout
        """Seconds allowed for each attempt."""
        self._name = model_name

    def __repr__(self) -> str:
        return f"OpenAIModel(model_name={self._name!r}, base_url={self.provider.base_url!r})"

    @property
    def model_name(self) -> str:
        """The model asked for, as given."""
        return self._name

    @property
    def system(self) -> str:
        """Always `'openai'`."""
        return "openai"

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self.provider.base_url

    async def request(self, messages: list[ModelMessage], info: AgentInfo) -> tuple[ModelResponse, Usage]:
        """Send the conversation to `/chat/completions` and read the answer and its usage.

        Raises:
            ModelHTTPError: the API answered with an error status, after any retries.
            ModelConnectionError: the API could not be reached, after any retries.
            UnexpectedModelBehavior: the API answered 2xx with a body that is not a completion.
            UserError: the conversation holds something this API cannot be sent.
        """
        settings = info.model_settings or {}
        body = self._build_body(messages, info, settings)
        url = f"{self.provider.base_url}/chat/completions"
        limits = self._limits(settings)
        content = _encode(body)
        headers = self._headers()
        response = await self._with_retries(url, lambda: self._send(url, content, headers, limits))
        return self._parse(response, url)

    @asynccontextmanager
    async def request_stream(
        self, messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[OpenAIStreamedResponse]:
        """Send the conversation with `"stream": true` and give the answer as it arrives.

        Failed attempts are retried as for `request` until the stream begins; the
        response (and the client, when this made one) is closed when the block exits,
        whether or not the stream was read to its end.

        Raises:
            ModelHTTPError: the API answered with an error status, after any retries.
            ModelConnectionError: the API could not be reached, after any retries.
            UnexpectedModelBehavior: (while iterating) the stream broke off, or held
                something that is not a completion chunk, or an error.
            UserError: the conversation holds something this API cannot be sent.
        """
        settings = info.model_settings or {}
        body = self._build_body(messages, info, settings, stream=True)
        url = f"{self.provider.base_url}/chat/completions"
        limits = self._limits(settings)
        content = _encode(body)
        headers = self._headers()
        async with AsyncExitStack() as stack:
            client: httpx.AsyncClient
            if self.provider.http_client is not None:
                client = self.provider.http_client
            else:
                client = await stack.enter_async_context(httpx.AsyncClient(verify=_shared_ssl_context()))
            request = client.build_request("POST", url, content=content, headers=headers, timeout=limits)
            # `send(stream=True)` is what `client.stream()` does; it lets a retried
            # attempt be closed before the next one, and the last one after the block.
            response = await self._with_retries(url, lambda: client.send(request, stream=True))
            stack.push_async_callback(response.aclose)
            if not response.is_success:
                error = await _read_error_body(response)
                try:
                    response.raise_for_status()
                except httpx.HTTPStatusError as exc:
                    raise ModelHTTPError(response.status_code, self._name, error) from exc
            streamed = OpenAIStreamedResponse(self._name, response, url)
            try:
                yield streamed
            finally:
                await streamed.aclose()

    # -- the request ---------------------------------------------------------------------

    def _limits(self, settings: Mapping[str, Any]) -> httpx.Timeout:
        seconds = settings.get("timeout")
        if seconds is None:
            seconds = self.timeout
        return seconds if isinstance(seconds, httpx.Timeout) else httpx.Timeout(seconds, connect=min(5.0, seconds))

    def _headers(self) -> dict[str, str]:
        # The openai SDK sends `Accept: application/json` for streams too; so does this.
        return {
            "Authorization": f"Bearer {self.provider.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }

    def _build_body(
        self, messages: list[ModelMessage], info: AgentInfo, settings: Mapping[str, Any], *, stream: bool = False
    ) -> dict[str, Any]:
        wire: list[dict[str, Any]] = []
        if info.instructions:
            wire.append({"role": "system", "content": info.instructions})
        for message in messages:
            if isinstance(message, ModelRequest):
                wire.extend(_map_request(message))
            else:
                wire.append(_map_response(message))
        tools = [_map_tool(tool) for tool in [*info.function_tools, *info.result_tools]]
        # The openai SDK sends `messages` and `model` first and the rest in alphabetical
        # order; so does this, so bodies compare equal key for key.
        rest: dict[str, Any] = {"n": 1, "stream": stream}
        if stream:
            rest["stream_options"] = {"include_usage": True}  # a last chunk with the usage
        if tools:
            rest["tool_choice"] = "auto" if info.allow_text_result else "required"
            rest["tools"] = tools
        for key in _SETTINGS:
            value = settings.get(key)
            if value is None or (key == "parallel_tool_calls" and not tools):
                continue  # the API rejects parallel_tool_calls without tools
            rest[key] = value
        effort = settings.get("openai_reasoning_effort")
        if effort is not None:
            rest["reasoning_effort"] = effort
        body: dict[str, Any] = {"messages": wire, "model": self._name}
        body.update(sorted(rest.items()))
        extra = settings.get("extra_body")
        if extra:
            body.update(extra)
        return body

    async def _with_retries(self, url: str, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        """The first answer `send` gets that is not worth retrying, or the last one."""
        attempt = 0
        while True:
            try:
                response = await send()
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise ModelConnectionError(f"Could not reach {url}: {_describe(exc)}") from exc
                delay = self._backoff(attempt)
            else:
                status = response.status_code
                if not (status in _RETRY_STATUSES or status >= 500) or attempt >= self.max_retries:
                    return response
                asked = self._retry_after(response.headers)
                delay = self._backoff(attempt) if asked is None else asked
                await response.aclose()  # a streamed answer holds its connection until closed
            attempt += 1
            await anyio.sleep(delay)

    async def _send(self, url: str, content: bytes, headers: dict[str, str], limits: httpx.Timeout) -> httpx.Response:
        client = self.provider.http_client
        if client is not None:
            return await client.post(url, content=content, headers=headers, timeout=limits)
        async with httpx.AsyncClient(verify=_shared_ssl_context()) as own:
            return await own.post(url, content=content, headers=headers, timeout=limits)

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.retry_base_delay * 2**attempt, self.retry_max_delay)
        return delay * (1 - 0.25 * random.random())  # jitter, not security

    def _retry_after(self, headers: httpx.Headers) -> float | None:
        """The wait the server asks for (`retry-after-ms`, else `retry-after`), capped; None if it does not say."""
        seconds: float | None = None
        millis = headers.get("retry-after-ms")
        if millis is not None:
            try:
                seconds = float(millis) / 1000
            except ValueError:
                seconds = None
        after = headers.get("retry-after")
        if seconds is None and after is not None:
            try:
                seconds = float(after)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(after)
                except (TypeError, ValueError):
                    return None
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                seconds = when.timestamp() - time.time()
        if seconds is None or math.isnan(seconds):
            return None
        return min(max(seconds, 0.0), self.retry_after_cap)

    # -- the response --------------------------------------------------------------------

    def _parse(self, response: httpx.Response, url: str) -> tuple[ModelResponse, Usage]:
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise ModelHTTPError(response.status_code, self._name, _error_body(response)) from exc
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnexpectedModelBehavior(
                f"Expected a JSON Chat Completions body from {url}, got {_excerpt(response.text)}"
            ) from exc
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UnexpectedModelBehavior(
                f"Expected a Chat Completions body with `choices` from {url}, got {_excerpt(response.text)}"
            )
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise UnexpectedModelBehavior(
                f"Expected `choices[0].message` in the body from {url}, got {_excerpt(response.text)}"
            )
        parts = _read_parts(message, url)
        name = data.get("model")
        created = data.get("created")
        timestamp = (
            datetime.fromtimestamp(created, UTC)
            if isinstance(created, int | float) and not isinstance(created, bool)
            else datetime.now(UTC)
        )
        model_response = ModelResponse(
            parts, model_name=name if isinstance(name, str) else self._name, timestamp=timestamp
        )
        return model_response, _read_usage(data.get("usage"))


class OpenAIStreamedResponse(StreamedResponse):
    """An answer streamed as `chat.completion.chunk` server-sent events, ending with `data: [DONE]`.

    Each chunk's text (`choices[0].delta.content`) grows one text part, and its tool
    call pieces (`choices[0].delta.tool_calls`, by `index`) grow one tool call part
    each; `model` and `created` name the answering model and when it began, and the
    chunk with `usage` (the last, asked for by `stream_options`) gives the usage.
    """

    def __init__(self, model_name: str, response: httpx.Response, url: str) -> None:
        super().__init__(model_name)
        self._usage = Usage(requests=1)
        self._response = response
        self._url = url
        self._chunks = 0
        """How many chunks have arrived."""
        self._unrecognised = ""
        """The start of any text that was not server-sent events, to show in an error."""
        self._done = False
        """Whether `data: [DONE]` has arrived."""

    async def aclose(self) -> None:
        """Stop reading the events, if they were begun (the model's block closes the response)."""
        if isinstance(self._iterator, AsyncGenerator):
            await self._iterator.aclose()

    async def _events(self) -> AsyncIterator[ModelResponseStreamEvent]:
        server_events = self._server_events()
        try:
            async for name, data in server_events:
                self._chunks += 1
                for event in self._read_chunk(name, data):
                    yield event
        finally:
            await server_events.aclose()
        if self._done:
            return
        if self._chunks == 0 and self._unrecognised:
            raise UnexpectedModelBehavior(
                f"Expected a stream of server-sent events from {self._url}, got {_excerpt(self._unrecognised)}"
            )
        raise UnexpectedModelBehavior(
            f"The stream from {self._url} ended before `data: [DONE]`, after {self._chunks} chunk(s); "
            "the answer is incomplete"
        )

    async def _server_events(self) -> AsyncGenerator[tuple[str, str], None]:
        """Each event's name (`''` when it has none) and data, as the lines arrive, up to `data: [DONE]`."""
        lines = self._response.aiter_lines()
        name, data = "", list[str]()
        try:
            while True:
                try:
                    line = await anext(lines, None)
                except httpx.TransportError as exc:
                    raise UnexpectedModelBehavior(
                        f"The stream from {self._url} broke off before `data: [DONE]`, "
                        f"after {self._chunks} chunk(s): {_describe(exc)}"
                    ) from exc
                if not line:  # a blank line ends an event; so does the end of the body
                    joined = "\n".join(data)
                    if joined == "[DONE]":
                        self._done = True
                        await _drain(lines)
                        return
                    if joined:  # an event without data is not dispatched
                        yield name, joined
                    if line is None:
                        return
                    name, data = "", []
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "data":
                    data.append(value)
                elif field == "event":
                    name = value
                elif field not in ("", "id", "retry"):  # "": a comment
                    self._note_unrecognised(line)
        finally:
            if isinstance(lines, AsyncGenerator):
                await lines.aclose()

    def _note_unrecognised(self, line: str) -> None:
        if len(self._unrecognised) <= _EXCERPT:
            self._unrecognised += line + "\n"

    def _read_chunk(self, name: str, data: str) -> list[ModelResponseStreamEvent]:
        try:
            chunk: object = json.loads(data)
        except ValueError as exc:
            raise UnexpectedModelBehavior(
                f"Expected a JSON chat.completion.chunk in the stream from {self._url}, got {_excerpt(data)}"
            ) from exc
        if not isinstance(chunk, dict):
            raise UnexpectedModelBehavior(
                f"Expected a JSON object (a chat.completion.chunk) in the stream from {self._url}, got {_excerpt(data)}"
            )
        error = chunk.get("error")
        if error is not None or name == "error":
            error = chunk if error is None else error
            message = error.get("message") if isinstance(error, dict) else None
            raise UnexpectedModelBehavior(
                f"The stream from {self._url} reported an error after {self._chunks - 1} chunk(s): "
                f"{message if isinstance(message, str) else _excerpt(json.dumps(error))}",
                body=json.dumps(error),
            )
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model_name = model
        created = chunk.get("created")
        if isinstance(created, int | float) and not isinstance(created, bool):
            self.timestamp = datetime.fromtimestamp(created, UTC)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = _read_usage(usage)  # the counts so far, not an increment
        choices = chunk.get("choices")
        if choices is None or choices == []:
            return []  # the usage chunk has none
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._unexpected("`choices` to be a list of objects", data)
        delta = choices[0].get("delta")
        if delta is None:
            return []
        if not isinstance(delta, dict):
            raise self._unexpected("`choices[0].delta` to be an object", data)
        events: list[ModelResponseStreamEvent] = []
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise self._unexpected("`content` to be text", data)
        if content:
            events.append(self.parts.text_delta(content, key="content"))
        calls = delta.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise self._unexpected("`tool_calls` to be a list", data)
        for position, call in enumerate(calls or ()):
            event = self._read_call(position, call, data)
            if event is not None:
                events.append(event)
        return events

    def _read_call(self, position: int, call: object, data: str) -> ModelResponseStreamEvent | None:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(function, dict | None):
            raise self._unexpected("each tool call to be an object with a `function` object", data)
        function = function or {}
        name, arguments, call_id = function.get("name"), function.get("arguments"), call.get("id")
        if not all(isinstance(value, str | None) for value in (name, arguments, call_id)):
            raise self._unexpected("a tool call's `id`, `function.name` and `function.arguments` to be text", data)
        index = call.get("index")
        key = index if isinstance(index, int) and not isinstance(index, bool) else position
        if not (name or arguments or call_id):
            return None  # nothing new
        return self.parts.tool_call_delta(
            key, tool_name=name or None, args=arguments or None, tool_call_id=call_id or None
        )

    def _unexpected(self, what: str, data: str) -> UnexpectedModelBehavior:
        return UnexpectedModelBehavior(
            f"Expected {what} in chunk {self._chunks} of the stream from {self._url}, got {_excerpt(data)}"
        )


# -- mapping messages to the wire -----------------------------------------------------------


def _map_request(message: ModelRequest) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, SystemPromptPart):
            wire.append({"role": "system", "content": part.content})
        elif isinstance(part, UserPromptPart):
            wire.append({"role": "user", "content": _user_content(part)})
        elif isinstance(part, ToolReturnPart):
            call_id = _need_call_id(part.tool_call_id, part)
            wire.append({"role": "tool", "tool_call_id": call_id, "content": part.model_response_str()})
        elif isinstance(part, RetryPromptPart):
            if part.tool_name is None:
                wire.append({"role": "user", "content": part.model_response()})
            else:
                call_id = _need_call_id(part.tool_call_id, part)
                wire.append({"role": "tool", "tool_call_id": call_id, "content": part.model_response()})
        else:  # pragma: no cover - the part types are closed
            raise UserError(f"Cannot send {type(part).__name__} to an OpenAI model")
    return wire


def _user_content(part: UserPromptPart) -> str | list[dict[str, Any]]:
    if isinstance(part.content, str):
        return part.content
    return [_content_item(item) for item in part.content]


def _content_item(item: object) -> dict[str, Any]:
    if isinstance(item, str):
        return {"text": item, "type": "text"}
    if isinstance(item, ImageUrl):
        return {"image_url": {"url": item.url}, "type": "image_url"}
    if isinstance(item, BinaryContent) and item.is_image:
        encoded = base64.b64encode(item.data).decode()
        return {"image_url": {"url": f"data:{item.media_type};base64,{encoded}"}, "type": "image_url"}
    if isinstance(item, BinaryContent) and item.is_audio and item.media_type in ("audio/mpeg", "audio/wav"):
        encoded = base64.b64encode(item.data).decode()
        return {"input_audio": {"data": encoded, "format": item.format}, "type": "input_audio"}
    what = f"{type(item).__name__} ({item.media_type})" if isinstance(item, BinaryContent) else type(item).__name__
    raise UserError(
        f"OpenAIModel can send text, images and mp3/wav audio bytes in a user prompt, not {what}: {item!r:.100}"
    )


def _map_response(message: ModelResponse) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            texts.append(part.content)
        else:
            calls.append(
                {
                    "id": _need_call_id(part.tool_call_id, part),
                    "type": "function",
                    "function": {"name": part.tool_name, "arguments": part.args_as_json_str()},
                }
            )
    wire: dict[str, Any] = {"role": "assistant"}
    if texts:
        wire["content"] = "\n\n".join(texts)
    if calls:
        wire["tool_calls"] = calls
    return wire


def _need_call_id(call_id: str | None, part: object) -> str:
    if call_id is None:
        raise UserError(
            f"OpenAI needs the id of every tool call, and this part has none: {part!r:.200}. "
            "It probably comes from a conversation with another model."
        )
    return call_id


def _map_tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters_json_schema},
    }


# -- reading the answer ------------------------------------------------------------------------


def _read_parts(message: dict[str, Any], url: str) -> list[ModelResponsePart]:
    parts: list[ModelResponsePart] = []
    content = message.get("content")
    if content is not None:
        if not isinstance(content, str):
            raise UnexpectedModelBehavior(
                f"Expected `content` to be text in the answer from {url}, got {_excerpt(json.dumps(content))}"
            )
        parts.append(TextPart(content))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str):
            raise UnexpectedModelBehavior(
                f"Expected each tool call to have a function name in the answer from {url}, "
                f"got {_excerpt(json.dumps(call))}"
            )
        arguments = function.get("arguments")
        if arguments is None:
            arguments = ""
        if not isinstance(arguments, str | dict):
            raise UnexpectedModelBehavior(
                f"Expected the arguments of tool call {name!r} to be a JSON string from {url}, "
                f"got {_excerpt(json.dumps(arguments))}"
            )
        call_id = call.get("id")
        parts.append(ToolCallPart(name, arguments, tool_call_id=call_id if isinstance(call_id, str) else None))
    return parts


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_usage(usage: object) -> Usage:
    """The request's usage; `details` merges the completion and then the prompt counters."""
    if not isinstance(usage, dict):
        return Usage(requests=1)
    details: dict[str, int] = {}
    for key in ("completion_tokens_details", "prompt_tokens_details"):
        counters = usage.get(key)
        if isinstance(counters, dict):
            details.update({name: value for name, value in counters.items() if _int_or_none(value) is not None})
    return Usage(
        requests=1,
        request_tokens=_int_or_none(usage.get("prompt_tokens")),
        response_tokens=_int_or_none(usage.get("completion_tokens")),
        total_tokens=_int_or_none(usage.get("total_tokens")),
        details=details or None,
    )


def _error_body(response: httpx.Response) -> object | None:
    """The API's `error` object when the body is JSON with one, else the JSON, else the text."""
    try:
        data: object = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text or None
    if isinstance(data, dict) and data.get("error") is not None:
        error: object = data["error"]
        return error
    return data


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows `data: [DONE]` (the end of the body), for a few seconds at most.

    The openai SDK does the same: a response read to its end leaves its connection
    free for the next request.
    """
    with anyio.move_on_after(_DRAIN_SECONDS):
        try:
            async for _ in lines:
                pass
        except httpx.TransportError:
            pass  # the answer is whole; only the connection is lost


async def _read_error_body(response: httpx.Response) -> object | None:
    """`_error_body` of a streamed answer, read first; None when it cannot be read."""
    try:
        await response.aread()
    except httpx.TransportError:
        return None  # the status says enough
    return _error_body(response)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _excerpt(text: str) -> str:
    if not text:
        return "an empty body"
    shown = text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."
    return repr(shown)


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return str(exc) or type(exc).__name__
