"""The SQLite backend's row work, run inside its transactions (`railyard.store.sqlite` calls these)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from railyard.exceptions import RunNotFound
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.store.base import owner_of
from railyard.store.summary import Lease, fold_note, info_fields, reported_status

__all__ = (
    "CHECKPOINT_BYTES",
    "FAST_BYTES",
    "INFO_COLUMNS",
    "TakenOver",
    "busy",
    "checkpoint",
    "info",
    "insert",
    "retry_busy",
    "size",
    "undecodable",
)


FAST_BYTES = 256 * 1024
"""Appends up to this size are committed on the event loop (when the database is free)."""
CHECKPOINT_BYTES = 4 * 1024 * 1024
"""The WAL is checkpointed (in the worker thread) after about this much is committed on the loop."""


def size(records: Sequence[StoredRecord]) -> int:
    return sum(len(record.body) for record in records)


def checkpoint(connection: sqlite3.Connection) -> None:
    """Copy the WAL into the database without waiting on readers (SQLite's own automatic checkpoint)."""
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def busy(error: sqlite3.Error) -> bool:
    """Whether `error` says another connection holds the database (worth waiting for, not damage)."""
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


def undecodable(connection: sqlite3.Connection, run_id: str) -> int:
    """The 1-based number of the run's first record whose text is not valid UTF-8 (0: none found)."""
    rows = connection.execute(
        "SELECT CAST(kind AS BLOB), CAST(status AS BLOB), CAST(node_id AS BLOB), CAST(body AS BLOB) "
        "FROM railyard_records WHERE run_id = ? ORDER BY seq",
        (run_id,),
    )
    for number, row in enumerate(rows, start=1):
        try:
            for cell in row:
                if cell is not None:
                    bytes(cell).decode()
        except UnicodeDecodeError:
            return number
    return 0


def retry_busy(work: Callable[[], object], attempts: int = 50) -> None:
    """Run `work`, retrying while another process holds the database (as at a racing first open)."""
    for attempt in range(attempts):
        try:
            work()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


class TakenOver(Exception):  # private: turned into LeaseLost on the event loop
    """The run's owner is not the token the writing driver holds it by."""

    def __init__(self, holder: object) -> None:
        super().__init__(holder)
        self.holder = holder


def insert(  # noqa: PLR0917 - one transaction's inputs
    connection: sqlite3.Connection,
    run_id: str,
    records: Sequence[StoredRecord],
    where: str,
    lease: Lease | None = None,
    fence: str | None = None,
) -> str | None:
    """Write `records` after the run's others and bring its summary (and `lease`) up to date.

    With `fence`, the run's owner must be that token, or none yet (a free run taken is owned
    from its first write on); else `TakenOver`, and nothing is written.
    Returns the reason of a cancellation asked of the run, if any.
    """
    row = connection.execute(
        "SELECT next_seq, steps, last_node, status, note, wake_at, cancel_requested, owner FROM railyard_runs "
        "WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise RunNotFound(run_id, where)
    first, steps, last_node, status, note, wake_at, asked, owner = row
    if fence is not None and owner is not None and owner != fence:
        raise TakenOver(owner)
    note, wake_at = fold_note(RunStatus(status), note, wake_at, records)
    rows = [
        (run_id, seq, r.kind, r.status.value, r.node_id, int(r.finishes_step), r.ts, r.body)
        for seq, r in enumerate(records, start=first)
    ]
    connection.executemany("INSERT INTO railyard_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    seq = first + len(rows)
    steps += sum(r.finishes_step for r in records)
    last_node = next((r.node_id for r in reversed(records) if r.node_id), last_node)
    status = records[-1].status.value if records else status
    updated = records[-1].ts if records else 0.0
    if lease is None:
        connection.execute(
            "UPDATE railyard_runs SET next_seq = ?, steps = ?, last_node = ?, status = ?, updated_at = ?, note = ?, "
            "wake_at = ? WHERE run_id = ?",
            (seq, steps, last_node, status, updated, note, wake_at, run_id),
        )
    else:  # written by the run's driver: its lease is renewed with it
        connection.execute(
            "UPDATE railyard_runs SET next_seq = ?, steps = ?, last_node = ?, status = ?, updated_at = ?, note = ?, "
            "wake_at = ?, owner = ?, lease_expires = ? WHERE run_id = ?",
            (seq, steps, last_node, status, updated, note, wake_at, lease.owner, lease.expires, run_id),
        )
    return asked if isinstance(asked, str) else None


_FINISHED = (RunStatus.ENDED, RunStatus.CANCELLED)

INFO_COLUMNS = (
    "run_id, status, started_at, updated_at, steps, last_node, graph, note, wake_at, owner, lease_expires, "
    "cancel_requested"
)
"""The columns `info` reads, in its order."""


def info(row: Sequence[object], now: float) -> RunInfo:
    """A `RunInfo` from a `railyard_runs` row (its `INFO_COLUMNS`)."""
    run_id, state, started, updated, steps, last_node, graph, note, wake_at, owner, expires, asked = row
    stored = RunStatus(str(state))
    lease_expires = float(expires) if isinstance(expires, (int, float)) else None
    return RunInfo(
        str(run_id),
        reported_status(stored, owner_of(owner), lease_expires, now),
        datetime.fromtimestamp(float(started), UTC),  # type: ignore[arg-type]  # a REAL column
        int(steps),  # type: ignore[call-overload]  # an INTEGER column
        last_node if isinstance(last_node, str) else None,
        graph if isinstance(graph, str) else None,
        updated_at=datetime.fromtimestamp(float(updated), UTC),  # type: ignore[arg-type]  # a REAL column
        owner=owner_of(owner),
        lease_expires=datetime.fromtimestamp(lease_expires, UTC) if lease_expires is not None and owner else None,
        cancel_requested=asked if isinstance(asked, str) and stored not in _FINISHED else None,
        **info_fields(stored, note if isinstance(note, str) else None, wake_at if isinstance(wake_at, float) else None),  # type: ignore[arg-type]
    )
