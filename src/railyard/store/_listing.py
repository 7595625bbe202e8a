"""Listing runs, as the backends share it: `runs()`'s filters checked (`RunQuery`), in SQL, and a run's detail."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from time import time

from railyard.store import RunStatus, StoredRecord
from railyard.store.summary import RunDetail, RunInfo

__all__ = ("REPORTED_STATUS_SQL", "RunQuery", "describe_run", "unknown_cursor", "where_sql")


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs `runs()` lists: checked arguments, as the backends filter by them."""

    statuses: frozenset[RunStatus] | None
    """Only runs reported with one of these statuses (`None`: any)."""
    graphs: frozenset[str] | None
    """Only runs of these graphs (`None`: any)."""
    since: float | None
    """Only runs started at or after this POSIX timestamp."""
    until: float | None
    """Only runs started before this POSIX timestamp."""
    limit: int | None
    """At most this many runs (`None`: all)."""
    cursor: str | None
    """Only runs after this one, in the listing's order (started, then run id)."""
    now: float
    """The time leases are judged at."""

    @classmethod
    def of(  # noqa: PLR0917 - runs()'s keyword arguments, in their order
        cls,
        status: RunStatus | Collection[RunStatus] | None,
        graph: str | Collection[str] | None,
        since: datetime | float | None,
        until: datetime | float | None,
        limit: int | None,
        cursor: str | None,
    ) -> RunQuery:
        """Check `runs()`'s arguments.

        Raises:
            ValueError: a status is not a `RunStatus`, `limit` is not positive, or `since` is after `until`.
        """
        statuses: frozenset[RunStatus] | None = None
        if status is not None:
            given = (status,) if isinstance(status, (RunStatus, str)) else tuple(status)
            try:
                statuses = frozenset(RunStatus(value) for value in given)
            except ValueError:
                known = ", ".join(s.value for s in RunStatus)
                raise ValueError(f"runs(status={status!r}): a status is one of {known}.") from None
        graphs = None if graph is None else frozenset((graph,) if isinstance(graph, str) else graph)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"runs(limit={limit!r}): the limit is a whole number of runs, 1 or more.")
        start, end = _timestamp(since, "since"), _timestamp(until, "until")
        if start is not None and end is not None and start > end:
            raise ValueError(f"runs(since={since!r}, until={until!r}): `since` is after `until`, so no run is in it.")
        return cls(statuses, graphs, start, end, limit, cursor, time())

    def wants(self, info: RunInfo) -> bool:
        """Whether `info` passes the filters (all but `cursor` and `limit`)."""
        if self.statuses is not None and info.status not in self.statuses:
            return False
        if self.graphs is not None and info.graph not in self.graphs:
            return False
        started = info.started_at.timestamp() if info.started_at is not None else 0.0
        if self.since is not None and started < self.since:
            return False
        return self.until is None or started < self.until

    def page(self, infos: Sequence[RunInfo], where: str) -> list[RunInfo]:
        """`infos` (every run, oldest first) filtered, after the cursor, cut to the limit.

        Raises:
            ValueError: the cursor names no run of the store.
        """
        ordered = sorted(infos, key=_order)
        if self.cursor is not None:
            at = next((i for i, info in enumerate(ordered) if info.run_id == self.cursor), None)
            if at is None:
                raise ValueError(_unknown_cursor(self.cursor, where))
            ordered = ordered[at + 1 :]
        chosen = [info for info in ordered if self.wants(info)]
        return chosen[: self.limit] if self.limit is not None else chosen


def _order(info: RunInfo) -> tuple[float, str]:
    return (info.started_at.timestamp() if info.started_at is not None else 0.0, info.run_id)


def unknown_cursor(cursor: str, where: str) -> str:
    """The message of a `runs(cursor=...)` naming no run of the store."""
    return _unknown_cursor(cursor, where)


REPORTED_STATUS_SQL = (
    "CASE WHEN status = 'running' AND (owner IS NULL OR lease_expires < {now}) THEN 'stalled' "
    "WHEN status = 'waiting' AND owner IS NOT NULL AND lease_expires < {now} THEN 'stalled' ELSE status END"
)
"""`reported_status` in SQL, over a `railyard_runs` row (`{now}`: the placeholder of the time leases are judged at)."""


def where_sql(query: RunQuery, mark: str) -> tuple[str, list[object]]:
    """The SQL condition on `railyard_runs` rows for `query`'s filters (all but the cursor), and its parameters.

    `mark` is the driver's placeholder (`?` for sqlite3, `%s` for psycopg).
    """
    clauses: list[str] = []
    params: list[object] = []
    if query.statuses is not None:
        marks = ", ".join(mark for _ in query.statuses)
        clauses.append(f"({REPORTED_STATUS_SQL.format(now=mark)}) IN ({marks})")
        params += [query.now, query.now, *sorted(s.value for s in query.statuses)]
    if query.graphs is not None:
        if query.graphs:
            clauses.append(f"graph IN ({', '.join(mark for _ in query.graphs)})")
            params += sorted(query.graphs)
        else:
            clauses.append("0 = 1")
    if query.since is not None:
        clauses.append(f"started_at >= {mark}")
        params.append(query.since)
    if query.until is not None:
        clauses.append(f"started_at < {mark}")
        params.append(query.until)
    return (" AND ".join(clauses) or "1 = 1"), params


def _unknown_cursor(cursor: str, where: str) -> str:
    return (
        f"runs(cursor={cursor!r}): {where} has no run {cursor!r}. The cursor is the run id of the last run of "
        f"the page before (it may have been deleted since: start again without a cursor)."
    )


def _timestamp(value: datetime | float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"runs({name}={value!r}): give an aware datetime (for instance datetime.now(UTC)); "
                f"a naive one could be in any timezone."
            )
        # a start is listed as the datetime nearest its timestamp, to the microsecond: compare as listed
        return value.timestamp() - 5e-7
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"runs({name}={value!r}): give a datetime or a POSIX timestamp.")
    return float(value)


def describe_run(run_id: str, records: Sequence[StoredRecord], info: RunInfo | None = None) -> RunDetail:
    """A run's `RunDetail`, read from its stored records (their JSON bodies, without the graph's types).

    `info` is the run's summary as `runs()` lists it (with its lease), if known.
    """
    from railyard.store import info_from_stored
    from railyard.store.records import ErrorInfo

    if info is None:
        info = info_from_stored(run_id, records)
    error: ErrorInfo | None = None
    attempts = 0
    waits: dict[str, None] = {}
    cancel_reason: str | None = None
    for record in records:
        if record.kind == "step_failed":
            body = json.loads(record.body)
            if not isinstance(body, dict):
                continue  # no railyard writes this: nothing to say of it
            if body.get("retry_at") is not None:
                attempts += 1
            elif isinstance(body.get("error"), dict):
                error = ErrorInfo(**body["error"])
        elif record.kind in ("step_finished", "run_ended") and record.status is not RunStatus.FAILED:
            error = None  # resumed after the failure, and went on (siblings that finished as it failed do not count)
        elif record.kind == "step_suspended":
            waits[json.loads(record.body)["key"]] = None
        elif record.kind == "signal_received":
            waits.pop(json.loads(record.body)["key"], None)
        elif record.kind == "run_cancelled":
            cancel_reason = json.loads(record.body)["reason"]
    return RunDetail(
        info=info,
        updated_at=datetime.fromtimestamp(records[-1].ts, UTC) if records else None,
        error=error if info.status is RunStatus.FAILED else None,
        attempts=attempts,
        waiting_for=tuple(waits) if info.status is RunStatus.SUSPENDED else (),
        cancel_reason=cancel_reason,
    )
