"""`duckduckgo_search_tool()`: a tool that searches the web with DuckDuckGo (the SDK: `duckduckgo-search`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from railyard.agent.tools import Tool

__all__ = ("DuckDuckGoResult", "DuckDuckGoSearchTool", "duckduckgo_search_tool")


class DuckDuckGoResult(TypedDict):
    """One search result."""

    title: str
    """The page's title."""
    href: str
    """The page's URL."""
    body: str
    """An excerpt of the page."""


_RESULTS = TypeAdapter(list[DuckDuckGoResult])


@dataclass
class DuckDuckGoSearchTool:
    """Searches DuckDuckGo with `client`, at most `max_results` results (the SDK's default if None)."""

    client: Any
    """A `duckduckgo_search.DDGS` client."""
    max_results: int | None = None
    """The most results to return."""

    async def __call__(self, query: str) -> list[DuckDuckGoResult]:
        """Searches DuckDuckGo for the given query and returns the results.

        Args:
            query: The query to search for.

        Returns:
            The search results.
        """
        search = functools.partial(self.client.text, query, max_results=self.max_results)
        return _RESULTS.validate_python(await anyio.to_thread.run_sync(search))


def duckduckgo_search_tool(duckduckgo_client: Any | None = None, max_results: int | None = None) -> Tool[Any]:
    """A `duckduckgo_search` tool, searching with `duckduckgo_client` (a new `DDGS()` by default).

    Raises:
        ImportError: no client was given and the DuckDuckGo SDK is not installed.
    """
    if duckduckgo_client is None:
        try:
            from duckduckgo_search import DDGS  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ImportError(
                "duckduckgo_search_tool() needs the DuckDuckGo SDK: `pip install duckduckgo-search`"
            ) from exc
        duckduckgo_client = DDGS()
    search = DuckDuckGoSearchTool(client=duckduckgo_client, max_results=max_results)
    return Tool(
        search.__call__,
        name="duckduckgo_search",
        description="Searches DuckDuckGo for the given query and returns the results.",
    )
