"""`tavily_search_tool(api_key)`: a tool that searches the web with Tavily (needs `tavily-python`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from railyard.agent.tools import Tool

__all__ = ("TavilySearchResult", "TavilySearchTool", "tavily_search_tool")


class TavilySearchResult(TypedDict):
    """One search result."""

    title: str
    """The page's title."""
    url: str
    """The page's URL."""
    content: str
    """An excerpt of the page."""
    score: float
    """How relevant Tavily finds it."""


_RESULTS = TypeAdapter(list[TavilySearchResult])


@dataclass
class TavilySearchTool:
    """Searches Tavily with `client`."""

    client: Any
    """A `tavily.AsyncTavilyClient`."""

    async def __call__(
        self,
        query: str,
        search_deep: Literal["basic", "advanced"] = "basic",
        topic: Literal["general", "news"] = "general",
        time_range: Literal["day", "week", "month", "year", "d", "w", "m", "y"] | None = None,
    ) -> list[TavilySearchResult]:
        """Searches Tavily for the given query and returns the results.

        Args:
            query: The search query to execute with Tavily.
            search_deep: The depth of the search.
            topic: The category of the search.
            time_range: The time range back from the current date to filter results.

        Returns:
            The search results.
        """
        answer = await self.client.search(query, search_depth=search_deep, topic=topic, time_range=time_range)
        return _RESULTS.validate_python(answer["results"])


def tavily_search_tool(api_key: str) -> Tool[Any]:
    """A `tavily_search` tool, searching with a Tavily client for `api_key`.

    Raises:
        ImportError: the Tavily SDK is not installed.
    """
    try:
        from tavily import AsyncTavilyClient  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ImportError("tavily_search_tool() needs the Tavily SDK: `pip install tavily-python`") from exc
    search = TavilySearchTool(client=AsyncTavilyClient(api_key))
    return Tool(
        search.__call__,
        name="tavily_search",
        description="Searches Tavily for the given query and returns the results.",
    )
