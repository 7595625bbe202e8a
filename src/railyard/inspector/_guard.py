"""The inspector's safety rules, applied to every request before any page or action runs.

- A token, when one is set, is checked on every request (a bearer header, the cookie the
  first visit with `?token=` sets, or that query parameter), in constant time.
- The Host header must be one the inspector serves (so a page on another site cannot
  reach a loopback inspector through a name that resolves to 127.0.0.1).
- State-changing requests are POSTs; a POST from another site is refused (its Origin,
  or the browser's `Sec-Fetch-Site`), and the forms carry a per-process token that the
  action checks (`Guard.form_token_ok`).
- Every response forbids framing and inline scripts (the pages need none).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

__all__ = ("TOKEN_COOKIE", "Guard", "GuardMiddleware")

TOKEN_COOKIE = "railyard_token"
"""The cookie that keeps the token after the first visit with `?token=`: `railyard_token_<port>`, so that
inspectors on two ports of one host (cookies ignore ports) do not overwrite each other's."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


@dataclass(slots=True)
class Guard:
    """What the inspector checks: its access token, the hosts it answers to, and its form token."""

    token: str | None
    """The access token every request must carry; `None`: none (loopback only)."""
    hosts: frozenset[str]
    """The host names the Host header may give, on any port (`*` in it: any)."""
    form_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    """The token every form carries, made anew each time the inspector starts."""

    def token_ok(self, given: str | None) -> bool:
        """Whether `given` is the access token (always, when none is set)."""
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def form_token_ok(self, given: str | None) -> bool:
        """Whether a submitted form carries this process's form token."""
        return given is not None and hmac.compare_digest(given.encode(), self.form_token.encode())

    def host_ok(self, host: str | None) -> bool:
        """Whether the Host header names this inspector (its name, on any port)."""
        if "*" in self.hosts:
            return True
        if host is None:
            return False
        name = host.lower()
        bracketed = name.startswith("[") and "]" in name  # an IPv6 address: [::1]:7860
        return (name[1 : name.find("]")] if bracketed else name.rsplit(":", 1)[0]) in self.hosts


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


class GuardMiddleware:
    """ASGI middleware that applies a `Guard` to each HTTP request."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request the guard does not let through; add the safety headers to every answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not self.guard.host_ok(host):
            await _refuse(send, 421, f"this inspector does not answer to the host {host!r}")
            return
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if self.guard.token is not None:
            cookie_name = f"{TOKEN_COOKIE}_{_port(host)}"
            given = [_bearer(scope), _cookie(scope, cookie_name), *(value for key, value in pairs if key == "token")]
            if not any(self.guard.token_ok(one) for one in given if one is not None):
                await _refuse(send, 401, "a token is needed: open the address `railyard ui` printed (it has ?token=)")
                return
            if any(key == "token" for key, _ in pairs) and scope["method"] == "GET":
                # keep it in a cookie, and out of the address bar: the same path and query without it
                kept = [(key, value) for key, value in pairs if key != "token"]
                raw = scope.get("raw_path") or scope["path"].encode()
                path = "/" + raw.decode("latin-1").lstrip("/")  # one leading slash: never //elsewhere
                location = path + (f"?{urlencode(kept)}" if kept else "")
                cookie = f"{cookie_name}={quote(self.guard.token, safe='')}; Path=/; HttpOnly; SameSite=Lax"
                await _redirect(send, location, cookie)
                return
        if scope["method"] not in ("GET", "HEAD", "POST"):
            await _refuse(send, 405, f"{scope['method']} is not allowed here")
            return
        if scope["method"] == "POST" and _cross_site(scope, host):
            await _refuse(send, 403, "a request from another site cannot change runs")
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_guarded)


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


def _port(host: str | None) -> str:
    """The port a Host header names (`80` if none)."""
    if host and host.rsplit("]", 1)[-1].count(":") == 1:
        return host.rsplit(":", 1)[1]
    return "80"


def _cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie `name`, read leniently: other sites' odd cookies on this host do not hide it."""
    value = _header(scope, b"cookie")
    if not value:
        return None
    for part in value.split(";"):
        key, _, text = part.strip().partition("=")
        if key == name:
            return unquote(text)
    return None


def _cross_site(scope: Scope, host: str | None) -> bool:
    """Whether a browser says the request comes from another site (a client that is no browser says nothing)."""
    site = _header(scope, b"sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = _header(scope, b"origin")
    if origin is None:
        return False  # no browser sent it; the form token still has to match
    if origin == "null":
        return True
    return origin.split("://", 1)[-1].lower() != (host or "").lower()


async def _refuse(send: Send, status: int, text: str) -> None:
    body = f"railyard inspector: {text}\n".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, cookie: str) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1"))]
    await send({"type": "http.response.start", "status": 303, "headers": [*headers, *_HEADERS]})
    await send({"type": "http.response.body", "body": b""})
