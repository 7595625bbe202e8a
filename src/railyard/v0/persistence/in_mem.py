"""`pydantic_graph.persistence.in_mem` (pydantic-graph 0.0.40): the in-memory persistences."""

from __future__ import annotations

from railyard.persistence.in_mem import FullStatePersistence, SimpleStatePersistence

__all__ = ("FullStatePersistence", "SimpleStatePersistence")
