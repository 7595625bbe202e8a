"""`FileStatePersistence`: a run's snapshots in a JSON file, for pausing and resuming.

The file holds the list of snapshots as JSON, the format pydantic-graph writes, so a
file written by either can be resumed by the other. It is rewritten atomically (a
temporary file renamed over it) after every event of the run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import pydantic

from railyard._copy import deep_copy
from railyard.exceptions import PersistenceError
from railyard.nodes import BaseNode, End
from railyard.persistence import NodeSnapshot, RunEndT, Snapshot, StateT
from railyard.persistence._schema import node_types
from railyard.persistence.in_mem import LogPersistence
from railyard.runtime.recorder import Outcome
from railyard.runtime.tasks import Task
from railyard.store.memory import MemoryRecorder

if TYPE_CHECKING:
    from railyard.graph import Graph
    from railyard.runtime.recorder import Recorder

__all__ = ("FileStatePersistence",)


class FileStatePersistence(LogPersistence[StateT, RunEndT]):
    """Keeps every snapshot of a run in a JSON file, so the run can resume in another process."""

    json_file: Path
    """The file the snapshots are written to."""

    def __init__(self, json_file: Path | str) -> None:
        super().__init__(keep_all=True, copy_state=deep_copy)
        self.json_file = Path(json_file)

    def __repr__(self) -> str:
        return f"FileStatePersistence(json_file={self.json_file!r})"

    def _copy_snapshot(self, snapshot: NodeSnapshot[StateT, RunEndT]) -> NodeSnapshot[StateT, RunEndT]:
        # a resumed run mutates its state; the stored snapshot keeps the state it had
        return deep_copy(snapshot)

    def _recorder(self, graph: Graph[Any, Any, Any]) -> Recorder:
        return _SavingRecorder(self, MemoryRecorder(self._log, self._copy_state))

    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        """Record a node that will run next, and save."""
        await self._reload()
        await super().snapshot_node(state, next_node)
        await self._save()

    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        """Record `next_node` unless already recorded, and save."""
        await self._reload()
        if snapshot_id not in self._log.task_status:
            await super().snapshot_node(state, next_node)
            await self._save()

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        """Record the end of the run, and save."""
        await super().snapshot_end(state, end)
        await self._save()

    @asynccontextmanager
    async def record_run(self, snapshot_id: str) -> AsyncIterator[None]:
        """Mark the snapshot running, then success or error, saving each change."""
        await self._reload()
        try:
            async with super().record_run(snapshot_id):
                await self._save()
                yield
        finally:
            await self._save()

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        """Claim the first node in the file that has not run yet."""
        await self._reload()
        snapshot = await super().load_next()
        if snapshot is not None:
            await self._save()
        return snapshot

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        """All snapshots in the file."""
        await self._reload()
        return await super().load_all()

    async def _reload(self) -> None:
        """Replace the in-memory log with the file's content, if the file exists."""
        adapter = self._adapter()
        path = self.json_file

        def read() -> bytes | None:
            return path.read_bytes() if path.exists() else None

        content = await anyio.to_thread.run_sync(read)
        if not content:
            return
        with node_types(self._nodes):
            try:
                snapshots = adapter.validate_json(content)
            except pydantic.ValidationError as err:
                raise PersistenceError(f"Cannot load the snapshots in {path}: {err}", path=str(path)) from err
        self._replace(snapshots)

    async def _save(self) -> None:
        """Write every snapshot to the file, atomically."""
        with node_types(self._nodes):
            content = self._adapter().dump_json(self._view.snapshots(), indent=2)
        path = self.json_file

        def write() -> None:
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(content)
            os.replace(temporary, path)

        await anyio.to_thread.run_sync(write)


class _SavingRecorder:
    """Records into the in-memory log, then saves the file."""

    __slots__ = ("inner", "persistence")

    def __init__(self, persistence: FileStatePersistence[Any, Any], inner: MemoryRecorder) -> None:
        self.persistence = persistence
        self.inner = inner

    async def tasks_created(self, tasks: Sequence[Task], state: Any) -> None:
        await self.persistence._reload()  # pyright: ignore[reportPrivateUsage]
        self.inner.tasks_created(tasks, state)
        await self.persistence._save()  # pyright: ignore[reportPrivateUsage]

    async def step_started(self, task: Task, state: Any) -> None:
        self.inner.step_started(task, state)
        await self.persistence._save()  # pyright: ignore[reportPrivateUsage]

    async def step_finished(self, task: Task, outcome: Outcome, state: Any, duration: float) -> None:
        self.inner.step_finished(task, outcome, state, duration)
        await self.persistence._save()  # pyright: ignore[reportPrivateUsage]

    async def step_failed(self, task: Task, error: BaseException, duration: float) -> None:
        self.inner.step_failed(task, error, duration)
        await self.persistence._save()  # pyright: ignore[reportPrivateUsage]
