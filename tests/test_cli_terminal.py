"""`railyard run` and `resume` in a real terminal: the live display, Ctrl-C, and resuming to the right result.

Each test runs `python -m railyard` in a pseudo-terminal (pexpect) against a SQLite file
in `tmp_path`. The graphs' steps stop at gates the test opens (`tests.cli_graphs_terminal`),
so the test knows where a run stands from what it prints, without sleeping.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pexpect  # type: ignore[import-untyped]  # no stubs: its objects are Any here
import pytest

from railyard.store import RunStatus
from railyard.store.sqlite import SqliteStore
from tests.cli_graphs_terminal import GATES, TICKS, TICKS_GATE_AT, open_gate

ROOT = Path(__file__).resolve().parents[1]
G = "tests.cli_graphs_terminal"
GUARD = 120
"""Seconds pexpect waits for a line before failing the test (a guard against a hang, never a wait)."""


class Terminal:
    """`python -m railyard ...` in a pseudo-terminal of 30 rows by 140 columns, with closed gates."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.store = f"sqlite:{tmp_path / 'runs.db'}"
        self.gates = tmp_path / "gates"
        self.gates.mkdir()
        for name in ("ticks", "first", "second"):
            os.mkfifo(self.gates / name)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", GATES: str(self.gates)}
        for unwanted in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR"):
            self.env.pop(unwanted, None)
        self.opened: list[int] = []

    def spawn(self, *args: str) -> pexpect.spawn[str]:
        """Start a command; everything it shows is also kept in `child.logfile_read` (a `StringIO`)."""
        child = pexpect.spawn(
            sys.executable,
            ["-m", "railyard", *args, "--store", self.store],
            cwd=str(self.cwd),
            env=self.env,
            dimensions=(30, 140),
            timeout=GUARD,
            encoding="utf-8",
            codec_errors="replace",
        )
        child.logfile_read = io.StringIO()
        return child

    def open_gate(self, name: str) -> None:
        self.opened.append(open_gate(self.gates, name))

    def finished_steps(self, run_id: str) -> tuple[Counter[str], RunStatus]:
        """How often each step id finished in the store, and the run's status."""

        async def read() -> tuple[Counter[str], RunStatus]:
            store = SqliteStore(self.cwd / "runs.db")
            try:
                records = await store.read(run_id)
                info = (await store.run(run_id)).info
            finally:
                await store.aclose()
            return Counter(json.loads(r.body)["task_id"] for r in records if r.kind == "step_finished"), info.status

        return anyio.run(read)

    def close(self) -> None:
        for fd in self.opened:
            os.close(fd)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    shown = Terminal(tmp_path)
    yield shown
    shown.close()


def _ended(child: pexpect.spawn[str]) -> tuple[str, int]:
    child.expect(pexpect.EOF)
    rest = str(child.before)
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return rest, child.exitstatus


TICK_LINE = r"  Tick  [0-9.]+ m?s  -> Tick\r\n"
ITEM_LINE = r"  double  [0-9.]+ m?s"


def test_a_200_step_run_shows_its_steps_stops_on_ctrl_c_and_resumes(terminal: Terminal) -> None:
    child = terminal.spawn("run", f"{G}:ticks", "--run-id", "t1")
    child.expect("run t1 of ticks in ")
    for _ in range(TICKS_GATE_AT - 1):  # each step appears as it finishes, one line each
        child.expect(TICK_LINE)
    child.expect("Tick running")  # the step at the gate, live
    child.sendintr()
    child.expect("interrupted: run t1 stopped and can be resumed with:")
    child.expect(re.escape(f"railyard resume t1 --graph {G}:ticks --store {terminal.store}"))
    rest, code = _ended(child)
    assert code == 130, rest
    done, status = terminal.finished_steps("t1")
    assert sum(done.values()) == TICKS_GATE_AT - 1
    assert status is not RunStatus.ENDED

    terminal.open_gate("ticks")
    resumed = terminal.spawn("resume", "t1", "--graph", f"{G}:ticks")
    resumed.expect("resuming run t1 of ticks")
    shown, code = _ended(resumed)
    assert code == 0, shown
    lines = shown.splitlines()
    assert f"{TICKS}" in lines  # the result, alone on its line (stdout)
    assert "run t1 ended" in lines
    assert len(re.findall(TICK_LINE, shown)) == TICKS - TICKS_GATE_AT  # the steps from the gate on, once each
    done, status = terminal.finished_steps("t1")
    assert status is RunStatus.ENDED
    assert len(done) == TICKS
    assert set(done.values()) == {1}  # no finished step ran again


def test_a_1000_item_fan_out_shows_a_live_bar_stops_on_ctrl_c_and_resumes(terminal: Terminal) -> None:
    child = terminal.spawn("run", f"{G}:fan_out", "--inputs", "1000", "--run-id", "f1")
    seen: list[int] = []
    while not seen or seen[-1] < 300:  # items 0-299 run; the rest wait at gates
        child.expect(r"(\d+)/1000")
        seen.append(int(child.match.group(1)))
    assert seen[-1] == 300
    child.expect("50 running · 650 queued · 0 failed")  # the gate holds 50 items; the map lets no more run
    terminal.open_gate("first")
    while seen[-1] < 600:
        child.expect(r"(\d+)/1000")
        seen.append(int(child.match.group(1)))
    assert seen[-1] == 600
    child.expect("50 running · 350 queued")
    child.sendintr()
    child.expect(r"map -> double: 600/1000 done, 50 running, 350 queued, 0 failed when the run stopped")
    child.expect("interrupted: run f1 stopped and can be resumed with:")
    rest, code = _ended(child)
    assert code == 130, rest
    assert len(set(seen)) >= 2  # the bar moved
    assert isinstance(child.logfile_read, io.StringIO)
    assert not re.search(ITEM_LINE, child.logfile_read.getvalue())  # no line per item: the bar counts them
    done, status = terminal.finished_steps("f1")
    assert status is not RunStatus.ENDED
    assert set(done.values()) == {1}

    terminal.open_gate("second")
    resumed = terminal.spawn("resume", "f1", "--graph", f"{G}:fan_out")
    resumed.expect(r"map -> double [^\r\n]* (\d+)/1000")
    assert int(resumed.match.group(1)) == 600  # the bar starts where the store stands
    shown, code = _ended(resumed)
    assert code == 0, shown
    lines = shown.splitlines()
    assert "999000" in lines
    assert re.search(r"map -> double: 1000/1000 done in ", shown)
    assert not re.search(ITEM_LINE, shown)
    done, status = terminal.finished_steps("f1")
    assert status is RunStatus.ENDED
    assert set(done.values()) == {1}  # no finished step ran again
    assert len(done) == 3 + 2 * 1000 + 1  # start, numbers, map; each item's step and its arrival at the join; end
