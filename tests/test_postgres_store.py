"""PostgresStore against a real server: one-statement writes, pooled lock sessions, keepalives, crashes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from railyard.exceptions import PersistenceError, RunExists, RunLocked, RunNotFound
from railyard.store import RunStatus, StoredRecord
from railyard.store.base import LeaseLost
from railyard.store.postgres import PostgresStore

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def _record(
    n: int, status: RunStatus = RunStatus.RUNNING, node: str | None = "A", *, step: bool = False
) -> StoredRecord:
    return StoredRecord(f"kind{n}", f'{{"n":{n}}}', status, node, step, 1_000.0 + n)


@pytest.fixture
def url(new_postgres_database: Callable[[], str]) -> str:
    return new_postgres_database()


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url)
    try:
        yield store
    finally:
        await store.aclose()


def _sql(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(query, params)
        return cursor.fetchall() if cursor.description is not None else []


def _sessions(url: str) -> set[int]:
    """The server's sessions on the database, but the one asking."""
    rows = _sql(url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    return {int(pid) for (pid,) in rows}


def _held_advisory_locks(url: str) -> list[tuple[int, int]]:
    """(holder pid, key) of each advisory lock held on the server."""
    rows = _sql(
        url,
        "SELECT pid, (classid::bigint << 32) | objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted",
    )
    return [(int(pid), int(key)) for pid, key in rows]


# -- writes ------------------------------------------------------------------------------


@pytest.mark.parametrize("driving", [pytest.param(False, id="no-lock"), pytest.param(True, id="driver")])
async def test_batches_number_records_one_after_another(store: PostgresStore, url: str, driving: bool) -> None:
    first = [_record(0, RunStatus.CREATED), _record(1), _record(2, RunStatus.WAITING, "B", step=True)]
    later = [[_record(3), _record(4, RunStatus.WAITING, "C", step=True)], [], [_record(5, RunStatus.RUNNING, None)]]
    async with AsyncExitStack() as stack:
        if driving:
            await stack.enter_async_context(store.lock("r"))
        await store.create("r", first)
        for batch in later:
            await store.append("r", batch)
    written = [*first, *later[0], *later[2]]
    assert [record.body for record in await store.read("r")] == [record.body for record in written]
    assert _sql(url, "SELECT seq FROM railyard_records WHERE run_id = 'r' ORDER BY seq") == [(n,) for n in range(6)]
    assert _sql(url, "SELECT next_seq, updated_at, started_at FROM railyard_runs") == [(6, 1_005.0, 1_000.0)]
    (info,) = await store.runs()
    # the last record names no node, so the run's last node is the one before it; left mid-step, it is stalled
    assert (info.status, info.steps, info.last_node) == (RunStatus.STALLED, 2, "C")


async def test_concurrent_batches_each_stay_whole_and_in_order(store: PostgresStore, url: str) -> None:
    await store.create("r", [_record(0, RunStatus.CREATED)])

    async def append(batch: int) -> None:
        await store.append("r", [_record(100 * batch + i, step=i == 2) for i in range(3)])

    async with anyio.create_task_group() as group:
        for batch in range(1, 21):
            group.start_soon(append, batch)
    bodies = [record.body for record in await store.read("r")][1:]
    batches = [bodies[i : i + 3] for i in range(0, len(bodies), 3)]
    assert sorted(batches) == sorted([f'{{"n":{100 * b + i}}}' for i in range(3)] for b in range(1, 21))
    assert _sql(url, "SELECT count(DISTINCT seq), max(seq) FROM railyard_records") == [(61, 60)]
    (info,) = await store.runs()
    assert info.steps == 20


@pytest.mark.parametrize("driving", [pytest.param(False, id="no-lock"), pytest.param(True, id="driver")])
async def test_append_to_a_missing_run_writes_nothing(store: PostgresStore, url: str, driving: bool) -> None:
    await store.create("other", [_record(0, RunStatus.CREATED)])
    async with AsyncExitStack() as stack:
        if driving:
            await stack.enter_async_context(store.lock("ghost"))
        with pytest.raises(RunNotFound, match=r"No run 'ghost' in PostgresStore\("):
            await store.append("ghost", [_record(1)])
        with pytest.raises(RunNotFound):
            await store.append("ghost", [])
    assert _sql(url, "SELECT run_id, count(*) FROM railyard_records GROUP BY run_id") == [("other", 1)]


@pytest.mark.parametrize("driving", [pytest.param(False, id="no-lock"), pytest.param(True, id="driver")])
async def test_create_refuses_an_existing_run_and_changes_nothing(store: PostgresStore, driving: bool) -> None:
    await store.create("r", [_record(0, RunStatus.CREATED)])
    await store.append("r", [_record(1, RunStatus.WAITING, "B", step=True)])
    async with AsyncExitStack() as stack:
        if driving:
            await stack.enter_async_context(store.lock("r"))
        with pytest.raises(RunExists, match=r"Run 'r' already exists in PostgresStore\("):
            await store.create("r", [_record(7, RunStatus.ENDED, "Z", step=True)])
    assert [record.body for record in await store.read("r")] == ['{"n":0}', '{"n":1}']
    (info,) = await store.runs()
    assert (info.status, info.steps, info.last_node) == (RunStatus.WAITING, 1, "B")


async def test_racing_creates_make_one_run(store: PostgresStore) -> None:
    refused: list[int] = []

    async def create(n: int) -> None:
        try:
            await store.create("r", [_record(n, RunStatus.CREATED)])
        except RunExists:
            refused.append(n)

    async with anyio.create_task_group() as group:
        for n in range(8):
            group.start_soon(create, n)
    assert len(refused) == 7
    (record,) = await store.read("r")
    assert record.body not in {f'{{"n":{n}}}' for n in refused}


async def test_an_empty_create_makes_a_created_run(store: PostgresStore) -> None:
    await store.create("r", [])
    assert await store.read("r") == []
    (info,) = await store.runs()
    assert (info.status, info.steps, info.last_node) == (RunStatus.CREATED, 0, None)


async def test_a_cancelled_append_wrote_all_or_nothing(store: PostgresStore) -> None:
    await store.create("r", [_record(0, RunStatus.CREATED)])
    batch = [_record(n) for n in range(1, 2001)]
    async with store.lock("r"):
        async with anyio.create_task_group() as group:
            scope = anyio.CancelScope()

            async def append() -> None:
                with scope:
                    await store.append("r", batch)

            group.start_soon(append)
            await anyio.wait_all_tasks_blocked()  # the statement is with the server
            scope.cancel()
        assert len(await store.read("r")) in (1, 1 + len(batch))
        try:  # the driver goes on if its session survived the cancellation, else it stops
            await store.append("r", [_record(9_999)])
        except PersistenceError as err:
            assert "Lost the connection holding run 'r''s lock" in str(err)
    async with store.lock("r"):  # the lock was given back either way
        await store.append("r", [_record(10_000)])
    bodies = [record.body for record in await store.read("r")]
    assert bodies[-1] == '{"n":10000}' and len(bodies) in (2, 3, 2 + len(batch), 3 + len(batch))


async def test_a_driver_that_lost_its_lock_writes_nothing(store: PostgresStore, url: str) -> None:
    await store.create("r", [_record(0, RunStatus.CREATED)])
    async with store.lock("r"):
        await store.append("r", [_record(1)])
        # the server ends the session holding the run's lock (as if the network dropped)
        _sql(url, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'")
        with pytest.raises(PersistenceError, match=r"Lost the connection holding run 'r''s lock in PostgresStore\("):
            await store.append("r", [_record(2)])
        with pytest.raises(PersistenceError, match=r"Lost the connection holding run 'r''s lock"):
            await store.create("r", [_record(3)])
        other = PostgresStore(url)
        try:
            async with other.lock("r"):  # another driver may take the run over meanwhile
                pass
        finally:
            await other.aclose()
    assert [record.body for record in await store.read("r")] == ['{"n":0}', '{"n":1}']
    async with store.lock("r"):  # the broken session was dropped, not handed out again
        await store.append("r", [_record(4)])
    assert len(await store.read("r")) == 3


# -- lock sessions and claims ------------------------------------------------------------


async def test_polling_claim_on_an_empty_store_opens_no_connections(
    store: PostgresStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await store.claim() is None
    before = _sessions(url)
    opened: list[object] = []
    connect = psycopg.AsyncConnection.connect

    async def counted(cls: type[psycopg.AsyncConnection[Any]], *args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        return await connect.__func__(cls, *args, **kwargs)  # type: ignore[attr-defined]

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", classmethod(counted))
    for _ in range(50):
        assert await store.claim() is None
    assert opened == [], "each poll must reuse a pooled session, not connect"
    assert _sessions(url) == before
    assert _held_advisory_locks(url) == []


async def test_a_released_session_is_reused_and_holds_no_lock(store: PostgresStore, url: str) -> None:
    for run_id in ("a", "b"):
        await store.create(run_id, [_record(0, RunStatus.CREATED)])
    async with store.lock("a"):
        pass
    sessions = _sessions(url)
    async with store.lock("b"):
        assert _sessions(url) == sessions, "the lock session is taken from the pool"
        assert len(_held_advisory_locks(url)) == 1, "only b's lock is held"
    other = PostgresStore(url)
    try:
        async with other.lock("a"), other.lock("b"):
            pass
    finally:
        await other.aclose()


async def test_locks_and_claims_exclude_across_stores(store: PostgresStore, url: str) -> None:
    other = PostgresStore(url)
    try:
        for run_id in ("a", "b"):
            await store.create(run_id, [_record(0, RunStatus.CREATED)])
        async with store.lock("a"):
            with pytest.raises(RunLocked, match=r"Run 'a' in PostgresStore\("):
                async with other.lock("a"):
                    pass
            assert await other.claim() == "b"
            assert await store.claim() is None, "b is claimed by the other store"
            await other.release_claim("b")
            assert await store.claim() == "b"
            assert await other.claim() is None
        assert await other.claim() == "a"
        await store.release_claims()
        async with other.lock("a"):  # takes its claim over
            assert await store.claim() == "b"
    finally:
        await other.aclose()


async def test_claim_skips_runs_driven_elsewhere_and_takes_one_lock(store: PostgresStore, url: str) -> None:
    other = PostgresStore(url)
    try:
        for n in range(40):
            await store.create(f"r{n:02}", [StoredRecord("k", "{}", RunStatus.CREATED, "A", False, float(n))])
        async with AsyncExitStack() as stack:
            for n in range(35):  # the oldest runs are being driven by another process
                await stack.enter_async_context(other.lock(f"r{n:02}"))
            assert await store.claim() == "r35"
            assert len(_held_advisory_locks(url)) == 36, "the claim holds one lock, the run it returns"
        await store.release_claims()
    finally:
        await other.aclose()


async def test_sessions_the_server_ended_are_not_handed_out(store: PostgresStore, url: str) -> None:
    await store.create("r", [_record(0, RunStatus.CREATED)])
    assert await store.claim() == "r"
    await store.release_claim("r")
    # the server ends every pooled session (as a restart does), and waits until they are gone
    _sql(
        url,
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()",
    )
    assert _sessions(url) == set()
    assert [record.body for record in await store.read("r")] == ['{"n":0}']
    assert await store.claim() == "r"
    async with store.lock("r"):
        await store.append("r", [_record(1)])
    assert len(await store.read("r")) == 2


CRASHING_HOLDER = textwrap.dedent(
    """
    import sys, anyio
    from railyard.store.postgres import PostgresStore

    async def main(url):
        store = PostgresStore(url)
        async with store.lock("r"):
            print("locked", flush=True)
            await anyio.sleep_forever()

    anyio.run(main, sys.argv[1])
    """
)


async def test_a_crashed_holder_frees_its_run(store: PostgresStore, url: str) -> None:
    await store.create("r", [_record(0, RunStatus.CREATED)])
    with subprocess.Popen(
        [sys.executable, "-c", CRASHING_HOLDER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            with pytest.raises(RunLocked):
                async with store.lock("r"):
                    pass
            assert await store.claim() is None
            ((_, key),) = _held_advisory_locks(url)
        finally:
            holder.kill()  # no clean-up runs: the session is cut off as in a crash
    # wait until the server has ended the dead process's session: blocking on its lock
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SET lock_timeout = '20s'")
        admin.execute("SELECT pg_advisory_lock(%s)", (key,))
        admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
    assert await store.claim() == "r"
    async with store.lock("r"):
        await store.append("r", [_record(1)])


# -- keepalives --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "idle", "count"),
    [
        pytest.param("", "30", "3", id="defaults"),
        pytest.param("?keepalives_idle=45&keepalives_count=5", "45", "5", id="given"),
    ],
)
async def test_sessions_have_tcp_keepalives_at_both_ends(url: str, query: str, idle: str, count: str) -> None:
    store = PostgresStore(url + query)
    try:
        await store.create("r", [_record(0, RunStatus.CREATED)])
        async with store.lock("r"):
            # white-box: the lock session and the pool are private, and keepalives show only on them
            assert store._pool is not None and store._locker is not None
            async with store._pool.connection() as pooled:
                for connection in (store._locker, pooled):
                    client = connection.info.get_parameters()
                    assert (client["keepalives"], client["keepalives_idle"], client["keepalives_count"]) == (
                        "1",
                        idle,
                        count,
                    )
                    assert client["tcp_user_timeout"] == "60000"
                    cursor = await connection.execute(
                        "SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_count'), "
                        "current_setting('tcp_user_timeout'), current_setting('idle_in_transaction_session_timeout')"
                    )
                    assert await cursor.fetchone() == (idle, count, "60000", "1min"), (
                        "the server probes a silent client"
                    )
                cursor = await pooled.execute("SELECT current_setting('statement_timeout')")
                assert await cursor.fetchone() == ("1min",), "a statement is given a minute"
    finally:
        await store.aclose()


async def test_keepalives_can_be_turned_off(url: str) -> None:
    store = PostgresStore(url + "?keepalives=0")
    try:
        await store.create("r", [_record(0, RunStatus.CREATED)])
        async with store.lock("r"):
            assert store._locker is not None  # white-box, as above
            assert store._locker.info.get_parameters()["keepalives"] == "0"
    finally:
        await store.aclose()


async def test_records_with_awkward_text_come_back_exactly(store: PostgresStore) -> None:
    # a batch travels as one JSON array: names with quotes and backslashes, and bodies with
    # non-ASCII text and escapes, must come back byte for byte
    body = '{"text":"caf\\u00e9 \\"quoted\\" \\\\ back\\\\slash","emoji":"\U0001f682","n":1.5e-7}'
    records = [
        StoredRecord("step_started", body, RunStatus.RUNNING, 'No"de\\1', False, 1_700_000_000.123456),
        StoredRecord("step_finished", '{"ü":[1,2,{"a":null}]}', RunStatus.WAITING, None, True, 1e9),
    ]
    await store.create("awkward", records[:1])
    await store.append("awkward", records[1:])
    assert list(await store.read("awkward")) == [
        StoredRecord("step_started", body, RunStatus.RUNNING, 'No"de\\1', False, 1_700_000_000.123456, None),
        StoredRecord("step_finished", '{"ü":[1,2,{"a":null}]}', RunStatus.WAITING, None, True, 1e9),
    ]


# -- many runs held, takeovers, ready runs announced -----------------------------------------


async def test_a_store_driving_many_runs_at_once_keeps_to_its_pool_and_one_lock_session(url: str) -> None:
    store = PostgresStore(url, max_size=3)
    try:
        for n in range(30):
            await store.create(f"r{n:02}", [_record(0, RunStatus.CREATED)])
        async with AsyncExitStack() as stack:
            for n in range(30):
                await stack.enter_async_context(store.lock(f"r{n:02}"))
            async with anyio.create_task_group() as group:
                for n in range(30):
                    group.start_soon(store.append, f"r{n:02}", [_record(1)])
            assert len(_held_advisory_locks(url)) == 30, "one lock per run held"
            assert len(_sessions(url)) <= 3 + 1, "the pool's sessions and one lock session, whatever runs are held"
        assert _held_advisory_locks(url) == []
        assert {info.owner for info in await store.runs()} == {None}
    finally:
        await store.aclose()


async def test_a_lease_that_ran_out_is_taken_over_and_its_old_driver_writes_nothing(
    store: PostgresStore, url: str
) -> None:
    await store.create("r", [_record(0, RunStatus.CREATED)])
    other = PostgresStore(url)
    try:
        async with store.lock("r"):
            await store.append("r", [_record(1)])
            # the driver is cut off past its lease (its session lives on, holding the run's advisory lock)
            _sql(url, "UPDATE railyard_runs SET lease_expires = 0")
            async with other.lock("r"):
                before = _sql(url, "SELECT seq, body::text FROM railyard_records ORDER BY seq")
                with pytest.raises(LeaseLost, match=r"Run 'r' in PostgresStore\(.*\) was taken over by another driver"):
                    await store.append("r", [_record(2)])
                with pytest.raises(LeaseLost):
                    await store.heartbeat("r")
                lost = store.lease_lost("r")
                assert lost is not None and lost.is_set()
                assert _sql(url, "SELECT seq, body::text FROM railyard_records ORDER BY seq") == before
                await other.append("r", [_record(3)])
            (info,) = await other.runs()
            assert info.owner is None, "the new driver let go; the old one's release changed nothing"
        assert [record.body for record in await store.read("r")] == ['{"n":0}', '{"n":1}', '{"n":3}']
    finally:
        await other.aclose()


async def test_workers_hear_of_runs_made_ready_elsewhere(store: PostgresStore, url: str) -> None:
    other = PostgresStore(url)
    try:
        assert await store.wait_ready(0.01) is False  # listening from here on
        with anyio.fail_after(10):
            await other.create("made", [_record(0, RunStatus.CREATED)])  # by no driver: ready
            assert await store.wait_ready(30) is True
            await other.create("driven", [_record(0, RunStatus.CREATED)])
            assert await store.wait_ready(30) is True
            async with other.lock("driven"):
                await other.append("driven", [_record(1, RunStatus.WAITING, step=True)])
            assert await store.wait_ready(30) is True, "let go of between steps: ready"
        async with other.lock("driven"):
            await other.append("driven", [_record(2, RunStatus.ENDED, step=True)])
        assert await store.wait_ready(0.3) is False, "an ended run is not announced"
    finally:
        await other.aclose()
