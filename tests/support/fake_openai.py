"""A real, scripted Chat Completions server on 127.0.0.1 for the tests of `OpenAIModel`.

`FakeOpenAI()` listens on a free port in a background thread. A test scripts the
replies (`fake.reply(...)`, each a `Reply` of status, headers and body, answered in
order; `fake.reply_forever(...)` for one answered every time after those) and then
reads `fake.requests`: each request's method, path, headers (lower-cased names) and
JSON body, in the order they came. `chat_text` and `chat_tool_calls` build bodies like
the ones OpenAI sends.

A reply can also be a stream of server-sent events (`Reply(events=[...])`, or a list
given to `fake.reply`), sent with chunked encoding like OpenAI's `"stream": true`
answers: each dict as `data: <json>` and a blank line, then `data: [DONE]`.
`stream_text`, `stream_tool_calls`, `chunk` and `usage_chunk` build its
`chat.completion.chunk` events. A stream can pause between events, end early without
`[DONE]` (`cut_after`) or break off mid-body (`drop_after`); each request's `outcome`
says how its answer went, e.g. whether the client hung up before the end.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = (
    "FakeOpenAI",
    "RecordedRequest",
    "Reply",
    "chat_text",
    "chat_tool_calls",
    "chunk",
    "error_body",
    "stream_text",
    "stream_tool_calls",
    "usage_chunk",
)


@dataclass
class Reply:
    """One scripted answer: a dict or list body is sent as JSON, a str or bytes as is."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (to make a client time out)."""
    drop: bool = False
    """Close the connection without answering at all."""
    events: list[Any] | None = None
    """Answer a stream of server-sent events instead of `body`: a dict is sent as
    `data: <json>` and a blank line, a str as is; `data: [DONE]` follows them."""
    event_delay: float = 0.0
    """Seconds to wait before each event after the first (and before `[DONE]`)."""
    cut_after: int | None = None
    """Send only this many events, then end the body without `[DONE]`."""
    drop_after: int | None = None
    """Send only this many events, then close the connection in the middle of the body."""


@dataclass
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: Any
    """The parsed JSON, or the text when it was not JSON."""
    at: float
    """`time.monotonic()` when it arrived."""
    peer: str = ""
    """The client's `host:port`: the same for requests on one kept-alive connection."""
    outcome: str = ""
    """How the answer went: `'complete'`, `'cut off'`, `'dropped'` or `'client disconnected'`."""
    events_sent: int = 0
    """How many events of a streamed answer were written."""
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    """Set once the server is done answering (`outcome` is then final)."""


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client resetting a kept-alive connection is no error; anything else is shown."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeOpenAI:
    """A Chat Completions server on 127.0.0.1 that answers as scripted and records what it gets."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: list[Reply] = []
        self._forever: Reply | None = None
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()

    def reply(self, *replies: Reply | dict[str, Any] | list[Any]) -> None:
        """Queue replies, answered one per request: a dict is a 200 with that JSON body, a list a 200 stream."""
        with self._lock:
            for given in replies:
                if isinstance(given, list):
                    self._script.append(Reply(200, events=given))
                elif isinstance(given, dict):
                    self._script.append(Reply(200, given))
                else:
                    self._script.append(given)

    def reply_forever(self, reply: Reply) -> None:
        """Answer `reply` to every request once the queued replies are used up."""
        with self._lock:
            self._forever = reply

    def bodies(self) -> list[Any]:
        """The JSON bodies of the requests so far."""
        with self._lock:
            return [request.body for request in self.requests]

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.pop(0)
            if self._forever is not None:
                return self._forever
        return Reply(500, error_body("fake server: no reply scripted for this request", "server_error"))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                headers = {name.lower(): value for name, value in self.headers.items()}
                peer = "{}:{}".format(*self.client_address[:2])
                request = RecordedRequest("POST", self.path, headers, body, time.monotonic(), peer=peer)
                reply = fake._next_reply(request)
                try:
                    request.outcome = self._answer(reply, request)
                finally:
                    request.finished.set()

            def _answer(self, reply: Reply, request: RecordedRequest) -> str:
                if reply.drop:
                    self.close_connection = True
                    return "dropped"
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.events is not None:
                    return self._stream(reply, request)
                if isinstance(reply.body, bytes):
                    data = reply.body
                elif isinstance(reply.body, str):
                    data = reply.body.encode()
                else:
                    data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self._headers(reply, "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timed out) before the answer
                    self.close_connection = True
                    return "client disconnected"
                return "complete"

            def _stream(self, reply: Reply, request: RecordedRequest) -> str:
                assert reply.events is not None
                events = [
                    event if isinstance(event, str) else f"data: {json.dumps(event)}\n\n" for event in reply.events
                ]
                limits = [n for n in (reply.cut_after, reply.drop_after) if n is not None]
                events = events[: min(limits)] if limits else [*events, "data: [DONE]\n\n"]
                self.send_response(reply.status)
                self._headers(reply, "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                try:
                    self.end_headers()
                    for number, event in enumerate(events):
                        if number and reply.event_delay:
                            time.sleep(reply.event_delay)
                        self._write_chunk(event.encode())
                        request.events_sent += 1
                    if reply.drop_after is not None:
                        self.close_connection = True  # without the last chunk: an incomplete body
                        return "dropped"
                    self._write_chunk(b"")
                except OSError:  # the client hung up
                    self.close_connection = True
                    return "client disconnected"
                return "cut off" if reply.cut_after is not None else "complete"

            def _write_chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _headers(self, reply: Reply, content_type: str) -> None:
                names = {name.lower() for name in reply.headers}
                if "content-type" not in names:
                    self.send_header("Content-Type", content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)

        return Handler


_DETAILS_ZERO = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def _completion(
    message: dict[str, Any],
    finish_reason: str,
    *,
    model: str,
    created: int,
    prompt_tokens: int,
    completion_tokens: int,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    usage.update(json.loads(json.dumps(_DETAILS_ZERO)) if details is None else details)
    return {
        "id": f"chatcmpl-{created}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_f9f4fb6dbf",
    }


def chat_text(
    text: str,
    *,
    model: str = "gpt-4o-2024-08-06",
    created: int = 1741996801,
    prompt_tokens: int = 120,
    completion_tokens: int = 3,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A completion answering `text` (`details`: the `*_tokens_details` entries of its usage)."""
    message = {"role": "assistant", "content": text, "refusal": None}
    return _completion(
        message,
        "stop",
        model=model,
        created=created,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        details=details,
    )


def chat_tool_calls(
    *calls: tuple[str, str, str],
    model: str = "gpt-4o-2024-08-06",
    created: int = 1741996800,
    prompt_tokens: int = 80,
    completion_tokens: int = 17,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A completion calling tools, each given as `(call id, tool name, arguments JSON string)`."""
    tool_calls = [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        for call_id, name, arguments in calls
    ]
    message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": tool_calls}
    return _completion(
        message,
        "tool_calls",
        model=model,
        created=created,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        details=details,
    )


def error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


STREAM_ID = "chatcmpl-BBaX3kQfCUcR7e0Vq1mHzTnPk9sLd"
"""The `id` of the chunks `chunk` builds."""


def chunk(
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    *,
    usage: dict[str, Any] | None = None,
    model: str = "gpt-4o-2024-08-06",
    created: int = 1741996801,
) -> dict[str, Any]:
    """One `chat.completion.chunk`: a choice with `delta`, or (without a delta) no choice, as the usage chunk has."""
    choices: list[dict[str, Any]] = []
    if delta is not None:
        choices.append({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason})
    return {
        "id": STREAM_ID,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_f9f4fb6dbf",
        "choices": choices,
        "usage": usage,
    }


def usage_chunk(
    prompt_tokens: int,
    completion_tokens: int,
    *,
    details: dict[str, Any] | None = None,
    model: str = "gpt-4o-2024-08-06",
    created: int = 1741996801,
) -> dict[str, Any]:
    """The last chunk of a stream asked for with `stream_options.include_usage`: no choices, the usage."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    usage.update(json.loads(json.dumps(_DETAILS_ZERO)) if details is None else details)
    return chunk(usage=usage, model=model, created=created)


def stream_text(
    *pieces: str,
    model: str = "gpt-4o-2024-08-06",
    created: int = 1741996801,
    prompt_tokens: int = 120,
    completion_tokens: int | None = None,
    details: dict[str, Any] | None = None,
    usage: bool = True,
) -> list[dict[str, Any]]:
    """The chunks of a streamed text answer: the role (with empty content), each piece, the stop, the usage."""
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None}, model=model, created=created)]
    chunks.extend(chunk({"content": piece}, model=model, created=created) for piece in pieces)
    chunks.append(chunk({}, "stop", model=model, created=created))
    if usage:
        count = len(pieces) if completion_tokens is None else completion_tokens
        chunks.append(usage_chunk(prompt_tokens, count, details=details, model=model, created=created))
    return chunks


def stream_tool_calls(
    *calls: tuple[str, str, str | list[str]],
    piece_size: int = 8,
    interleave: bool = False,
    model: str = "gpt-4o-2024-08-06",
    created: int = 1741996800,
    prompt_tokens: int = 80,
    completion_tokens: int = 17,
    usage: bool = True,
) -> list[dict[str, Any]]:
    """The chunks of a streamed answer calling tools, each `(call id, tool name, arguments)`.

    As OpenAI sends them: a call's first piece has its `index`, `id`, `type` and
    `function.name` (with empty arguments), the rest only `index` and a piece of
    `function.arguments`. Arguments given as a str are cut every `piece_size`
    characters; a list gives the pieces. The calls come one after the other, or
    with `interleave` piece by piece in turn.
    """
    per_call: list[list[dict[str, Any]]] = []
    for index, (call_id, name, arguments) in enumerate(calls):
        pieces = (
            [arguments[i : i + piece_size] for i in range(0, len(arguments), piece_size)]
            if isinstance(arguments, str)
            else arguments
        )
        first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        rest = [{"index": index, "function": {"arguments": piece}} for piece in pieces]
        per_call.append([first, *rest])
    if interleave:
        ordered = [piece for row in itertools.zip_longest(*per_call) for piece in row if piece is not None]
    else:
        ordered = [piece for call_pieces in per_call for piece in call_pieces]
    chunks = []
    for number, piece in enumerate(ordered):
        delta: dict[str, Any] = {"tool_calls": [piece]}
        if number == 0:
            delta = {"role": "assistant", "content": None, "tool_calls": [piece], "refusal": None}
        chunks.append(chunk(delta, model=model, created=created))
    chunks.append(chunk({}, "tool_calls", model=model, created=created))
    if usage:
        chunks.append(usage_chunk(prompt_tokens, completion_tokens, model=model, created=created))
    return chunks
