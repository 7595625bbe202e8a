"""Ready-made tools: web search through DuckDuckGo (`duckduckgo`) or Tavily (`tavily`).

Each tool needs its vendor's SDK (`duckduckgo-search`, `tavily-python`), imported when the
tool is made; making one without it raises an `ImportError` that says what to install.
"""
