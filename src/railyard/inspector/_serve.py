"""Serving the inspector with uvicorn, and telling the caller where once it listens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn

__all__ = ("Server", "bound_port")


def bound_port(server: uvicorn.Server, default: int) -> int:
    """The port a started server listens on (the one the OS chose, for port 0)."""
    for listening in server.servers:
        for sock in listening.sockets:
            port: int = sock.getsockname()[1]
            return port
    return default


class Server(uvicorn.Server):
    """A uvicorn server that calls `on_started(port)` once its socket listens, and ends live streams on shutdown.

    A browser tab keeps its live stream open for as long as it is open: the app's streams
    end when shutdown begins (the app's `state.inspector.closing`), so stopping the server
    never waits for the tabs to close.
    """

    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], Any]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        """Start as uvicorn does, then say on which port."""
        await super().startup(sockets=sockets)
        if self.started:
            self.on_started(bound_port(self, self.config.port))

    async def shutdown(self, sockets: Any = None) -> None:
        """Tell the inspector's live streams to end, then shut down as uvicorn does."""
        inspector = getattr(getattr(self.config.app, "state", None), "inspector", None)
        if inspector is not None:
            inspector.closing = True
        await super().shutdown(sockets=sockets)
