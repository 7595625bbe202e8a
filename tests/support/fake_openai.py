"""A real, scripted Chat Completions server on 127.0.0.1 for the tests of `OpenAIModel`.

`FakeOpenAI()` listens on a free port in a background thread. A test scripts the
replies (`fake.reply(...)`, each a `Reply` of status, headers and body, answered in
order; `fake.reply_forever(...)` for one answered every time after those) and then
reads `fake.requests`: each request's method, path, headers (lower-cased names) and
JSON body, in the order they came. `chat_text` and `chat_tool_calls` build bodies like
the ones OpenAI sends.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ("FakeOpenAI", "RecordedRequest", "Reply", "chat_text", "chat_tool_calls", "error_body")


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


class FakeOpenAI:
    """A Chat Completions server on 127.0.0.1 that answers as scripted and records what it gets."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: list[Reply] = []
        self._forever: Reply | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()

    def reply(self, *replies: Reply | dict[str, Any]) -> None:
        """Queue replies (a dict is a 200 with that JSON body), answered one per request."""
        with self._lock:
            self._script.extend(r if isinstance(r, Reply) else Reply(200, r) for r in replies)

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
                reply = fake._next_reply(RecordedRequest("POST", self.path, headers, body, time.monotonic()))
                if reply.drop:
                    self.close_connection = True
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                if isinstance(reply.body, bytes):
                    data = reply.body
                elif isinstance(reply.body, str):
                    data = reply.body.encode()
                else:
                    data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                names = {name.lower() for name in reply.headers}
                if "content-type" not in names:
                    self.send_header("Content-Type", "application/json")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timed out) before the answer
                    self.close_connection = True

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
