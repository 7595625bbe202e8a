"""Names that test suites written for pydantic-graph patch, and what patching them changes."""

from __future__ import annotations

import itertools
from pathlib import Path
from unittest.mock import patch

import pytest

from railyard import FullStatePersistence, SqliteStore
from railyard.testing._sample import CountTo, CrashState, count_graph

pytestmark = pytest.mark.anyio


def _counting() -> patch:  # type: ignore[type-arg]
    numbers = itertools.count(1)
    return patch("railyard.nodes.generate_snapshot_id", side_effect=lambda node_id: f"{node_id}:{next(numbers)}")


async def test_patching_generate_snapshot_id_makes_every_snapshot_id() -> None:
    persistence = FullStatePersistence[CrashState, int]()
    with _counting():
        await count_graph.run(CountTo(2), state=CrashState(), persistence=persistence)
    assert [snapshot.id for snapshot in persistence.history] == ["CountTo:1", "CountTo:2", "CountTo:3", "end:4"]


async def test_patched_ids_are_what_a_durable_run_records(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    with _counting():
        await count_graph.run(CountTo(1), state=CrashState(), store=store, run_id="r")
    bodies = " ".join(record.body for record in await store.read("r"))
    assert '"task_id":"CountTo:1"' in bodies and '"task_id":"CountTo:2"' in bodies
    await store.aclose()


async def test_without_a_patch_ids_are_unique_hex() -> None:
    persistence = FullStatePersistence[CrashState, int]()
    await count_graph.run(CountTo(2), state=CrashState(), persistence=persistence)
    ids = [snapshot.id for snapshot in persistence.history]
    assert len(set(ids)) == len(ids)
    assert all(len(snapshot_id.partition(":")[2]) == 32 for snapshot_id in ids)
