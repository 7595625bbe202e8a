"""`pydantic_graph.persistence.file` (pydantic-graph 0.0.40): a run kept in one file."""

from __future__ import annotations

from railyard.persistence.file import FileStatePersistence

__all__ = ("FileStatePersistence",)
