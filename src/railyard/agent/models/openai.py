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

import email.utils
import functools
import math
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import anyio

try:
    import httpx
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "railyard.agent.models.openai needs httpx: install it with `pip install 'railyard-graph[openai]'`"
    ) from _exc

from railyard.agent.exceptions import ModelConnectionError, ModelHTTPError, UnexpectedModelBehavior, UserError
from railyard.agent.messages import (  # noqa: F401  # with names pydantic-ai's module offers too
    AudioUrl,
    BinaryContent,
    DocumentUrl,
    ImageUrl,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    ModelResponseStreamEvent,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from railyard.agent.models import (  # noqa: F401  # with names pydantic-ai's module offers too
    AgentInfo,
    Model,
    ModelRequestParameters,
    StreamedResponse,
    cached_async_http_client,
    check_allow_model_requests,
)
from railyard.agent.models._openai_messages import (
    describe,
    encode,
    error_body,
    excerpt,
    map_request,
    map_response,
    map_tool,
    read_error_body,
    read_parts,
    read_usage,
)
from railyard.agent.models._openai_stream import OpenAIStreamedResponse
from railyard.agent.providers import Provider, infer_provider  # noqa: F401  # infer_provider: as in pydantic-ai
from railyard.agent.settings import ModelSettings
from railyard.agent.tools import ToolDefinition  # noqa: F401  # as in pydantic-ai's module
from railyard.agent.usage import Usage

__all__ = (
    "DEFAULT_BASE_URL",
    "OpenAIModel",
    "OpenAIModelName",
    "OpenAIModelSettings",
    "OpenAIProvider",
    "OpenAIStreamedResponse",
    "OpenAISystemPromptRole",
)

OpenAIModelName = str
"""The name of an OpenAI model (`'gpt-4o'`, `'o3-mini'`, ...), or of any model an OpenAI-compatible API serves."""
OpenAISystemPromptRole = Literal["system", "developer", "user"]
"""The role system prompts are sent with."""


class OpenAIModelSettings(ModelSettings, total=False):
    """Settings for an OpenAI model: the common ones, and OpenAI's own."""

    openai_reasoning_effort: Literal["low", "medium", "high"]
    """How hard a reasoning model (o1, o3-mini) thinks before answering."""


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


def _user_agent() -> str:
    from railyard._version import railyard_version

    return f"railyard/{railyard_version()}"


_USER_AGENT = _user_agent()


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for the clients this module makes (loading the CA bundle is slow)."""
    return httpx.create_ssl_context()


class OpenAIProvider(Provider["httpx.AsyncClient | None"]):
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
        self._base_url = url.rstrip("/")
        self.http_client = http_client
        """The client every request uses, or None for a fresh one per request."""
        self._api_key = key

    @property
    def name(self) -> str:
        """Always `'openai'`."""
        return "openai"

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._base_url

    @property
    def client(self) -> httpx.AsyncClient | None:
        """The client every request uses, or None for a fresh one per request."""
        return self.http_client

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
            RuntimeError: `ALLOW_MODEL_REQUESTS` is False.
        """
        check_allow_model_requests()
        settings = info.model_settings or {}
        body = self._build_body(messages, info, settings)
        url = f"{self.provider.base_url}/chat/completions"
        limits = self._limits(settings)
        content = encode(body)
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
            RuntimeError: `ALLOW_MODEL_REQUESTS` is False.
        """
        check_allow_model_requests()
        settings = info.model_settings or {}
        body = self._build_body(messages, info, settings, stream=True)
        url = f"{self.provider.base_url}/chat/completions"
        limits = self._limits(settings)
        content = encode(body)
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
                error = await read_error_body(response)
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
                wire.extend(map_request(message))
            else:
                wire.append(map_response(message))
        tools = [map_tool(tool) for tool in [*info.function_tools, *info.result_tools]]
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
                    raise ModelConnectionError(f"Could not reach {url}: {describe(exc)}") from exc
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
            raise ModelHTTPError(response.status_code, self._name, error_body(response)) from exc
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnexpectedModelBehavior(
                f"Expected a JSON Chat Completions body from {url}, got {excerpt(response.text)}"
            ) from exc
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UnexpectedModelBehavior(
                f"Expected a Chat Completions body with `choices` from {url}, got {excerpt(response.text)}"
            )
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise UnexpectedModelBehavior(
                f"Expected `choices[0].message` in the body from {url}, got {excerpt(response.text)}"
            )
        parts = read_parts(message, url)
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
        return model_response, read_usage(data.get("usage"))
