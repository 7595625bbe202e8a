"""Workers at scale on PostgreSQL: runs of every kind, worker processes killed and cut off, each step once.

The chaos test starts `WORKERS` worker processes (`concurrency=CONCURRENCY` each) on one
database holding `RUNS` runs (node, builder, agent and suspending node runs, the last
signalled by the test), SIGKILLs a worker holding runs every few ticks and starts another,
cuts one worker's lock session off with `pg_terminate_backend`, and freezes another
(SIGSTOP, as a partition does: its sessions live on) until its leases ran out and its runs
were taken over, then thaws it: its stale drives must be refused every write. It waits on the store
(every run ended) and on process exits, never on a sleep; the ticks only pace the chaos.
Then, from the log and from an audit of the runs' rows (a trigger, see `_AUDIT`): every run
ended with its result, no finished step was recorded twice, no run was written by two
drivers at once, each lease was taken over within its expiry, and the connections stayed
within the pools. The issue's full size (8 workers x 1,000 runs) is `bench/workers.py`:
this size finishes in about a minute on two cores.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.agent import Agent
from railyard.agent.models.test import TestModel
from railyard.exceptions import RunLocked
from railyard.store import RunStatus
from railyard.store.memory import MemoryStore
from railyard.store.postgres import PostgresStore
from railyard.suspension import SignalError
from railyard.suspension import signal as send_signal
from railyard.testing._sample import CountTo, CrashState, Effects, FanOutState, count_graph, fan_out_graph
from railyard.worker import Resumable, run_worker

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent

WORKERS = 4
CONCURRENCY = 8
POOL = 4
"""Each worker's pool size (`max_size`): its sessions are at most POOL + 2 (the lock and listening sessions)."""
LEASE = 2.0
RUNS = 400
COUNT_TO = 10
ITEMS = 6
KILLS = 6
"""Workers killed, one each time another `RUNS // (KILLS + 2)` runs have ended."""
TICK = 0.1
"""Seconds between looks at the store."""


# -- what the workers drive ----------------------------------------------------------------


@dataclass
class GateState:
    """The suspending graph's state: what it was told."""

    seen: list[str] = field(default_factory=list[str])


@dataclass
class Before(BaseNode[GateState, None, str]):
    """A step before the wait."""

    async def run(self, ctx: GraphRunContext[GateState]) -> Wait:
        ctx.state.seen.append("before")
        return Wait()


@dataclass
class Wait(BaseNode[GateState, None, str]):
    """Waits for the test's signal, then ends with its payload."""

    async def run(self, ctx: GraphRunContext[GateState]) -> End[str]:
        answer = await ctx.wait_for("go", str)
        ctx.state.seen.append(answer)
        return End(answer)


gate = Graph(nodes=[Before, Wait], name="gate")

scale_agent = Agent(TestModel(), name="scale_agent")


@scale_agent.tool_plain
def look_up(key: str) -> str:
    """Look `key` up."""
    return key.upper()


GRAPHS: list[Resumable] = [count_graph, fan_out_graph, scale_agent, gate]


async def work(url: str, effects: str) -> None:
    """One worker process: drive runs of `GRAPHS` until SIGTERM (it logs when it handles signals)."""
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("railyard.worker").setLevel(logging.INFO)
    store = PostgresStore(url, lease=LEASE, max_size=POOL)
    try:
        await run_worker(
            GRAPHS,
            store,
            deps={"fan_out_graph": Effects(effects)},
            concurrency=CONCURRENCY,
            idle_timeout=None,
            poll_interval=0.05,
            max_poll_interval=0.5,
            grace=10.0,
            handle_signals=True,
        )
    finally:
        await store.aclose()


WORKER_SCRIPT = """
import asyncio, sys
from tests.test_workers_scale import work

asyncio.run(work(sys.argv[1], sys.argv[2]))
"""

# Every change of a run's row that writes records or changes its owner, with the time.
_AUDIT = """
CREATE TABLE audit (
    id bigserial PRIMARY KEY, run_id text, old_owner text, new_owner text, old_seq integer, new_seq integer,
    old_expires double precision, at double precision
);
CREATE FUNCTION audit_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO audit (run_id, old_owner, new_owner, old_seq, new_seq, old_expires, at)
        VALUES (NEW.run_id, NULL, NEW.owner, 0, NEW.next_seq, NULL, extract(epoch FROM clock_timestamp()));
    ELSIF NEW.owner IS DISTINCT FROM OLD.owner OR NEW.next_seq <> OLD.next_seq THEN
        INSERT INTO audit (run_id, old_owner, new_owner, old_seq, new_seq, old_expires, at)
        VALUES (NEW.run_id, OLD.owner, NEW.owner, OLD.next_seq, NEW.next_seq, OLD.lease_expires,
                extract(epoch FROM clock_timestamp()));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON railyard_runs FOR EACH ROW EXECUTE FUNCTION audit_runs();
"""


@dataclass
class Fleet:
    """The worker processes, alive and gone."""

    url: str
    effects: Path
    logs: Path
    alive: list[subprocess.Popen[bytes]] = field(default_factory=list[subprocess.Popen[bytes]])
    gone: list[subprocess.Popen[bytes]] = field(default_factory=list[subprocess.Popen[bytes]])

    numbers: dict[int, int] = field(default_factory=dict[int, int])

    def start(self) -> subprocess.Popen[bytes]:
        number = len(self.alive) + len(self.gone)
        with (self.logs / f"worker-{number}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, self.url, str(self.effects)], cwd=ROOT, stdout=log, stderr=log
            )
        self.numbers[process.pid] = number
        self.alive.append(process)
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return (self.logs / f"worker-{self.numbers[process.pid]}.log").read_text()

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.kill()
        process.wait()
        self.alive.remove(process)
        self.gone.append(process)

    def tails(self) -> str:
        return "\n".join(f"{log.name}: {log.read_text()[-1500:]}" for log in sorted(self.logs.glob("*.log")))


def _sql(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(query, params or None)
        return cursor.fetchall() if cursor.description is not None else []


def _host_pid(process: subprocess.Popen[bytes]) -> str:
    return f"{os.uname().nodename}:{process.pid}"


@contextlib.contextmanager
def _stopped_at_exit(fleet: Fleet) -> Iterator[None]:
    try:
        yield
    finally:
        for process in list(fleet.alive):
            fleet.kill(process)


async def test_workers_survive_kills_and_a_cut_off_session(
    new_postgres_database: Callable[[], str], tmp_path: Path
) -> None:
    await chaos(new_postgres_database(), tmp_path, workers=WORKERS, runs=RUNS, kills=KILLS)


async def chaos(url: str, directory: Path, *, workers: int, runs: int, kills: int) -> dict[str, float]:
    """Drive `runs` runs with `workers` worker processes on the empty database at `url`, killing `kills` of them.

    Asserts what the module's docstring says, and returns the measures (`bench/workers.py --chaos` runs it
    at full size).
    """
    killed = 0
    store = PostgresStore(url, max_size=2)
    await store.runs()  # the schema, for the audit's trigger
    _sql(url, _AUDIT)
    expected: dict[str, Any] = {}
    for index in range(runs):
        kind = ("count", "count", "fan", "agent", "gate")[index % 5]
        run_id = f"{kind}-{index:04}"
        if kind == "count":
            await count_graph.initialize(CountTo(COUNT_TO), store=store, run_id=run_id, state=CrashState())
            expected[run_id] = COUNT_TO
        elif kind == "fan":
            await fan_out_graph.initialize(store, run_id, state=FanOutState(), inputs=ITEMS)
            expected[run_id] = sum(item * item for item in range(ITEMS))
        elif kind == "agent":
            await scale_agent.initialize(f"question {index}", store=store, run_id=run_id)
            answer = (await scale_agent.run(f"question {index}", store=MemoryStore())).output
            expected[run_id] = {"data": answer, "tool_name": None, "tool_call_id": None}
        else:
            await gate.initialize(Before(), store=store, run_id=run_id, state=GateState())
            expected[run_id] = f"go {run_id}"

    logs = directory / "logs"
    logs.mkdir()
    fleet = Fleet(url, directory / "effects.log", logs)
    most_sessions = 0
    cut: subprocess.Popen[bytes] | None = None
    frozen: subprocess.Popen[bytes] | None = None
    frozen_runs: set[str] = set()
    thawed = False
    with _stopped_at_exit(fleet):
        for _ in range(workers):
            fleet.start()
        started = anyio.current_time()
        stretch = runs // (kills + 4)
        while True:
            infos = await store.runs()
            statuses = Counter(info.status for info in infos)
            assert statuses[RunStatus.FAILED] == 0, [i.error for i in infos if i.error] + [fleet.tails()]
            if frozen is not None and not thawed:
                still = {
                    i.run_id
                    for i in infos
                    if i.run_id in frozen_runs and i.owner == _host_pid(frozen) and i.status is not RunStatus.ENDED
                }
                if not still:  # every run it held was taken over once its lease ran out (or had ended): it wakes up
                    frozen.send_signal(signal.SIGCONT)
                    thawed = True
            if statuses[RunStatus.ENDED] == runs:
                took = anyio.current_time() - started
                break
            left = [
                (i.run_id, i.status.value, i.owner, i.lease_expires) for i in infos if i.status is not RunStatus.ENDED
            ]
            assert anyio.current_time() - started < 60 + runs / 2, f"runs left: {left}\n{fleet.tails()}"
            assert all(p.poll() is None for p in fleet.alive), f"a worker exited by itself\n{fleet.tails()}"
            for info in infos:
                if info.status is RunStatus.SUSPENDED and info.graph == "gate":
                    with contextlib.suppress(RunLocked, SignalError):  # held still (its driver is letting go)
                        await send_signal(store, info.run_id, "go", f"go {info.run_id}")
            (sessions,) = _sql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")[0]
            most_sessions = max(most_sessions, sessions)
            holding = {info.owner for info in infos if info.owner is not None}
            busy = [p for p in fleet.alive if _host_pid(p) in holding and p is not cut and p is not frozen]
            ended = statuses[RunStatus.ENDED]
            if frozen is None and cut is not None and ended >= stretch and busy:
                frozen = busy.pop()  # frozen, as a partitioned worker is: its sessions live, its leases run out
                frozen_runs = {i.run_id for i in infos if i.owner == _host_pid(frozen)}
                frozen.send_signal(signal.SIGSTOP)
            if cut is None and ended >= stretch // 2 and busy:
                cut = busy[0]  # cut off from the database: its lock session is ended, the process lives on
                _sql(
                    url,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    f"railyard-locks {_host_pid(cut)}",
                )
            elif killed < kills and ended >= (killed + 1) * stretch and busy:
                fleet.kill(random.choice(busy))  # a worker holding runs dies mid-drive
                killed += 1
                fleet.start()
            await anyio.sleep(TICK)
        if frozen is not None and not thawed:
            frozen.send_signal(signal.SIGCONT)  # what it held ended before its leases ran out
        for process in fleet.alive:  # each handles SIGTERM once it says it started
            while "worker started" not in fleet.log(process):
                assert process.poll() is None, fleet.tails()
                await anyio.sleep(TICK)
            process.send_signal(signal.SIGTERM)
        for process in list(fleet.alive):
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
            assert code == 0, f"worker-{fleet.numbers[process.pid]} did not stop gracefully\n{fleet.tails()}"
            fleet.alive.remove(process)
            fleet.gone.append(process)
    steps = sum(info.steps for info in await store.runs())
    print(f"{runs} runs, {steps} steps in {took:.1f} s: {runs / took:.0f} runs/s, {steps / took:.0f} steps/s")
    assert killed == kills and cut is not None and frozen is not None
    assert cut.returncode == 0, "the worker cut off from the database went on, and stopped when told"
    assert frozen.returncode == 0, "the worker frozen past its leases went on once thawed, and stopped when told"

    # every run ended with its own result, each finished step recorded once
    infos = {info.run_id: info for info in await store.runs()}
    assert set(infos) == set(expected) and {info.status for info in infos.values()} == {RunStatus.ENDED}
    for run_id, output in expected.items():
        bodies = [json.loads(record.body) for record in await store.read(run_id) if record.kind == "step_finished"]
        finished = Counter(body["task_id"] for body in bodies)
        assert set(finished.values()) == {1}, f"{run_id}: a finished step was recorded twice: {finished}"
        ends = [body["end"]["data"] for body in bodies if body.get("end") is not None]
        assert ends == [output], run_id

    # no run written by two drivers at once: each taking's records are one unbroken stretch of the log
    audit = _sql(url, "SELECT run_id, old_owner, new_owner, old_seq, new_seq, old_expires, at FROM audit ORDER BY id")
    writers: dict[str, list[str]] = {}
    takeovers = []
    for run_id, old_owner, new_owner, old_seq, new_seq, old_expires, at in audit:
        if new_seq > old_seq:
            assert new_owner is not None, f"{run_id}: records written by no holder"
            order = writers.setdefault(run_id, [])
            if not order or order[-1] != new_owner:
                assert new_owner not in order, f"{run_id}: {new_owner} wrote again after another driver did"
                order.append(new_owner)
        elif old_owner is not None and new_owner is not None and old_owner != new_owner:
            takeovers.append((run_id, at - old_expires))
    from_frozen = [row for row in audit if row[1] and row[1].startswith(f"{_host_pid(frozen)}#") and row[2] != row[1]]
    if any(new_owner is not None for _, _, new_owner, *_ in from_frozen):  # it held runs others took over
        assert "was taken over by another driver" in fleet.log(frozen), "thawed, its stale drives were refused"
    assert len(takeovers) >= kills, "each killed worker held runs, which others took over"
    late = [(run_id, round(after, 2)) for run_id, after in takeovers if after > LEASE]
    assert late == [], "a lease is taken over within its expiry (and a poll or two)"
    print(
        f"{len(takeovers)} takeovers, the latest {max(after for _, after in takeovers):+.2f} s after the lease ran out"
    )
    refused = fleet.log(cut).count("was taken over by another driver")
    print(
        f"the worker cut off was refused {refused} writes, and let go of those runs; {most_sessions} sessions at most"
    )

    # the connections stayed within the pools: the workers', the test store's, and the test's own
    bound = (workers + 1) * (POOL + 2) + (2 + 2) + 1
    assert most_sessions <= bound, (most_sessions, bound)
    await store.aclose()
    return {
        "seconds": took,
        "runs": runs,
        "steps": steps,
        "takeovers": len(takeovers),
        "latest_takeover": max(after for _, after in takeovers),
        "sessions": most_sessions,
        "session_bound": bound,
    }
