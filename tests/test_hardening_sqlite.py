"""Bad input to the SQLite store: each case is a clear railyard error, and no stored byte changes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from railyard import RunLocked, SqliteStore
from railyard.exceptions import CorruptRunError, PersistenceError
from railyard.testing._sample import CountTo, CrashState, count_graph

pytestmark = pytest.mark.anyio


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _digest(folder: Path) -> dict[str, str]:
    """The sha256 of every file in `folder`, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


async def _database_with_runs(path: Path, *run_ids: str) -> None:
    store = SqliteStore(path)
    for run_id in run_ids:
        await count_graph.run(CountTo(3), state=CrashState(), store=store, run_id=run_id)
    await store.aclose()  # the last connection checkpoints the WAL into the file


async def test_another_applications_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.execute("INSERT INTO invoices VALUES (1, 9.5)")
    connection.close()
    before = _digest(tmp_path)
    store = SqliteStore(path)
    with pytest.raises(
        PersistenceError, match=r"app\.db is not a railyard database: .*\(invoices\).*Nothing was written"
    ):
        await count_graph.run(CountTo(1), state=CrashState(), store=store, run_id="r")
    with pytest.raises(PersistenceError, match=r"not a railyard database"):
        await store.runs()
    await store.aclose()
    assert _digest(tmp_path) == before


async def test_a_zero_byte_file_is_not_taken_for_a_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    store = SqliteStore(path)
    with pytest.raises(PersistenceError, match=r"empty\.db is an empty file, not a railyard database"):
        await store.runs()
    await store.aclose()
    assert path.read_bytes() == b""
    assert _names(tmp_path) == ["empty.db"]


async def test_a_new_path_becomes_a_database_whole(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "deep" / "runs.db")
    await count_graph.run(CountTo(2), state=CrashState(), store=store, run_id="r")
    assert [info.run_id for info in await store.runs()] == ["r"]
    await store.aclose()
    assert _names(tmp_path / "deep") == ["runs.db"]  # no temporary file, no lock files


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
async def test_two_paths_to_one_database_share_its_locks(tmp_path: Path, link: str) -> None:
    path = tmp_path / "runs.db"
    await _database_with_runs(path, "r")
    other = tmp_path / "elsewhere.db"
    if link == "symlink":
        other.symlink_to(path)
    else:
        other.hardlink_to(path)
    first, second = SqliteStore(path), SqliteStore(other)
    if link == "symlink":
        async with first.lock("r"):
            with pytest.raises(RunLocked):
                async with second.lock("r"):
                    pass
        async with second.lock("r"):  # free again once the first driver let go
            pass
    else:  # SQLite keeps a write-ahead log per name, so only the lock itself is tried through the second
        async with first.lock("r"):
            assert await second._try_lock("r") is None
        release = await second._try_lock("r")
        assert release is not None  # free again once the first driver let go
        await release()
    await first.aclose()
    await second.aclose()


async def test_non_utf8_bytes_in_a_record_name_the_run_and_record(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await _database_with_runs(path, "good", "bad")
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE railyard_records SET body = CAST(X'7B226B696E64223AFF7D' AS TEXT) WHERE run_id = 'bad' AND seq = 2"
        )
    connection.close()
    before = _digest(tmp_path)
    store = SqliteStore(path)
    with pytest.raises(CorruptRunError, match=r"Run 'bad' in SqliteStore\('.*runs\.db'\): record 3 .*not valid UTF-8"):
        await store.read("bad")
    with pytest.raises(CorruptRunError, match=r"record 3"):
        await count_graph.resume(store, "bad")
    assert len(await store.read("good")) > 0  # the other runs read as before
    await store.aclose()
    assert _digest(tmp_path) == before


async def test_a_damaged_page_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await _database_with_runs(path, "r")
    with sqlite3.connect(path) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'railyard_records'").fetchone()[0]
    connection.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    data[start : start + 64] = b"\xff" * 64  # the records table's b-tree page header, wrecked
    path.write_bytes(bytes(data))
    before = _digest(tmp_path)
    store = SqliteStore(path)
    with pytest.raises(PersistenceError, match=r"runs\.db is damaged \(.*\) reading run 'r'.*integrity_check"):
        await store.read("r")
    await store.aclose()
    assert _digest(tmp_path) == before


async def test_records_cut_from_the_start_of_a_run_are_named_missing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await _database_with_runs(path, "r")
    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM railyard_records WHERE run_id = 'r' AND seq < 4")
    connection.close()
    before = _digest(tmp_path)
    store = SqliteStore(path)
    with pytest.raises(CorruptRunError, match=r"record 1 cannot be read: records 1 to 4 are missing"):
        await store.read("r")
    await store.aclose()
    assert _digest(tmp_path) == before


async def test_taking_and_releasing_run_locks_never_drops_sqlites_own_locks(tmp_path: Path) -> None:
    # closing any descriptor of a file drops the process's POSIX locks on it, SQLite's too: another process
    # closing its connection would then take itself for the last user and delete the write-ahead log in use here
    import subprocess
    import sys

    path = tmp_path / "runs.db"
    store = SqliteStore(path)
    await count_graph.run(CountTo(2), state=CrashState(), store=store, run_id="r")  # run locks taken and let go
    reader = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute(sys.argv[2]).fetchone()[0]); c.close()"
    )
    count = "select count(*) from railyard_records"
    subprocess.run([sys.executable, "-c", reader, str(path), count], check=True, capture_output=True)
    assert (tmp_path / "runs.db-wal").exists()  # still this process's: the other one knew it was not the last
    await count_graph.run(CountTo(2), state=CrashState(), store=store, run_id="s")
    seen = subprocess.run(
        [sys.executable, "-c", reader, str(path), "select count(*) from railyard_runs"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert seen.stdout.strip() == "2"  # what this process writes after that, others see
    await store.aclose()
    assert not [target for target in _open_files() if target.startswith(str(path))]  # closed with the store


def _open_files() -> list[str]:
    """What this process's descriptors point to (one listed then closed is skipped)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return targets
