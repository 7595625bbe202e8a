"""`FileStatePersistence`: one run kept in a file, so it can pause and resume in another process.

It is a `DurablePersistence` over a one-run `FileStore`: the file is an append-only JSON
Lines run log, written record by record (a step costs the same at step 10 and at step
100,000), with a lock file beside it so that only one process drives the run. A file in
pydantic-graph's format (a JSON list of snapshots) is read as well, and rewritten as a
run log the first time the run is recorded to (the original kept beside it, in
`<file>.pydantic-graph`; `[]`, a run not started yet, is moved there and leaves no file).

As in pydantic-graph, a missing file holds no run yet, and an empty file is an error: a
`CorruptRunError` naming the file (a run log is created whole, with its first record).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import pydantic

from railyard._node_schema import node_types
from railyard.durable import DurablePersistence, record_node_id
from railyard.exceptions import PersistenceError, RunNotFound
from railyard.nodes import BaseNode, End
from railyard.persistence import (
    BaseStatePersistence,
    EndSnapshot,
    NodeSnapshot,
    RunEndT,
    Snapshot,
    SnapshotStatus,
    StateT,
    build_snapshot_list_type_adapter,
)
from railyard.persistence.in_mem import snapshot_records
from railyard.store.file import FileStore
from railyard.store.records import RunRecord

__all__ = (
    "FileStatePersistence",
    # re-exported, as pydantic-graph's `persistence.file` has them
    "BaseNode",
    "BaseStatePersistence",
    "End",
    "EndSnapshot",
    "Snapshot",
    "SnapshotStatus",
    "build_snapshot_list_type_adapter",
)


_LOCK_POLL = 0.01
"""Seconds between attempts to take a lock file another holder has."""


class _OneRunFileStore(FileStore):
    """A `FileStore` whose single run lives at a path of the caller's choosing."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.parent)
        self.file = path

    def __repr__(self) -> str:
        return f"FileStore({str(self.file)!r})"

    def path(self, run_id: str) -> Path:
        return self.file

    def _lock_path(self, run_id: str) -> Path:
        return self.file.with_name(f"{self.file.name}.lock")


class FileStatePersistence(DurablePersistence[StateT, RunEndT]):
    """Keeps one run in a file, so that it can stop and resume in another process."""

    json_file: Path
    """The file the run is kept in."""

    def __init__(self, json_file: Path | str) -> None:
        path = Path(json_file)
        super().__init__(_OneRunFileStore(path), run_id=path.stem or "run")
        self.json_file = path
        self._strict_new = False  # as in pydantic-graph: a new start is added to the file

    def __repr__(self) -> str:
        return f"FileStatePersistence(json_file={self.json_file!r})"

    @asynccontextmanager
    async def _lock(self, *, timeout: float = 1.0) -> AsyncIterator[None]:  # noqa: ASYNC109 - pydantic-graph's signature
        """Hold the file's lock (`<file>.lock`), waiting for another holder at most `timeout` seconds.

        pydantic-graph's private spelling, kept for code that takes the lock itself; a run
        holds this lock while it drives the file.

        Raises:
            TimeoutError: another holder kept the lock for `timeout` seconds.
        """
        store = self.store
        assert isinstance(store, _OneRunFileStore)
        with anyio.fail_after(timeout):
            # the holder may be another process: there is no event to wait on, only the lock file
            while (release := await store._try_lock(self.run_id)) is None:  # noqa: ASYNC110  # pyright: ignore[reportPrivateUsage]
                await anyio.sleep(_LOCK_POLL)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await release()

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        """Claim the node to run next, or `None` if the file holds no run yet."""
        try:
            return await super().load_next()
        except RunNotFound:
            return None

    async def load_all(self) -> list[Any]:
        """Every snapshot in the file (none if there is no file yet)."""
        try:
            return await super().load_all()
        except RunNotFound:
            return []

    async def _reload(self) -> list[RunRecord]:
        await self._convert_legacy_file()
        return await super()._reload()

    async def _open_run(self, *, new: bool) -> None:
        await self._convert_legacy_file()  # before the run's existence is asked
        await super()._open_run(new=new)

    async def _write(self, record: RunRecord, node_id: str | None) -> None:
        if self._require_run_log().exists is None:
            await self._convert_legacy_file()  # before the run's existence is asked
        await super()._write(record, node_id)

    async def _convert_legacy_file(self) -> None:
        """Rewrite a file in pydantic-graph's format (a JSON list of snapshots) as a run log."""
        path = self.json_file

        def head() -> bytes:
            try:
                with open(path, "rb") as file:
                    return file.read(1)
            except FileNotFoundError:
                return b""

        if await anyio.to_thread.run_sync(head) != b"[":
            return
        content = await anyio.to_thread.run_sync(path.read_bytes)
        with node_types(self._nodes):
            try:
                snapshots = self._adapter().validate_json(content)
            except pydantic.ValidationError as err:
                raise PersistenceError(f"Cannot load the snapshots in {path}: {err}", path=str(path)) from err
        codec = self._require_codec()
        records = snapshot_records(snapshots)
        lines = [
            codec.stored(record, node_id=record_node_id(record), first=index == 0)
            for index, record in enumerate(records)
        ]
        legacy = path.with_name(f"{path.name}.pydantic-graph")
        if not lines:
            # `[]`: pydantic-graph's file of a run not started yet, which a run may start in. A run
            # log has no empty form (an empty run file is damaged), so the run file goes aside whole.
            await anyio.to_thread.run_sync(os.replace, path, legacy)
            return
        # the original is copied aside first, then the run log replaces it in one rename:
        # a crash at any moment leaves the run readable
        await anyio.to_thread.run_sync(shutil.copy2, path, legacy)
        store = self.store
        assert isinstance(store, FileStore)
        await store.replace(self.run_id, lines)
