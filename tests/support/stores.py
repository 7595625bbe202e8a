"""`open_test_store(kind, tmp_path, request)`: a fresh store of each backend, for tests parametrized over them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from railyard.store import RunStore
from railyard.store.file import FileStore
from railyard.store.memory import MemoryStore
from railyard.store.sqlite import SqliteStore

__all__ = ("open_test_store",)


def open_test_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> RunStore:
    """A new, empty store: `memory`, `sqlite`, `file`, or `postgres` (a new database on the test server)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqliteStore(tmp_path / "runs.db")
    if kind == "file":
        return FileStore(tmp_path / "runs")
    from railyard.store.postgres import PostgresStore

    make: Callable[[], str] = request.getfixturevalue("new_postgres_database")
    return PostgresStore(make())
