"""Fencing on the SQL stores: a driver whose run another driver took over cannot write to it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from railyard.store import RunStatus, StoredRecord
from railyard.store.base import LeaseLost, LockingStore
from railyard.store.postgres import PostgresStore
from railyard.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def _record(n: int, status: RunStatus = RunStatus.RUNNING) -> StoredRecord:
    return StoredRecord(f"kind{n}", f'{{"n":{n}}}', status, "A", False, 1_000.0 + n)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[LockingStore, Callable[[str], list[Any]]]:
    """A store and a way to run SQL on its database beside it."""
    if request.param == "sqlite":
        path = tmp_path / "runs.db"

        def sqlite_sql(query: str) -> list[Any]:
            with sqlite3.connect(path) as connection:
                return connection.execute(query).fetchall()

        return SqliteStore(path), sqlite_sql
    make: Callable[[], str] = request.getfixturevalue("new_postgres_database")
    url = make()

    def postgres_sql(query: str) -> list[Any]:
        with psycopg.connect(url, autocommit=True) as connection:
            cursor = connection.execute(query)
            return cursor.fetchall() if cursor.description is not None else []

    return PostgresStore(url), postgres_sql


async def test_a_driver_whose_run_was_taken_over_writes_nothing(
    backend: tuple[LockingStore, Callable[[str], list[Any]]],
) -> None:
    store, sql = backend
    await store.create("r", [_record(0, RunStatus.CREATED)])
    async with store.lock("r"):
        await store.append("r", [_record(1)])
        (owner,) = sql("SELECT owner FROM railyard_runs")[0]
        assert owner.startswith(f"{store.owner}#"), "the lease names the driver and this taking's token"
        assert (await store.runs())[0].owner == store.owner, "runs() shows who, not the token"
        sql("UPDATE railyard_runs SET owner = 'elsewhere:1#other', lease_expires = 9e9")  # taken over
        before = (sql("SELECT * FROM railyard_runs"), sql("SELECT * FROM railyard_records ORDER BY seq"))
        with pytest.raises(
            LeaseLost, match=r"Run 'r' in .* was taken over by another driver \(it is held by elsewhere:1\)"
        ):
            await store.append("r", [_record(2, RunStatus.ENDED)])
        with pytest.raises(LeaseLost) as lost:
            await store.heartbeat("r")
        assert lost.value.run_id == "r"
        with pytest.raises(LeaseLost):
            await store.append("r", [_record(3)])  # known lost: refused without asking the database
        assert (sql("SELECT * FROM railyard_runs"), sql("SELECT * FROM railyard_records ORDER BY seq")) == before
    assert sql("SELECT owner FROM railyard_runs") == [("elsewhere:1#other",)], "letting go left the new lease alone"
    await store.append("r", [_record(4)])  # a write outside a lock is not fenced: it is nobody's lease
    assert len(await store.read("r")) == 3
    await store.aclose()
