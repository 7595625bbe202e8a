"""The inspector as an ASGI app: its routes, its static files, and the task group its resumed runs run in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from railyard.cli._load import LoadedGraph, _kind_of  # pyright: ignore[reportPrivateUsage]
from railyard.inspector._actions import cancel_run, fork_run, resume_run, signal_run
from railyard.inspector._context import Inspector
from railyard.inspector._guard import Guard, GuardMiddleware
from railyard.inspector._pages import run_events, run_page, runs_events, runs_page
from railyard.store import RunStore

__all__ = ("LOOPBACK", "create_app")

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
"""The hosts the inspector binds to without a token."""

_STATIC = Path(__file__).parent / "static"


def _hosts(host: str, allowed: Iterable[str]) -> frozenset[str]:
    """The host names (without ports) the Host header may give: a rebinding name never passes."""
    if host in ("0.0.0.0", "::"):  # every address: the token is the guard
        return frozenset({"*"})
    names = set(LOOPBACK) if host in LOOPBACK else {host}
    for name in allowed:
        plain = name.strip().lower()
        if plain.startswith("[") and "]" in plain:
            plain = plain[1 : plain.index("]")]
        elif plain.count(":") == 1:  # a port given with the name: any port is served
            plain = plain.split(":", 1)[0]
        names.add(plain)
    return frozenset(names)


def _loaded(graph: Any) -> LoadedGraph:
    if isinstance(graph, LoadedGraph):
        return graph
    kind = _kind_of(graph)
    if kind is None:
        raise TypeError(f"create_app(graphs=...) takes railyard graphs and agents, not a {type(graph).__name__}")
    name = getattr(graph, "name", None)
    if not name:
        raise ValueError("create_app(graphs=...): give each graph a name (its runs are recorded under it)")
    return LoadedGraph(str(name), kind, graph)


def create_app(
    store: RunStore,
    graphs: Iterable[Any] = (),
    *,
    store_label: str = "",
    token: str | None = None,
    read_only: bool = False,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    poll: float = 0.5,
) -> Starlette:
    """The inspector over `store`, as an ASGI app (serve it with uvicorn, or mount it in your own app).

    `graphs` are the graphs (node or builder graphs, or agents) whose runs it can resume
    and fork; a run of any other graph is shown, answered and cancelled all the same. `host` says where it is
    served, for the Host-header check (`allowed_hosts` adds names, `*` any); `token`, if
    set, must come with every request; `read_only` hides and refuses every action.
    """
    hosts = _hosts(host, allowed_hosts)
    if "*" in hosts and not token:
        raise ValueError(
            "an inspector that answers to any host name (host 0.0.0.0 or '*' allowed) needs a token: "
            "a page elsewhere could reach it through a name of its own"
        )
    inspector = Inspector(
        store=store,
        store_label=store_label or type(store).__name__,
        graphs={loaded.name or loaded.spec: loaded for loaded in map(_loaded, graphs)},
        guard=Guard(token, hosts),
        read_only=read_only,
        poll=poll,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            inspector.tasks = group
            try:
                yield
            finally:
                inspector.tasks = None
                group.cancel_scope.cancel()  # runs it drives stop between records; each stays resumable

    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/events", runs_events),
            Route("/events/runs/{run_id:path}", run_events),
            Route("/act/signal/{run_id:path}", signal_run, methods=["POST"]),
            Route("/act/cancel/{run_id:path}", cancel_run, methods=["POST"]),
            Route("/act/resume/{run_id:path}", resume_run, methods=["POST"]),
            Route("/act/fork/{run_id:path}", fork_run, methods=["POST"]),
            Route("/runs/{run_id:path}", run_page),
            Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        ],
        middleware=[Middleware(GuardMiddleware, guard=inspector.guard)],
        lifespan=lifespan,
    )
    app.state.inspector = inspector
    return app
