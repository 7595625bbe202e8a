"""What the PostgreSQL benchmarks share: fresh databases, and worker processes started and stopped."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent

Started = list[tuple[subprocess.Popen[bytes], Path]]
"""Each worker process, with the file its output goes to."""


def make_database(admin_url: str, name: str) -> str:
    """A new, empty database `name` on the server of `admin_url` (dropped first if it exists); its URL."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, ending its sessions."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def worker_processes(
    commands: Sequence[list[str]], logs: Path, *, env: Mapping[str, str] | None = None, suffix: str = ".log"
) -> Iterator[Started]:
    """Start one process per command, its output in `logs/worker-N<suffix>`; SIGTERM (then kill) them at the end."""
    started: Started = []
    try:
        for index, command in enumerate(commands):
            log = logs / f"worker-{index}{suffix}"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, cwd=REPO, env=None if env is None else dict(env), stdout=out, stderr=out
                )
                started.append((process, log))
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_started(workers: Started) -> None:
    """Wait until every worker has written `worker started` (a minute or two at most), or exit saying which did not."""
    deadline = time.monotonic() + 120
    for process, log in workers:
        while "worker started" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: a worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
