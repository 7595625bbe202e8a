"""Opening a store from a URL, for command lines, configuration and subprocesses."""

from __future__ import annotations

from urllib.parse import urlsplit

from railyard.store import RunStore

__all__ = ("open_store",)


def open_store(url: str) -> RunStore:
    """The store a URL names.

    - `sqlite:///path/to/runs.db` (or `sqlite:relative/runs.db`): a `SqliteStore`.
    - `file:///path/to/directory` (or `file:relative/dir`): a `FileStore`.
    - `postgresql://user:password@host:port/database`: a `PostgresStore` (`railyard-graph[postgres]`).
    - `memory:`: a new, empty `MemoryStore`.

    Raises:
        ValueError: the URL's scheme is not one of these.
    """
    parts = urlsplit(url)
    path = parts.path if not parts.netloc else f"//{parts.netloc}{parts.path}"
    if parts.scheme == "sqlite":
        from railyard.store.sqlite import SqliteStore

        return SqliteStore(path)
    if parts.scheme == "file":
        from railyard.store.file import FileStore

        return FileStore(path)
    if parts.scheme in ("postgresql", "postgres"):
        from railyard.store.postgres import PostgresStore

        return PostgresStore(url)
    if parts.scheme == "memory":
        from railyard.store.memory import MemoryStore

        return MemoryStore()
    raise ValueError(
        f"Cannot open a run store from {url!r}: use sqlite:///path.db, file:///directory, "
        f"postgresql://user@host/database or memory:"
    )
