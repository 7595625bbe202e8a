"""Every `railyard` command as a real process against a real PostgreSQL server.

The server comes from the `new_postgres_database` fixture (tests/conftest.py): a new,
empty database per test; without a server the tests fail and say how to get one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]
G = "tests.support.cli_graphs"
GUARD = 120
"""Seconds a command may take before the test fails (a guard against a hang, never a wait)."""


class Railyard:
    """`python -m railyard ...` as a process, against one PostgreSQL database."""

    def __init__(self, store: str, cwd: Path) -> None:
        self.store = store
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

    def __call__(self, *args: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "railyard", *args, "--store", self.store],
            cwd=self.cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=GUARD,
            check=False,
        )
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        return done

    def runs(self, *args: str) -> dict[str, str]:
        """The runs' statuses, by id."""
        return {info["run_id"]: info["status"] for info in json.loads(self("runs", "--json", *args).stdout)}


@pytest.fixture
def railyard(new_postgres_database: Callable[[], str], tmp_path: Path) -> Railyard:
    return Railyard(new_postgres_database(), tmp_path)


def test_run_show_runs_and_diagram(railyard: Railyard) -> None:
    done = railyard("run", f"{G}:counter", "--state", '{"counter": 2}', "--run-id", "c1")
    assert json.loads(done.stdout) == 3
    assert done.stderr.count("  CountDown  ") == 3  # a line per step, on stderr
    assert "run c1 ended" in done.stderr
    assert json.loads(railyard("run", f"{G}:doubles", "--inputs", "[1, 2, 3]", "--run-id", "d1").stdout) == [2, 4, 6]
    assert railyard.runs() == {"c1": "ended", "d1": "ended"}
    assert railyard.runs("--graph", "doubles") == {"d1": "ended"}
    table = railyard("runs").stdout
    assert "c1" in table and "counter" in table
    shown = railyard("show", "c1", "--step", "1").stdout
    assert "~ counter: 2 -> 1" in shown
    detail = json.loads(railyard("show", "c1", "--json").stdout)
    assert [s["node"] for s in detail["steps"]] == ["CountDown"] * 3
    assert detail["state"] == {"counter": 0, "seen": [2, 1, 0]}
    drawn = railyard("diagram", f"{G}:counter", "--run", "c1").stdout
    assert drawn.rstrip().endswith("class CountDown visited")


def test_a_fan_out_on_a_pipe_gets_plain_lines(railyard: Railyard) -> None:
    done = railyard("run", f"{G}:doubles", "--inputs", json.dumps(list(range(500))), "--run-id", "d1")
    assert json.loads(done.stdout) == [2 * i for i in range(500)]
    assert "  double  " not in done.stderr  # no line per item
    assert "map -> double: 500/500 done in " in done.stderr


def test_signal_resume_cancel_fork_delete_prune(railyard: Railyard) -> None:
    railyard("run", f"{G}:approvals", "--run-id", "p1", code=3)
    asked = railyard("run", f"{G}:approvals", "--run-id", "p2", code=3).stderr
    assert f'railyard signal p2 approval \'{{"approved": true, "by": ""}}\' --store {railyard.store}' in asked
    assert railyard.runs("--status", "suspended") == {"p1": "suspended", "p2": "suspended"}
    refused = railyard("signal", "p1", "approval", '{"approved": 1}', code=1)
    assert refused.stderr.startswith("railyard: ") and len(refused.stderr.strip().splitlines()) == 1
    railyard("signal", "p1", "approval", '{"approved": true, "by": "Dana"}')
    assert railyard.runs()["p1"] == "waiting"
    assert json.loads(railyard("resume", "p1", "--graph", f"{G}:approvals").stdout) == "approved by Dana"
    assert "cancelled run p2" in railyard("cancel", "p2", "--reason", "withdrawn").stdout
    assert json.loads(railyard("show", "p2", "--json").stdout)["cancel_reason"] == "withdrawn"

    railyard("run", f"{G}:counter", "--state", '{"counter": 2}', "--run-id", "c1")
    forked = railyard("fork", "c1", "--at", "1", "--graph", f"{G}:counter", "--new-run-id", "c2")
    assert forked.stdout.strip() == "c2"
    assert f"railyard resume c2 --graph {G}:counter --store {railyard.store}" in forked.stderr
    assert json.loads(railyard("resume", "c2", "--graph", f"{G}:counter").stdout) == 3
    railyard("delete", "c2", "--yes")
    gone = railyard("show", "c2", code=1)
    [line] = gone.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("railyard: No run 'c2' in PostgresStore(")
    assert "no runs to prune" in railyard("prune", "--older-than", "30d", "--yes").stdout
    pruned = railyard("prune", "--older-than", "0s", "--status", "ended", "--yes").stdout
    assert pruned.startswith("pruned 2 run(s): ")
    assert set(pruned.strip().removeprefix("pruned 2 run(s): ").split(", ")) == {"p1", "c1"}
    assert "pruned 1 run(s): p2" in railyard("prune", "--older-than", "0s", "--yes").stdout  # cancelled
    assert railyard("runs").stdout.strip() == "no runs"


def test_worker_drives_ready_runs_until_idle(railyard: Railyard) -> None:
    railyard("run", f"{G}:approvals", "--run-id", "p1", code=3)
    railyard("run", f"{G}:approvals", "--run-id", "p2", code=3)
    railyard("signal", "p1", "approval", '{"approved": true, "by": "Ann"}')
    railyard("signal", "p2", "approval", '{"approved": false, "by": "Bo"}')
    one = railyard("worker", f"{G}:approvals", "--max-runs", "1")
    assert "worker: drove 1 run(s): p" in one.stderr
    rest = railyard("worker", f"{G}:approvals", "--idle-timeout", "0")
    assert "worker: drove 1 run(s): p" in rest.stderr
    assert railyard.runs() == {"p1": "ended", "p2": "ended"}
    assert json.loads(railyard("show", "p2", "--json").stdout)["status"] == "ended"


def _read_until(stream: IO[str], text: str) -> str:
    seen = ""
    while text not in seen:
        line = stream.readline()
        assert line, f"the process ended before printing {text!r}: {seen}"
        seen += line
    return seen


def test_ctrl_c_leaves_a_run_another_process_resumes(railyard: Railyard) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "railyard", "run", f"{G}:hanging", "--run-id", "h1", "--store", railyard.store],
        cwd=railyard.cwd,
        env=railyard.env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stderr is not None
        _read_until(process.stderr, "Hang waits forever")
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=GUARD) == 130
    assert f"railyard resume h1 --graph {G}:hanging --store {railyard.store}" in rest
    assert railyard.runs()["h1"] in ("waiting", "running", "stalled")
    # the database lock went with the process: the next driver takes the run at once
    resumed = railyard("resume", "h1", "--graph", f"{G}:hanging", CLI_GRAPHS_RELEASE="1")
    assert json.loads(resumed.stdout) == 7
    assert railyard.runs()["h1"] == "ended"


def test_a_runs_map_goes_to_a_branch_worker_process(railyard: Railyard) -> None:
    command = ["worker", f"{G}:doubles", "--concurrency", "0", "--branches", "4", "--store", railyard.store]
    worker = subprocess.Popen(
        [sys.executable, "-m", "railyard", *command],
        cwd=railyard.cwd,
        env=railyard.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        said = _read_until(worker.stderr, "branch task(s) at once")
        assert "driving up to 0 run(s) at once of doubles, running up to 4 branch task(s) at once" in said
        done = railyard("run", f"{G}:doubles", "--inputs", json.dumps(list(range(100))), "--executor", "branches")
        assert sorted(json.loads(done.stdout)) == [2 * i for i in range(100)]  # joined as they came
        assert "map -> double: 100/100 done in " in done.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=GUARD)
    assert worker.returncode == 0, rest
    assert "worker: stopped" in rest
    wrong = railyard("worker", f"{G}:doubles", "--concurrency", "0", code=2)
    assert "branches=N" in wrong.stderr
