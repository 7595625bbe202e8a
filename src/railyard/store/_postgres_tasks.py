"""Branch tasks in PostgreSQL: the tables and statements of `railyard.branches`.

A branch task is one attempt of one step of a run (`run_id`, `step_id`, `attempt` name
it, once), put in a queue by the run's driver and run by whichever branch worker claims
it. Its row goes `queued` -> `running` (claimed: `owner` is the claim's token, the lease
runs out at `lease_expires`) -> `done` / `failed` (the worker's `answer`) or `lost` (its
lease ran out `max_claims` times), or `cancelled` by the driver. Times are the server's
clock (seconds since the epoch), so workers on machines whose clocks differ agree.

Claims of one queue are serialized by an advisory lock taken in the claim's transaction:
a queue's `concurrency` (in `railyard_queues`) bounds its rows `running` under a live
lease, however many workers claim at once. Notifications: a batch of queued tasks is
announced on `TASK_QUEUED` (payload: the queue), a task's answer on `TASK_DONE`
(payload: its task id).

The tables are made on first use, beside the run tables, and a task's row goes with its
run (`ON DELETE CASCADE`).
"""

from __future__ import annotations

from typing import Any

from railyard.exceptions import PersistenceError
from railyard.store._postgres_sql import SCHEMA_LOCK

try:
    import psycopg
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError("Branch tasks need psycopg: pip install 'railyard-graph[postgres]'") from err

__all__ = (
    "ANSWERS",
    "CANCEL",
    "CLAIM",
    "FINISH",
    "LOSE_EXPIRED",
    "QUEUE_LOCK",
    "RELEASE",
    "RENEW",
    "SET_LIMIT",
    "SUBMIT",
    "SWEEP",
    "TASK_DONE",
    "TASK_QUEUED",
    "TASKS_VERSION",
    "ensure_tasks",
)

TASKS_VERSION = 1
"""The layout of the task tables (`railyard_meta` key `tasks_version`)."""
TASK_QUEUED = "railyard_task_queued"
TASK_DONE = "railyard_task_done"
QUEUE_LOCK = 0x7461736B  # the first key of a queue's advisory lock; the second is the queue's hash

_NOW = "extract(epoch FROM clock_timestamp())::double precision"

TASKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS railyard_queues (
    queue text PRIMARY KEY,
    concurrency integer
);
CREATE TABLE IF NOT EXISTS railyard_tasks (
    task_id bigserial PRIMARY KEY,
    run_id text NOT NULL REFERENCES railyard_runs (run_id) ON DELETE CASCADE,
    step_id text NOT NULL,
    attempt integer NOT NULL,
    queue text NOT NULL,
    graph text,
    node_id text NOT NULL,
    payload json NOT NULL,
    submitted_by text NOT NULL,
    state text NOT NULL,
    owner text,
    lease_expires double precision,
    claims integer NOT NULL,
    queued_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    answer json,
    UNIQUE (run_id, step_id, attempt)
);
CREATE INDEX IF NOT EXISTS railyard_tasks_queued ON railyard_tasks (queue, task_id) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS railyard_tasks_running ON railyard_tasks (queue, lease_expires) WHERE state = 'running';
"""

TASK_COLUMNS = {
    "railyard_queues": ["queue", "concurrency"],
    "railyard_tasks": [
        "task_id",
        "run_id",
        "step_id",
        "attempt",
        "queue",
        "graph",
        "node_id",
        "payload",
        "submitted_by",
        "state",
        "owner",
        "lease_expires",
        "claims",
        "queued_at",
        "started_at",
        "finished_at",
        "answer",
    ],
}


async def ensure_tasks(connection: psycopg.AsyncConnection[Any], where: str) -> None:
    """Make the task tables if they are missing; refuse tables of those names railyard did not make.

    Raises:
        PersistenceError: the tables exist with other columns, or a newer layout.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        cursor = await connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name IN ('railyard_queues', 'railyard_tasks') ORDER BY ordinal_position"
        )
        columns: dict[str, list[str]] = {}
        for table, column in await cursor.fetchall():
            columns.setdefault(table, []).append(column)
        row = await (await connection.execute("SELECT value FROM railyard_meta WHERE key = 'tasks_version'")).fetchone()
        if not columns and row is None:
            await connection.execute(TASKS_SCHEMA)
            await connection.execute(
                "INSERT INTO railyard_meta (key, value) VALUES ('tasks_version', %s)", (str(TASKS_VERSION),)
            )
            return
        version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
        if version is not None and version > TASKS_VERSION:
            raise PersistenceError(
                f"{where}: its branch tasks were written by a newer railyard (tasks version {version}; this "
                f"railyard reads {TASKS_VERSION}). Upgrade railyard to use them."
            )
        mismatched = [table for table, expected in TASK_COLUMNS.items() if columns.get(table) != expected]
        if version is None or mismatched:
            # a table railyard did not make, said before one that is merely missing
            table = next((t for t in mismatched if t in columns), mismatched[0] if mismatched else "railyard_tasks")
            raise PersistenceError(
                f"{where}: table {table} has columns {columns.get(table, [])}, expected {TASK_COLUMNS[table]}; it "
                f"was not made by railyard's branch tasks (version {TASKS_VERSION}). Rename or drop it."
            )


# A queue, made known to workers claiming from every queue; with `set`, its global limit as the
# driver's executor gives it (`concurrency` NULL: no limit). Without, an existing limit stays.
SET_LIMIT = """
INSERT INTO railyard_queues (queue, concurrency) VALUES (%(queue)s::text, %(concurrency)s::integer)
ON CONFLICT (queue) DO UPDATE SET concurrency = EXCLUDED.concurrency WHERE %(set)s::boolean
"""

# A batch of tasks (one JSON array), each queued once. A task submitted again (its driver
# was restarted, or the run resumed after a failure) is the submitter's from then on: one
# that is done comes back with its answer, and is not run again; one still queued or
# running is waited for; one that failed, was lost or was cancelled is queued afresh.
# The graph is the run's (a run this database does not have is a foreign-key violation).
SUBMIT = f"""
WITH given AS (
    SELECT * FROM json_to_recordset(%(tasks)s::json)
        AS g (run_id text, step_id text, attempt integer, node_id text, payload json)
), queued AS (
    INSERT INTO railyard_tasks AS t (
        run_id, step_id, attempt, queue, graph, node_id, payload, submitted_by, state, claims, queued_at
    )
    SELECT g.run_id, g.step_id, g.attempt, %(queue)s::text, r.graph, g.node_id, g.payload, %(by)s::text,
        'queued', 0, {_NOW}
    FROM given g LEFT JOIN railyard_runs r ON r.run_id = g.run_id
    ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET
        submitted_by = EXCLUDED.submitted_by,
        queue = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN EXCLUDED.queue ELSE t.queue END,
        graph = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN EXCLUDED.graph ELSE t.graph END,
        lease_expires = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN NULL ELSE t.lease_expires END,
        started_at = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN NULL ELSE t.started_at END,
        finished_at = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN NULL ELSE t.finished_at END,
        state = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN 'queued' ELSE t.state END,
        payload = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN EXCLUDED.payload ELSE t.payload END,
        answer = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN NULL ELSE t.answer END,
        owner = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN NULL ELSE t.owner END,
        claims = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN 0 ELSE t.claims END,
        queued_at = CASE WHEN t.state IN ('failed', 'lost', 'cancelled') THEN EXCLUDED.queued_at ELSE t.queued_at END
    RETURNING t.task_id, t.run_id, t.step_id, t.attempt, t.state, t.answer
), told AS (
    SELECT pg_notify('{TASK_QUEUED}', %(queue)s::text) WHERE EXISTS (SELECT 1 FROM queued WHERE state = 'queued')
)
SELECT queued.*, (SELECT count(*) FROM told) FROM queued
"""

# The tasks among `ids` that have an answer (or were cancelled by someone else).
ANSWERS = """
SELECT task_id, state, answer, owner FROM railyard_tasks
WHERE task_id = ANY(%(ids)s::bigint[]) AND state IN ('done', 'failed', 'lost', 'cancelled')
"""

# Tasks whose driver no longer waits: a worker running one hears of it at its next renewal.
CANCEL = (
    """
UPDATE railyard_tasks SET state = 'cancelled', owner = NULL, lease_expires = NULL, finished_at = """
    + _NOW
    + """
WHERE task_id = ANY(%(ids)s::bigint[]) AND state IN ('queued', 'running') AND submitted_by = %(by)s::text
"""
)

# Inside the claim's transaction, after the queue's lock: tasks whose lease ran out
# `max_claims` times are lost (their drivers hear of it); the others are claimable again.
LOSE_EXPIRED = f"""
UPDATE railyard_tasks SET state = 'lost', answer = json_build_object('lost', owner, 'claims', claims),
    owner = NULL, finished_at = {_NOW}
WHERE queue = %(queue)s::text AND state = 'running' AND lease_expires <= {_NOW}
    AND claims >= %(max_claims)s::integer
RETURNING pg_notify('{TASK_DONE}', task_id::text)
"""

_FOR_US = """(graph = ANY(%(graphs)s::text[]) OR (graph IS NULL AND %(unnamed)s::boolean))
        AND (SELECT r.status FROM railyard_runs r WHERE r.run_id = railyard_tasks.run_id)
            NOT IN ('ended', 'cancelled')"""
"""A task this worker may claim: of a graph it has, of a run that is not over."""

# Up to `want` tasks of the queue, oldest first, within the queue's room: its limit less its
# tasks running under a live lease; none of a run that is over. Each claim gets a token no
# other claim ever has (`owner`).
CLAIM = f"""
WITH clock AS (SELECT {_NOW} AS now),
room AS (
    SELECT GREATEST(0, LEAST(%(want)s::integer, COALESCE(
        (SELECT concurrency FROM railyard_queues WHERE queue = %(queue)s::text)
            - (SELECT count(*) FROM railyard_tasks, clock WHERE queue = %(queue)s::text AND state = 'running'
               AND lease_expires > clock.now),
        %(want)s::integer))) AS n
), candidates AS (
    -- each through its partial index, so answered tasks are never walked over
    (SELECT task_id FROM railyard_tasks WHERE queue = %(queue)s::text AND state = 'queued' AND {_FOR_US}
     ORDER BY task_id LIMIT (SELECT n FROM room))
    UNION ALL
    (SELECT task_id FROM railyard_tasks, clock WHERE queue = %(queue)s::text AND state = 'running'
        AND lease_expires <= clock.now AND {_FOR_US}
     ORDER BY lease_expires LIMIT (SELECT n FROM room))
), picked AS (
    SELECT task_id FROM railyard_tasks
    WHERE task_id IN (SELECT task_id FROM candidates)
    ORDER BY task_id
    LIMIT (SELECT n FROM room)
    FOR UPDATE SKIP LOCKED
)
UPDATE railyard_tasks t SET state = 'running', claims = t.claims + 1,
    owner = %(worker)s::text || '/' || t.task_id || '.' || gen_random_uuid(),
    lease_expires = clock.now + %(lease)s::double precision, started_at = clock.now
FROM clock WHERE t.task_id = ANY(ARRAY(SELECT task_id FROM picked))
RETURNING t.task_id, t.run_id, t.step_id, t.attempt, t.graph, t.node_id, t.payload, t.owner
"""

# A worker's live claims, renewed; the ones that do not come back were taken, cancelled, or
# let run out (a lease that ran out may already count as room for another claim).
RENEW = f"""
UPDATE railyard_tasks SET lease_expires = {_NOW} + %(lease)s::double precision
WHERE owner = ANY(%(owners)s::text[]) AND state = 'running' AND lease_expires > {_NOW}
RETURNING owner
"""

# A claim's answer, written only while the claim still holds the task.
FINISH = f"""
UPDATE railyard_tasks SET state = %(state)s::text, answer = %(answer)s::json, finished_at = {_NOW},
    lease_expires = NULL
WHERE task_id = %(task_id)s::bigint AND owner = %(owner)s::text AND state = 'running'
RETURNING pg_notify('{TASK_DONE}', task_id::text)
"""

# A stopping worker's claims, queued again as they were (the claim does not count).
RELEASE = f"""
WITH released AS (
    UPDATE railyard_tasks SET state = 'queued', owner = NULL, lease_expires = NULL, started_at = NULL,
        claims = GREATEST(claims - 1, 0)
    WHERE owner = ANY(%(owners)s::text[]) AND state = 'running'
    RETURNING queue
)
SELECT pg_notify('{TASK_QUEUED}', queue) FROM (SELECT DISTINCT queue FROM released) q
"""

# Tasks of runs that are over, a batch at a time: every task of an ended or cancelled run (a
# worker running one hears of it at its next renewal), and the answered ones of a failed run
# (its resume queues what it still needs again).
SWEEP = """
DELETE FROM railyard_tasks WHERE task_id IN (
    SELECT t.task_id FROM railyard_tasks t JOIN railyard_runs r ON r.run_id = t.run_id
    WHERE r.status IN ('ended', 'cancelled')
        OR (r.status = 'failed' AND t.state NOT IN ('queued', 'running'))
    LIMIT %(batch)s::integer
)
"""
