"""The inspector served for real in tests: uvicorn on a loopback socket, in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from railyard.cli._load import load_graph
from railyard.inspector import create_app
from railyard.inspector._serve import Server
from railyard.store.urls import open_store

__all__ = ("Served", "serving")


class Served:
    """A running inspector: its base URL and the form token its pages carry."""

    def __init__(self, url: str, form_token: str) -> None:
        self.url = url
        self.form_token = form_token


@contextmanager
def serving(store_url: str, graphs: tuple[str, ...] = (), **options: Any) -> Iterator[Served]:
    """Serve an inspector over `store_url` until the block ends; `options` go to `create_app`."""
    started = threading.Event()
    port: list[int] = []
    holder: dict[str, Any] = {}
    failure: list[BaseException] = []

    def on_started(bound: int) -> None:
        port.append(bound)
        started.set()

    def serve() -> None:
        async def main() -> None:
            store = open_store(store_url)
            app = create_app(store, [load_graph(g) for g in graphs], **{"store_label": store_url, **options})
            holder["app"] = app
            config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
            server = Server(config, on_started)
            holder["server"] = server
            try:
                await server.serve()
            finally:
                await store.aclose()

        try:
            asyncio.run(main())
        except BaseException as err:
            failure.append(err)
        finally:
            started.set()

    thread = threading.Thread(target=serve, name="inspector", daemon=True)
    thread.start()
    started.wait()
    if failure or not port:
        raise RuntimeError(f"the inspector did not start: {failure!r}")
    app = holder["app"]
    try:
        yield Served(f"http://127.0.0.1:{port[0]}", app.state.inspector.guard.form_token)
    finally:
        holder["server"].should_exit = True
        thread.join()
        if failure:
            raise failure[0]
