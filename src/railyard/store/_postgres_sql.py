"""The PostgreSQL backend's statements and session settings (`railyard.store.postgres` runs them).

Every statement here is one round trip and, in autocommit, one commit. A run's row in
`railyard_runs` carries its lease: `owner` is the holder's `host:pid`, then `#` and a
token of that taking alone, and `lease_expires` when it runs out. A holder's writes name
the token and change nothing unless the row still carries it (fencing), so a driver whose
run was taken over cannot write another step.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from railyard.exceptions import PersistenceError
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.store.base import RECORD_COLUMNS, REPORTED_STATUS_SQL, RUN_COLUMNS, owner_of
from railyard.store.summary import batch_note, info_fields, reported_status

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("The PostgreSQL store needs psycopg: pip install 'railyard-graph[postgres]'") from err

__all__ = (
    "ADDED_IN",
    "APPEND",
    "CHANNEL",
    "CLAIM",
    "COLUMNS",
    "CREATE",
    "INFO_COLUMNS",
    "LOCK_SALT",
    "RELEASE",
    "RENEW",
    "SCHEMA",
    "SCHEMA_LOCK",
    "TAKE",
    "batch",
    "check_alive",
    "check_schema",
    "connection_settings",
    "info",
    "session_setup",
)

SCHEMA_LOCK = 0x7261696C  # an advisory lock key serializing schema creation
LOCK_SALT = 0x72756E  # mixed into run lock keys, so they do not collide with other uses
CHANNEL = "railyard_ready"
"""The channel a notification goes out on when a run becomes ready (its payload: the run's graph)."""

_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}
"""libpq's TCP keepalives: a silent peer is given up on after about a minute (30 s + 3 x 10 s), and
data the peer has not acknowledged for a minute ends the connection (`tcp_user_timeout`, ms)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS railyard_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS railyard_runs (
    run_id text PRIMARY KEY,
    status text NOT NULL,
    started_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    steps integer NOT NULL,
    last_node text,
    next_seq integer NOT NULL,
    graph text,
    note text,
    wake_at double precision,
    owner text,
    lease_expires double precision,
    cancel_requested text
);
CREATE INDEX IF NOT EXISTS railyard_runs_status ON railyard_runs (status, updated_at);
CREATE TABLE IF NOT EXISTS railyard_records (
    run_id text NOT NULL REFERENCES railyard_runs (run_id),
    seq integer NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    node_id text,
    finishes_step boolean NOT NULL,
    ts double precision NOT NULL,
    body json NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""

COLUMNS = {
    "railyard_runs": list(RUN_COLUMNS),
    "railyard_records": list(RECORD_COLUMNS),
}

ADDED_IN = {
    2: ("graph text",),
    3: (
        "note text",
        "wake_at double precision",
        "owner text",
        "lease_expires double precision",
        "cancel_requested text",
    ),
}
"""The columns of `railyard_runs` each schema version added."""

# The records of a batch, from one JSON array (one parameter: cheaper to send and parse than
# an array per column): one row each, numbered from 1 (`n`) in the batch's order.
_RECORDS = """ROWS FROM (json_to_recordset(%(records)s::json)
        AS (kind text, status text, node_id text, finishes_step boolean, ts double precision, body json))
    WITH ORDINALITY AS r (kind, status, node_id, finishes_step, ts, body, n)"""

# One statement per batch, so one round trip and one commit: the run's row moves on (its
# row lock orders concurrent writers) and hands the batch its first sequence number. With a
# fence (the writer holds the run), the row moves on only while its owner is that token. The
# one row that comes back says what happened: nothing is written when the run is missing
# (`exists` false) or was taken over (`moved` false: `owner` is who holds it).
APPEND = f"""
WITH run AS (
    UPDATE railyard_runs SET
        next_seq = next_seq + %(count)s::integer,
        steps = steps + %(steps)s::integer,
        last_node = COALESCE(%(last_node)s::text, last_node),
        status = COALESCE(%(status)s::text, status),
        updated_at = COALESCE(%(updated_at)s::double precision, updated_at),
        note = CASE WHEN %(decided)s::boolean THEN %(note)s::text
            WHEN %(same)s::text IS NULL OR status = %(same)s::text THEN note END,
        wake_at = CASE WHEN %(decided)s::boolean THEN %(wake_at)s::double precision
            WHEN %(same)s::text IS NULL OR status = %(same)s::text THEN wake_at END,
        owner = COALESCE(%(owner)s::text, owner),
        lease_expires = COALESCE(%(lease_expires)s::double precision, lease_expires)
    WHERE run_id = %(run_id)s::text AND (%(fence)s::text IS NULL OR owner = %(fence)s::text)
    RETURNING next_seq - %(count)s::integer AS first_seq, cancel_requested
), written AS (
    INSERT INTO railyard_records (run_id, seq, kind, status, node_id, finishes_step, ts, body)
    SELECT %(run_id)s::text, run.first_seq + r.n - 1, r.kind, r.status, r.node_id, r.finishes_step, r.ts, r.body
    FROM run, {_RECORDS}
)
SELECT EXISTS (SELECT 1 FROM run) AS moved, (SELECT cancel_requested FROM run),
    EXISTS (SELECT 1 FROM railyard_runs WHERE run_id = %(run_id)s::text) AS exists,
    (SELECT owner FROM railyard_runs WHERE run_id = %(run_id)s::text)
"""

# The run's row is written as the batch leaves it; no row comes back (and nothing is
# written) when a run with this id exists. A run made by no driver is ready: workers hear of it.
CREATE = f"""
WITH run AS (
    INSERT INTO railyard_runs (run_id, status, started_at, updated_at, steps, last_node, next_seq, graph, note,
                               wake_at, owner, lease_expires)
    VALUES (%(run_id)s::text, %(status)s::text, %(started_at)s::double precision, %(updated_at)s::double precision,
            %(steps)s::integer, %(last_node)s::text, %(count)s::integer, %(graph)s::text, %(note)s::text,
            %(wake_at)s::double precision, %(owner)s::text, %(lease_expires)s::double precision)
    ON CONFLICT DO NOTHING
    RETURNING run_id
), written AS (
    INSERT INTO railyard_records (run_id, seq, kind, status, node_id, finishes_step, ts, body)
    SELECT run.run_id, r.n - 1, r.kind, r.status, r.node_id, r.finishes_step, r.ts, r.body
    FROM run, {_RECORDS}
), told AS (
    SELECT pg_notify('{CHANNEL}', COALESCE(%(graph)s::text, '')) FROM run WHERE %(owner)s::text IS NULL
)
SELECT (SELECT count(*) FROM told) FROM run
"""

# Taking a run by id, on the store's lock session: its advisory lock marks the holder alive (the
# server drops it with the session). The row is taken when nobody holds it, when that lock was
# had (no live session holds the run, whatever its row says: a holder that died, or whose
# session was cut off), or when its lease ran out (its holder is cut off, its session not yet
# ended). A run with no row is held by the advisory lock alone, until its creation writes the token.
TAKE = """
WITH got AS MATERIALIZED (
    SELECT pg_try_advisory_lock(hashtextextended(%(run_id)s::text, %(salt)s::bigint)) AS locked
), taken AS (
    UPDATE railyard_runs SET owner = %(token)s::text, lease_expires = %(expires)s::double precision FROM got
    WHERE run_id = %(run_id)s::text AND (got.locked OR owner IS NULL OR lease_expires < %(now)s)
    RETURNING 1
)
SELECT got.locked, EXISTS (SELECT 1 FROM taken), EXISTS (SELECT 1 FROM railyard_runs WHERE run_id = %(run_id)s::text)
FROM got
"""

# Claiming, on the lock session: the oldest ready runs, skipping rows other claimers are looking
# at and runs whose holder is alive (its lease runs and its session holds the run's advisory
# lock; a holder cut off keeps its session a while, so a lease that ran out is taken). Runs whose
# holder died or was cut off come first (their lease has not run out, but no session holds
# their lock), then runs whose lease ran out, then runs nobody holds. The candidates are
# materialized so the volatile lock call runs on them as they come and stops at the first
# run it gets; that run's row, locked since the scan, is taken in the same statement.
CLAIM = f"""
WITH alive AS MATERIALIZED (
    SELECT (classid::bigint << 32) | objid::bigint AS key FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 1 AND granted
), ready AS MATERIALIZED (
    SELECT run_id, owner IS NOT NULL AND lease_expires >= %(now)s AS held, owner IS NOT NULL AS owned
    FROM railyard_runs
    WHERE (({REPORTED_STATUS_SQL.format(now="%(now)s")}) = ANY(%(statuses)s)
           OR (status = 'suspended' AND wake_at <= %(now)s))
        AND NOT (run_id = ANY(%(passed)s))
        AND (%(any_graph)s OR graph = ANY(%(graphs)s) OR (%(unnamed)s AND graph IS NULL))
        AND (owner IS NULL OR lease_expires < %(now)s
             OR hashtextextended(run_id, %(salt)s::bigint) NOT IN (SELECT key FROM alive))
    ORDER BY held DESC, owned DESC, updated_at
    LIMIT %(candidates)s
    FOR UPDATE SKIP LOCKED
), chosen AS MATERIALIZED (
    SELECT ready.run_id, got.locked FROM ready,
        LATERAL (SELECT pg_try_advisory_lock(hashtextextended(ready.run_id, %(salt)s::bigint)) AS locked) AS got
    WHERE got.locked OR NOT ready.held
    LIMIT 1
)
UPDATE railyard_runs SET owner = %(token)s::text, lease_expires = %(expires)s::double precision FROM chosen
WHERE railyard_runs.run_id = chosen.run_id
RETURNING railyard_runs.run_id, chosen.locked
"""

# A holder renews its lease while the row still names it; else says who holds the run.
RENEW = """
WITH renewed AS (
    UPDATE railyard_runs SET lease_expires = %(expires)s::double precision
    WHERE run_id = %(run_id)s::text AND owner = %(token)s::text
    RETURNING cancel_requested
)
SELECT EXISTS (SELECT 1 FROM renewed), (SELECT cancel_requested FROM renewed),
    EXISTS (SELECT 1 FROM railyard_runs WHERE run_id = %(run_id)s::text),
    (SELECT owner FROM railyard_runs WHERE run_id = %(run_id)s::text)
"""

# Letting go: the advisory lock first (when held on this session), then the lease, if the row
# still names this taking; a run left ready is announced to the workers (on commit).
RELEASE = f"""
WITH unlocked AS MATERIALIZED (
    SELECT CASE WHEN %(locked)s::boolean
        THEN pg_advisory_unlock(hashtextextended(%(run_id)s::text, %(salt)s::bigint)) END AS done
), cleared AS (
    UPDATE railyard_runs SET owner = NULL, lease_expires = NULL FROM unlocked
    WHERE run_id = %(run_id)s::text AND owner = %(token)s::text
    RETURNING status, graph
)
SELECT pg_notify('{CHANNEL}', COALESCE(graph, '')) FROM cleared
WHERE status NOT IN ('ended', 'cancelled', 'failed', 'suspended')
"""


def _records_json(records: Sequence[StoredRecord]) -> str:
    """The batch as one JSON array; each record's body (JSON already) goes in as it is."""
    return (
        "["
        + ",".join(
            f'{{"kind":{json.dumps(r.kind)},"status":{json.dumps(r.status.value)},"node_id":{json.dumps(r.node_id)},'
            f'"finishes_step":{"true" if r.finishes_step else "false"},"ts":{float(r.ts)!r},"body":{r.body}}}'
            for r in records
        )
        + "]"
    )


def batch(records: Sequence[StoredRecord]) -> dict[str, Any]:
    """The parameters `APPEND` and `CREATE` take for a batch of records."""
    last = records[-1] if records else None
    decided, note, wake_at, same = batch_note(records)
    return {
        "decided": decided,
        "note": note,
        "wake_at": wake_at,
        "same": same.value if same is not None else None,
        "count": len(records),
        "steps": sum(record.finishes_step for record in records),
        "last_node": next((record.node_id for record in reversed(records) if record.node_id), None),
        "status": last.status.value if last is not None else None,
        "updated_at": last.ts if last is not None else None,
        "records": _records_json(records),
    }


INFO_COLUMNS = (
    "run_id, status, started_at, updated_at, steps, last_node, graph, note, wake_at, owner, lease_expires, "
    "cancel_requested"
)
"""The columns `info` reads, in its order."""


def info(row: Sequence[Any], now: float) -> RunInfo:
    """A `RunInfo` from a `railyard_runs` row (its `INFO_COLUMNS`)."""
    run_id, state, started, updated, steps, last_node, graph, note, wake_at, owner, expires, asked = row
    stored = RunStatus(state)
    return RunInfo(
        run_id,
        reported_status(stored, owner_of(owner), expires, now),
        datetime.fromtimestamp(started, UTC),
        steps,
        last_node,
        graph,
        updated_at=datetime.fromtimestamp(updated, UTC),
        owner=owner_of(owner),
        lease_expires=datetime.fromtimestamp(expires, UTC) if expires is not None and owner is not None else None,
        cancel_requested=asked if stored not in (RunStatus.ENDED, RunStatus.CANCELLED) else None,
        **info_fields(stored, note, wake_at),  # type: ignore[arg-type]  # the fields' own types
    )


def connection_settings(conninfo: str) -> dict[str, Any]:
    """The libpq parameters for every session: railyard's TCP keepalives, unless `conninfo` sets them."""
    try:
        given = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return {}  # connecting says what is wrong with the conninfo
    return {name: str(given.get(name, default)) for name, default in _KEEPALIVES.items()}


def session_setup(
    settings: dict[str, Any], statement_timeout: float | None
) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]:
    """A pool's `configure` (and the private sessions' set-up): the server's end of each session.

    The server ends a partitioned client's session, and so frees the runs it holds, only
    when its own socket gives up; libpq's keepalives alone only tell the client. A statement
    runs at most `statement_timeout` seconds, and no session sits idle inside a transaction
    for long (both would hold rows other workers wait for).
    """
    names: list[str] = []
    values: list[str] = []
    if settings.get("keepalives", "0") != "0":
        names += ["tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"]
        values += [
            settings["keepalives_idle"],
            settings["keepalives_interval"],
            settings["keepalives_count"],
            settings["tcp_user_timeout"],
        ]
    names.append("idle_in_transaction_session_timeout")
    values.append("60000")
    if statement_timeout is not None:
        names.append("statement_timeout")
        values.append(str(round(statement_timeout * 1000)))
    statement = "SELECT " + ", ".join(f"set_config('{name}', %s, false)" for name in names)

    async def configure(connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.execute(statement, values)

    return configure


async def check_schema(connection: psycopg.AsyncConnection[Any], where: str, schema_version: int) -> None:
    """Make railyard's tables in an empty database, upgrade an older layout in place, refuse a foreign one."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        cursor = await connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name LIKE 'railyard_%%' ORDER BY ordinal_position"
        )
        columns: dict[str, list[str]] = {}
        for table, column in await cursor.fetchall():
            columns.setdefault(table, []).append(column)
        if not columns:
            await connection.execute(SCHEMA)
            await connection.execute(
                "INSERT INTO railyard_meta (key, value) VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
                (str(schema_version),),
            )
            return
        if "railyard_meta" not in columns:
            raise PersistenceError(
                f"{where} has railyard tables but no railyard_meta table; it was not made by railyard."
            )
        row = await (
            await connection.execute("SELECT value FROM railyard_meta WHERE key = 'schema_version'")
        ).fetchone()
        version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
        if version is None:
            raise PersistenceError(f"{where} has no valid railyard schema version; it was not made by railyard.")
        if version > schema_version:
            raise PersistenceError(
                f"{where} was written by a newer railyard (schema version {version}; this railyard reads up "
                f"to {schema_version}). Upgrade railyard to use it."
            )
        if version < schema_version:
            # each version's columns, added in order; the schema lock held here keeps other upgraders out
            known = len(COLUMNS["railyard_runs"]) - sum(
                len(ADDED_IN[v]) for v in range(version + 1, schema_version + 1)
            )
            if columns.get("railyard_runs") == COLUMNS["railyard_runs"][:known]:
                for added in range(version + 1, schema_version + 1):
                    for column in ADDED_IN[added]:
                        await connection.execute(f"ALTER TABLE railyard_runs ADD COLUMN {column}")
                await connection.execute(
                    "UPDATE railyard_meta SET value = %s WHERE key = 'schema_version'", (str(schema_version),)
                )
                columns["railyard_runs"] = COLUMNS["railyard_runs"]
                version = schema_version
        for table, expected in COLUMNS.items():
            if columns.get(table) != expected:
                raise PersistenceError(
                    f"{where}: table {table} has columns {columns.get(table, [])}, expected {expected}; the "
                    f"database does not have railyard's schema version {version}."
                )


async def check_alive(connection: psycopg.AsyncConnection[Any]) -> None:
    """Refuse a pooled session the server has ended, without a round trip.

    The first read may only take in the server's goodbye; the second sees the socket closed.
    """
    for _ in range(2):
        connection.pgconn.consume_input()  # raises OperationalError once the socket is closed
