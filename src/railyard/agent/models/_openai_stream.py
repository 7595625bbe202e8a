"""`OpenAIStreamedResponse`: a Chat Completions answer read from its server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime

import anyio
import httpx

from railyard.agent.events import ModelResponseStreamEvent
from railyard.agent.exceptions import UnexpectedModelBehavior
from railyard.agent.models import StreamedResponse
from railyard.agent.models._openai_messages import EXCERPT, describe, excerpt, read_usage
from railyard.agent.usage import Usage

__all__ = ("OpenAIStreamedResponse",)

_DRAIN_SECONDS = 2.0
"""How long to wait for the end of a stream's body after `data: [DONE]`."""


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
                f"Expected a stream of server-sent events from {self._url}, got {excerpt(self._unrecognised)}"
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
                        f"after {self._chunks} chunk(s): {describe(exc)}"
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
        if len(self._unrecognised) <= EXCERPT:
            self._unrecognised += line + "\n"

    def _read_chunk(self, name: str, data: str) -> list[ModelResponseStreamEvent]:
        try:
            chunk: object = json.loads(data)
        except ValueError as exc:
            raise UnexpectedModelBehavior(
                f"Expected a JSON chat.completion.chunk in the stream from {self._url}, got {excerpt(data)}"
            ) from exc
        if not isinstance(chunk, dict):
            raise UnexpectedModelBehavior(
                f"Expected a JSON object (a chat.completion.chunk) in the stream from {self._url}, got {excerpt(data)}"
            )
        error = chunk.get("error")
        if error is not None or name == "error":
            error = chunk if error is None else error
            message = error.get("message") if isinstance(error, dict) else None
            raise UnexpectedModelBehavior(
                f"The stream from {self._url} reported an error after {self._chunks - 1} chunk(s): "
                f"{message if isinstance(message, str) else excerpt(json.dumps(error))}",
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
            self._usage = read_usage(usage)  # the counts so far, not an increment
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
            f"Expected {what} in chunk {self._chunks} of the stream from {self._url}, got {excerpt(data)}"
        )


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
