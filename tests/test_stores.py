"""Every store passes the conformance suite; backend-specific failure modes are clear errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from railyard import FullStatePersistence
from railyard.durable import DurablePersistence
from railyard.exceptions import CorruptRunError, PersistenceError
from railyard.store import RunStatus, RunStore
from railyard.store.file import FileStore, TornRecordWarning
from railyard.store.memory import MemoryStore
from railyard.store.postgres import PostgresStore
from railyard.store.sqlite import SCHEMA_VERSION, SqliteStore
from railyard.store.urls import open_store
from railyard.testing import CHECKS, check_store
from railyard.testing._sample import CountTo, CrashState, count_graph
from tests import graphs
from tests.graphs import Increment, MyState, never_42_graph

pytestmark = pytest.mark.anyio

StoreMaker = Callable[[], RunStore]


@pytest.fixture(params=["memory", "file", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    counter = iter(range(1000))
    new_database: Callable[[], str] | None = (
        request.getfixturevalue("new_postgres_database") if request.param == "postgres" else None
    )

    def make() -> RunStore:
        n = next(counter)
        if request.param == "memory":
            return MemoryStore()
        if request.param == "file":
            return FileStore(tmp_path / f"runs{n}")
        if new_database is not None:
            return PostgresStore(new_database())
        return SqliteStore(tmp_path / f"runs{n}.db")

    return make


async def test_conformance(make_store: StoreMaker) -> None:
    await check_store(make_store)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
async def test_each_check_passes_on_sqlite(check: Callable[[RunStore], object], tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "one.db")
    try:
        await check(store)  # type: ignore[misc]
    finally:
        await store.aclose()


def test_open_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:///{tmp_path}/a.db"), SqliteStore)
    assert isinstance(open_store(f"file://{tmp_path}/runs"), FileStore)
    assert isinstance(open_store("memory:"), MemoryStore)
    with pytest.raises(ValueError, match=r"Cannot open a run store from 'redis://x'"):
        open_store("redis://x")


# -- files ------------------------------------------------------------------------------


async def _count_run(store: RunStore, run_id: str, steps: int = 3) -> None:
    await count_graph.run(CountTo(steps), state=CrashState(), persistence=DurablePersistence(store, run_id))


async def test_file_store_torn_last_line_is_skipped_then_cut_off(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, "torn")
    async with count_graph.iter(CountTo(3), state=CrashState(), persistence=persistence) as run:
        await run.next()
    path = store.path("torn")
    complete = path.read_bytes()
    path.write_bytes(complete + b'{"kind":"step_sta')  # the writer died mid-line
    with pytest.warns(TornRecordWarning, match=r"torn\.jsonl: the last line is incomplete"):
        records = await store.read("torn")
    assert len(records) == complete.count(b"\n")
    with pytest.warns(TornRecordWarning):
        result = await count_graph.resume(DurablePersistence(store, "torn"))
    assert result.output == 3
    assert path.read_bytes().startswith(complete)
    assert b"step_sta\n" not in path.read_bytes()
    assert (tmp_path / "torn.jsonl.torn").read_bytes() == b'{"kind":"step_sta\n'


async def test_file_store_garbage_in_the_middle_is_an_error_and_changes_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await _count_run(store, "bad")
    path = store.path("bad")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"\x00\x01 not json\n"
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(CorruptRunError, match=r"Run 'bad' in .*bad\.jsonl line 2: record 2 cannot be read") as info:
        await store.read("bad")
    assert info.value.record == 2
    with pytest.raises(CorruptRunError):
        await count_graph.resume(DurablePersistence(store, "bad"))
    assert path.read_bytes() == before


async def test_file_store_truncated_file_keeps_every_complete_record(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await _count_run(store, "cut", steps=5)
    path = store.path("cut")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])  # cut in the middle of the last record
    with pytest.warns(TornRecordWarning):
        records = await store.read("cut")
    assert len(records) == data.count(b"\n") - 1


def test_file_store_rejects_unsafe_run_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Run id '\.\./x' cannot be used by FileStore"):
        FileStore(tmp_path).path("../x")


# -- SQLite -------------------------------------------------------------------------------


async def test_sqlite_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    store = SqliteStore(path)
    with pytest.raises(PersistenceError, match=r"junk\.db is not a SQLite database \(it starts with b'this is not"):
        await store.runs()
    assert path.read_bytes() == b"this is not sqlite" * 100


async def test_sqlite_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = SqliteStore(path)
    await _count_run(store, "r")
    await store.aclose()
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE railyard_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    newer = SqliteStore(path)
    with pytest.raises(PersistenceError, match=rf"written by a newer railyard \(schema version {SCHEMA_VERSION + 1}"):
        await newer.read("r")


async def test_sqlite_wrong_schema(tmp_path: Path) -> None:
    path = tmp_path / "wrong.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE railyard_meta (key TEXT PRIMARY KEY, value TEXT)")
        connection.execute("INSERT INTO railyard_meta VALUES ('schema_version', '1')")
        connection.execute("CREATE TABLE railyard_runs (run_id TEXT PRIMARY KEY, status TEXT)")
        connection.execute("CREATE TABLE railyard_records (run_id TEXT)")
    store = SqliteStore(path)
    with pytest.raises(PersistenceError, match=r"table railyard_runs has columns \['run_id', 'status'\]"):
        await store.runs()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM railyard_runs").fetchone() == (0,)


_V3_COLUMNS = ("note", "wake_at", "owner", "lease_expires", "cancel_requested")
"""The columns of `railyard_runs` schema version 3 added (dropped to make an older database)."""


@pytest.mark.parametrize("version", [1, 2])
async def test_sqlite_an_older_version_is_upgraded_in_place_and_its_runs_go_on(tmp_path: Path, version: int) -> None:
    path = tmp_path / f"v{version}.db"
    store = SqliteStore(path)
    async with count_graph.iter(CountTo(3), state=CrashState(), store=store, run_id="old") as run:
        await run.next()
    await store.aclose()
    with sqlite3.connect(path) as connection:  # as an older railyard's schema version left it
        dropped = _V3_COLUMNS + (("graph",) if version == 1 else ())
        for column in dropped:
            connection.execute(f"ALTER TABLE railyard_runs DROP COLUMN {column}")
        connection.execute("UPDATE railyard_meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    upgraded = SqliteStore(path)
    graph = None if version == 1 else "count_graph"
    assert [(info.run_id, info.graph) for info in await upgraded.runs()] == [("old", graph)]
    assert (await count_graph.resume(upgraded, "old")).output == 3
    await count_graph.run(CountTo(1), state=CrashState(), store=upgraded, run_id="new")
    assert [(info.run_id, info.graph) for info in await upgraded.runs()] == [("old", graph), ("new", "count_graph")]
    await upgraded.aclose()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM railyard_meta").fetchone() == (str(SCHEMA_VERSION),)


async def test_sqlite_shares_a_database_with_other_tables_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE app_users (id INTEGER PRIMARY KEY)")
    with pytest.raises(PersistenceError, match=r"shared\.db is not a railyard database: .*\(app_users\)"):
        await SqliteStore(path).runs()
    store = SqliteStore(path, share_database=True)
    await _count_run(store, "r")
    assert [info.run_id for info in await store.runs()] == ["r"]


# -- schema drift: a stored state that no longer validates ------------------------------


@pytest.mark.parametrize("kind", ["file", "sqlite"])
async def test_a_state_that_no_longer_validates_names_run_record_and_field(kind: str, tmp_path: Path) -> None:
    store: RunStore = FileStore(tmp_path) if kind == "file" else SqliteStore(tmp_path / "drift.db")
    persistence: DurablePersistence[MyState, int] = DurablePersistence(store, "drift")
    async with never_42_graph.iter(graphs.Increment(), state=MyState(1), persistence=persistence) as run:
        await run.next()
    before = [record.body for record in await store.read("drift")]

    from dataclasses import dataclass

    from railyard import BaseNode, End, Graph, GraphRunContext

    @dataclass
    class NewState:  # the state's `number` became a `str` since the run was stored
        number: str
        log: list[int]

    @dataclass
    class Increment(BaseNode[NewState, None, int]):
        async def run(self, ctx: GraphRunContext[NewState]) -> Check42:
            return Check42()

    @dataclass
    class Check42(BaseNode[NewState, None, int]):
        async def run(self, ctx: GraphRunContext[NewState]) -> End[int]:
            return End(0)

    drifted = Graph(nodes=(Increment, Check42))
    with pytest.raises(
        CorruptRunError, match=r"Run 'drift' in .*: record 2 cannot be read: field `state\.number`"
    ) as info:  # record 1 is the run's creation; record 2 its first state
        await drifted.resume(DurablePersistence(store, "drift"))
    assert info.value.run_id == "drift" and info.value.record == 2
    assert [record.body for record in await store.read("drift")] == before


async def test_full_persistence_has_nothing_to_do_with_stores() -> None:
    # the in-memory classes stay in memory: no store is involved
    persistence = FullStatePersistence()
    await never_42_graph.run(Increment(), state=MyState(1), persistence=persistence)
    assert len(persistence.history) == 3


# -- PostgreSQL -------------------------------------------------------------------------


async def test_postgres_refuses_a_newer_schema_and_a_wrong_one(new_postgres_database: Callable[[], str]) -> None:
    import psycopg

    url = new_postgres_database()
    store = PostgresStore(url)
    await _count_run(store, "r")
    await store.aclose()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("UPDATE railyard_meta SET value = %s", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(PersistenceError, match=rf"written by a newer railyard \(schema version {SCHEMA_VERSION + 1}"):
        await PostgresStore(url).runs()

    wrong = new_postgres_database()
    with psycopg.connect(wrong, autocommit=True) as connection:
        connection.execute("CREATE TABLE railyard_meta (key text PRIMARY KEY, value text)")
        connection.execute("INSERT INTO railyard_meta VALUES ('schema_version', '1')")
        connection.execute("CREATE TABLE railyard_runs (run_id text PRIMARY KEY)")
    with pytest.raises(PersistenceError, match=r"table railyard_runs has columns \['run_id'\], expected"):
        await PostgresStore(wrong).runs()


@pytest.mark.parametrize("version", [1, 2])
async def test_postgres_an_older_version_is_upgraded_in_place(
    new_postgres_database: Callable[[], str], version: int
) -> None:
    import psycopg

    url = new_postgres_database()
    store = PostgresStore(url)
    await _count_run(store, "old")
    await store.aclose()
    with psycopg.connect(url, autocommit=True) as connection:  # as an older schema version left it
        for column in _V3_COLUMNS + (("graph",) if version == 1 else ()):
            connection.execute(f"ALTER TABLE railyard_runs DROP COLUMN {column}")  # type: ignore[arg-type]
        connection.execute("UPDATE railyard_meta SET value = %s", (str(version),))
    upgraded = PostgresStore(url)
    graph = None if version == 1 else "count_graph"
    assert [(info.run_id, info.graph, info.status) for info in await upgraded.runs()] == [
        ("old", graph, RunStatus.ENDED)
    ]
    await count_graph.run(CountTo(1), state=CrashState(), store=upgraded, run_id="new")
    assert {info.run_id: info.graph for info in await upgraded.runs()} == {"old": graph, "new": "count_graph"}
    await upgraded.aclose()


async def test_postgres_unreachable_is_a_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = PostgresStore(f"postgresql://someone:secret@127.0.0.1:{port}/nothing")
    with pytest.raises(
        PersistenceError,
        match=rf"Cannot connect to PostgresStore\('postgresql://someone:\*\*\*@127\.0\.0\.1:{port}/nothing'\)",
    ) as info:
        await store.runs()
    assert "secret" not in str(info.value)


async def test_postgres_records_are_json_readable_in_sql(new_postgres_database: Callable[[], str]) -> None:
    import psycopg

    url = new_postgres_database()
    store = PostgresStore(url)
    await _count_run(store, "visible", steps=2)
    await store.aclose()
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT kind, body->'state'->>'count' FROM railyard_records WHERE run_id = 'visible' AND kind = 'step_finished' ORDER BY seq"
        ).fetchall()
    assert rows == [("step_finished", "1"), ("step_finished", "2"), ("step_finished", "2")]


async def test_postgres_driver_that_lost_its_lock_cannot_write(new_postgres_database: Callable[[], str]) -> None:
    import psycopg

    url = new_postgres_database()
    store = PostgresStore(url)
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, "fenced")
    async with count_graph.iter(CountTo(5), state=CrashState(), persistence=persistence) as run:
        await run.next()
        # the server ends the session holding the run's lock (as if the network dropped)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
            )
        with pytest.raises(PersistenceError, match=r"Lost the connection holding run 'fenced''s lock"):
            await run.next()
    # another driver takes over from the last recorded step
    result = await count_graph.resume(DurablePersistence(store, "fenced"))
    assert result.output == 5
    await store.aclose()


async def test_file_store_lists_the_runs_it_can_read(tmp_path: Path) -> None:
    from railyard.store.file import UnreadableRunWarning

    store = FileStore(tmp_path)
    await _count_run(store, "good")
    (tmp_path / "bad.jsonl").write_text("not a record\n")
    with pytest.warns(UnreadableRunWarning, match=r"bad\.jsonl is left out of the run list"):
        infos = await store.runs()
    assert [info.run_id for info in infos] == ["good"]


def test_codec_checks_numbers_and_fork_stacks() -> None:
    from railyard.store.codec import RecordCodec, RecordDecodeError

    codec = RecordCodec([CountTo], CrashState, int)
    with pytest.raises(RecordDecodeError, match=r"field `ts`: must be a number \(stored value: 'soon'\)"):
        codec.decode(b'{"kind":"step_started","task_id":"t","ts":"soon"}')
    bad_stack = b'{"kind":"tasks_scheduled","tasks":[{"node_id":"CountTo","task_id":"t","inputs":{"target":1,"node_id":"CountTo"},"fork_stack":[[1]]}],"state":{"count":0,"checksum":0},"ts":1}'
    with pytest.raises(
        RecordDecodeError, match=r"field `tasks\.0\.fork_stack`: must be a list of \[fork id, run id, index\]"
    ):
        codec.decode(bad_stack)
