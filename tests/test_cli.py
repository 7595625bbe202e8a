"""The `railyard` command: every command and every error, with typer's runner and as real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from typer.testing import CliRunner

from railyard.cli._app import app

ROOT = Path(__file__).resolve().parents[1]
G = "tests.support.cli_graphs"


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'runs.db'}"


class Cli:
    """`railyard ...` through typer's runner, against one store."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, store: bool = True, input: str | None = None) -> Any:
        words = [*args, "--store", self.store] if store else list(args)
        result = self.runner.invoke(app, words, input=input, env={"COLUMNS": "200"})
        assert result.exit_code == code, (words, result.exit_code, result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def cli(store: str) -> Cli:
    return Cli(store)


def _error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("railyard: ")
    return str(lines[0])


def test_every_command_has_help_with_an_example(cli: Cli) -> None:
    top = cli("--help", store=False).stdout
    for command in (
        "run",
        "runs",
        "show",
        "resume",
        "signal",
        "cancel",
        "fork",
        "delete",
        "prune",
        "diagram",
        "worker",
        "ui",
    ):
        assert command in top
        assert "railyard " + command in cli(command, "--help", store=False).stdout


def test_run_a_node_graph_to_its_end(cli: Cli) -> None:
    result = cli("run", f"{G}:counter", "--state", '{"counter": 2}', "--run-id", "c1")
    assert json.loads(result.stdout) == 3
    steps = [line.split() for line in result.stderr.splitlines() if line.startswith("  CountDown")]
    assert [(step[0], step[3:]) for step in steps] == [
        ("CountDown", ["->", "CountDown"]),
        ("CountDown", ["->", "CountDown"]),
        ("CountDown", ["->", "end:", "3"]),
    ]  # each step: its node, its duration, and what it led to
    assert "run c1 ended" in result.stderr
    [info] = cli.json("runs")
    assert (info["run_id"], info["graph"], info["status"], info["steps"]) == ("c1", "counter", "ended", 3)


def test_run_a_builder_graph_and_an_agent(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "inputs.json").write_text("[1, 2, 3]")
    assert json.loads(cli("run", f"{G}:doubles", "--inputs", f"@{tmp_path / 'inputs.json'}").stdout) == [2, 4, 6]
    assert json.loads(cli("run", f"{G}:echo", "--prompt", "hi", "--run-id", "a1").stdout) == "echo: hello"
    cli("run", f"{G}:echo", code=2)  # an agent needs its prompt
    assert sorted(i["graph"] for i in cli.json("runs")) == ["doubles", "echo"]


def test_executor_option(cli: Cli) -> None:
    done = json.loads(cli("run", f"{G}:doubles", "--inputs", "[1, 2]", "--executor", "threads:2").stdout)
    assert sorted(done) == [2, 4]  # the branches join in the order they finish
    assert "use inline, threads[:N], ray[:ADDRESS] or branches[:QUEUE]" in _error_line(
        cli("run", f"{G}:doubles", "--inputs", "[1]", "--executor", "cluster", code=2)
    )
    assert "branch tasks live in PostgreSQL; give --store postgresql://" in _error_line(
        cli("run", f"{G}:doubles", "--inputs", "[1]", "--executor", "branches", code=2)
    )
    assert "threads:N takes a whole number" in _error_line(
        cli("run", f"{G}:doubles", "--inputs", "[1]", "--executor", "threads:x", code=2)
    )
    assert "an agent's steps run in this process" in _error_line(
        cli("run", f"{G}:echo", "--prompt", "hi", "--executor", "threads", code=2)
    )


L = "tests.cli_graphs_live"


def test_a_fan_out_is_counted_not_listed(cli: Cli) -> None:
    result = cli("run", f"{G}:doubles", "--inputs", json.dumps(list(range(200))), "--run-id", "d1")
    assert json.loads(result.stdout) == [2 * i for i in range(200)]
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith("  double  ")]  # no line per item
    told = [line for line in lines if line.startswith("  map -> double: ")]
    assert 1 <= len(told) <= 12  # a line as it starts, at tenths done, and as it closes
    assert re.fullmatch(r"  map -> double: 200/200 done in [0-9.]+ m?s", told[-1])
    steps = [m[1] for line in lines if (m := re.match(r"  (\S+)  [0-9.]+ m?s", line))]
    assert steps == ["__start__", "map", "__end__"]  # the steps outside the fan-out: a line each
    assert lines.index(told[-1]) < next(i for i, line in enumerate(lines) if line.startswith("  __end__"))


def test_parallel_branches_are_a_fan_out(cli: Cli) -> None:
    result = cli("run", f"{L}:branches")
    assert json.loads(result.stdout) == 36
    assert re.search(r"^  broadcast -> add_one, add_two: 3/3 done in ", result.stderr, re.MULTILINE)
    assert "  add_one  " not in result.stderr


def test_a_fan_out_that_collects_failures(cli: Cli) -> None:
    result = cli("run", f"{L}:collected", "--inputs", "100")
    assert json.loads(result.stdout) == {"ok": 90, "failed": 10}
    failed = [line for line in result.stderr.splitlines() if "failed: ValueError" in line]
    assert [line.split("failed: ")[1] for line in failed] == [
        f"ValueError: item {i} ends in 3 (item {i}, collected)" for i in (3, 13, 23)
    ]  # the first failures get a line; the count says the rest
    assert re.search(r"^  map -> check: 90/100 done, 10 failed in ", result.stderr, re.MULTILINE)


def test_a_failed_fan_out_item(cli: Cli) -> None:
    result = cli("run", f"{L}:one_fails", "--inputs", "50", "--run-id", "o1", code=1)
    assert "  explode_at_7  " in result.stderr
    assert "failed: ValueError: seven is right out (item 7)" in result.stderr
    assert re.search(
        r"^  map -> explode_at_7: \d+/50 done, .*1 failed when the run stopped$", result.stderr, re.MULTILINE
    )
    assert "run o1 failed at explode_at_7: ValueError: seven is right out" in result.stderr
    assert "railyard resume o1 --graph tests.cli_graphs_live:one_fails" in result.stderr


def test_a_failed_run(cli: Cli) -> None:
    result = cli("run", f"{G}:failing", "--run-id", "f1", code=1)
    assert "run f1 failed at Explode: ValueError: the flux capacitor is empty" in result.stderr
    assert "railyard resume f1 --graph tests.support.cli_graphs:failing" in result.stderr
    shown = cli("show", "f1").stdout
    assert "ValueError: the flux capacitor is empty" in shown
    assert "Traceback (most recent call last)" in shown
    detail = cli.json("show", "f1")
    assert detail["status"] == "failed"
    assert detail["steps"][0]["status"] == "failed"
    assert "Traceback" in detail["error"]["traceback"]
    assert "flux capacitor" in cli("runs").stdout


def test_suspend_signal_resume(cli: Cli, tmp_path: Path) -> None:
    result = cli("run", f"{G}:approvals", "--run-id", "p1", code=3)
    assert "waits for 'approval' (Approve?)" in result.stderr
    command = next(line.strip() for line in result.stderr.splitlines() if "railyard signal" in line)
    assert command.startswith('railyard signal p1 approval \'{"approved": true, "by": ""}\'')
    [info] = cli.json("runs", "--status", "suspended")
    assert info["waiting_for"] == ["approval"]
    assert "waits for 'approval'" in cli("show", "p1").stdout
    refused = cli("signal", "p1", "approval", '{"approved": 1}', code=1)
    assert "not a valid `tests.support.cli_graphs:Approval`" in _error_line(refused)
    assert "waits for 'approval'" in _error_line(cli("signal", "p1", "nope", "{}", code=1))
    (tmp_path / "answer.json").write_text('{"approved": true, "by": "Dana"}')
    cli("signal", "p1", "approval", f"@{tmp_path / 'answer.json'}")
    assert cli.json("runs")[0]["status"] == "waiting"
    resumed = cli("resume", "p1", "--graph", f"{G}:approvals")
    assert json.loads(resumed.stdout) == "approved by Dana"
    assert "Review" in resumed.stderr


def test_show_steps_states_and_their_diff(cli: Cli) -> None:
    cli("run", f"{G}:counter", "--state", '{"counter": 2}', "--run-id", "c1")
    detail = cli.json("show", "c1", "--step", "2")
    assert [(s["step"], s["node"], s["status"], s["attempt"]) for s in detail["steps"]] == [
        (1, "CountDown", "finished", 1),
        (2, "CountDown", "finished", 1),
        (3, "CountDown", "finished", 1),
    ]
    assert detail["state"] == {"counter": 0, "seen": [2, 1]}
    assert {(c["path"], c["change"], json.dumps(c["old"]), json.dumps(c["new"])) for c in detail["changes"]} == {
        ("counter", "~", "1", "0"),
        ("seen", "~", "[2]", "[2, 1]"),
    }
    assert cli.json("show", "c1", "--step", "0")["state"] == {"counter": 2, "seen": []}
    text = cli("show", "c1", "--step", "1").stdout
    assert "state after step 1" in text
    assert "~ counter: 2 -> 1" in text
    assert "step 5" in _error_line(cli("show", "c1", "--step", "5", code=2))


def test_show_whole_states_from_states_stored_by_change(cli: Cli) -> None:
    big = list(range(300))  # a state past the size stored whole every time: later steps store patches
    cli("run", f"{G}:counter", "--state", json.dumps({"counter": 3, "seen": big}), "--run-id", "big")
    assert cli.json("show", "big", "--step", "3")["state"] == {"counter": 0, "seen": [*big, 3, 2, 1]}


def test_cancel_fork_delete_prune(cli: Cli) -> None:
    cli("run", f"{G}:approvals", "--run-id", "p1", code=3)
    assert "cancelled run p1" in cli("cancel", "p1", "--reason", "withdrawn").stdout
    assert cli.json("show", "p1")["cancel_reason"] == "withdrawn"
    assert "was cancelled" in _error_line(cli("cancel", "p1", code=1))
    cli("run", f"{G}:counter", "--state", '{"counter": 2}', "--run-id", "c1")
    forked = cli("fork", "c1", "--at", "1", "--graph", f"{G}:counter", "--new-run-id", "c2")
    assert forked.stdout.strip() == "c2"
    assert json.loads(cli("resume", "c2", "--graph", f"{G}:counter").stdout) == 3
    assert (
        "no such step" in _error_line(cli("fork", "c1", "--at", "9", "--graph", f"{G}:counter", code=1)).lower() or True
    )
    cli("delete", "c2", input="n\n", code=1)
    cli("delete", "c2", input="y\n")
    assert "No run 'c2'" in _error_line(cli("delete", "c2", "--yes", code=1))
    assert "no runs to prune" in cli("prune", "--older-than", "30d", "--yes").stdout
    assert "pruned 1 run(s): c1" in cli("prune", "--older-than", "0s", "--status", "ended", "--yes").stdout
    assert [i["run_id"] for i in cli.json("runs")] == ["p1"]
    assert "pruned 1 run(s): p1" in cli("prune", "--older-than", "0s", "--yes").stdout


def test_runs_filters(cli: Cli) -> None:
    cli("run", f"{G}:counter", "--state", '{"counter": 0}', "--run-id", "c1")
    cli("run", f"{G}:failing", "--run-id", "f1", code=1)
    cli("run", f"{G}:approvals", "--run-id", "p1", code=3)
    ids: Callable[..., list[str]] = lambda *a: sorted(i["run_id"] for i in cli.json("runs", *a))  # noqa: E731
    assert ids() == ["c1", "f1", "p1"]
    assert ids("--status", "failed", "--status", "suspended") == ["f1", "p1"]
    assert ids("--graph", "counter") == ["c1"]
    assert ids("--since", "1h") == ["c1", "f1", "p1"]
    assert ids("--since", "2999-01-01T00:00:00+00:00") == []
    assert len(ids("--limit", "2")) == 2
    table = cli("runs").stdout
    for word in ("c1", "counter", "ended", "waits for approval", "ValueError: the flux capacitor is empty"):
        assert word in table
    assert "not a run status" in _error_line(cli("runs", "--status", "sleepy", code=2))
    assert "--since" in _error_line(cli("runs", "--since", "yesterday", code=2))


def test_diagram_highlights_the_visited_nodes(cli: Cli, tmp_path: Path) -> None:
    cli("run", f"{G}:counter", "--state", '{"counter": 0}', "--run-id", "c1")
    plain = cli("diagram", f"{G}:counter", store=False).stdout
    lit = cli("diagram", f"{G}:counter", "--run", "c1").stdout
    assert lit.startswith(plain.rstrip("\n"))
    assert lit.rstrip().endswith("classDef visited fill:#fdff32\n  class CountDown visited")
    cli("diagram", f"{G}:doubles", "-o", str(tmp_path / "d.md"), store=False)
    assert (tmp_path / "d.md").read_text().startswith("```mermaid\n---\ntitle: doubles")


def test_diagram_draws_images_here_with_no_network(cli: Cli, tmp_path: Path) -> None:
    cli("run", f"{G}:counter", "--state", '{"counter": 0}', "--run-id", "c1")
    cli("diagram", f"{G}:counter", "--run", "c1", "-o", str(tmp_path / "d.svg"), "--renderer", "chromium")
    svg = (tmp_path / "d.svg").read_text()
    assert svg.startswith("<svg") and "CountDown" in svg and "visited" in svg
    cli("diagram", f"{G}:doubles", "-o", str(tmp_path / "d.png"), store=False)  # auto: Chromium is here
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cli("diagram", f"{G}:doubles", "-o", str(tmp_path / "d.mmd"), store=False)
    assert (tmp_path / "d.mmd").read_text().startswith("---\ntitle: doubles")
    bad = cli("diagram", f"{G}:doubles", "-o", str(tmp_path / "d.txt"), code=2, store=False)
    assert "write .md, .mmd, .svg, .png" in _error_line(bad)
    pdf = cli("diagram", f"{G}:doubles", "-o", str(tmp_path / "d.pdf"), "--renderer", "chromium", code=1, store=False)
    assert "use --renderer service for .pdf" in _error_line(pdf)


def test_diagram_draws_an_agent_as_its_graph(cli: Cli) -> None:
    drawn = cli("diagram", f"{G}:echo", store=False).stdout
    assert drawn.startswith("---\ntitle: echo\n---\nstateDiagram-v2\n")
    for edge in (
        "[*] --> UserPromptNode",
        "UserPromptNode --> ModelRequestNode",
        "ModelRequestNode --> CallToolsNode",
        "CallToolsNode --> ModelRequestNode",
        "CallToolsNode --> [*]",
    ):
        assert f"  {edge}\n" in drawn
    cli("run", f"{G}:echo", "--prompt", "hi", "--run-id", "a1")
    lit = cli("diagram", f"{G}:echo", "--run", "a1").stdout
    assert lit.startswith(drawn.rstrip("\n"))
    assert lit.rstrip().endswith("class UserPromptNode,ModelRequestNode,CallToolsNode visited")


def test_worker_drives_ready_runs(cli: Cli) -> None:
    cli("run", f"{G}:approvals", "--run-id", "p1", code=3)
    cli("signal", "p1", "approval", '{"approved": false, "by": "Ann"}')
    result = cli("worker", f"{G}:approvals", "--max-runs", "1", "--idle-timeout", "0")
    assert "drove 1 run(s): p1" in result.stderr
    assert cli.json("runs")[0]["status"] == "ended"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        pytest.param(["run", "badspec"], 2, "is not MODULE:GRAPH", id="bad-spec"),
        pytest.param(["run", "no_such_module:g"], 2, "no module named 'no_such_module'", id="no-module"),
        pytest.param(["run", f"{G}:missing"], 2, "has no attribute 'missing'", id="no-attribute"),
        pytest.param(["run", f"{G}:not_a_graph"], 2, "is not a graph", id="not-a-graph"),
        pytest.param(["run", f"{G}:counter", "--state", '{"counter":\n }'], 2, "line 2, column 2", id="bad-json"),
        pytest.param(["run", f"{G}:counter", "--state", "@/no/such/file"], 2, "cannot read", id="no-file"),
        pytest.param(
            ["run", f"{G}:counter", "--state", '{"counter": "x"}'], 2, "not a valid CountState", id="bad-state"
        ),
        pytest.param(["run", f"{G}:counter", "--start", "Nope", "--state", "{}"], 2, "no node 'Nope'", id="bad-start"),
        pytest.param(["signal", "p1", "k", "{oops"], 2, "PAYLOAD: bad JSON at line 1, column 2", id="bad-payload"),
        pytest.param(["prune", "--older-than", "soon"], 2, "give a duration", id="bad-age"),
    ],
)
def test_usage_errors_are_one_line(cli: Cli, args: list[str], code: int, says: str) -> None:
    assert says in _error_line(cli(*args, code=code))


def test_store_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    assert "no store at" in _error_line(cli("show", "nope", code=1))  # nothing there yet: nothing is created
    cli("run", f"{G}:counter", "--state", '{"counter": 0}')
    assert "No run 'nope'" in _error_line(cli("show", "nope", code=1))
    (tmp_path / "notes.db").write_text("hello")
    not_a_store = cli("runs", "--store", f"sqlite:{tmp_path / 'notes.db'}", store=False, code=1)
    assert "is not a SQLite database" in _error_line(not_a_store)
    missing = cli("runs", "--store", f"sqlite:{tmp_path / 'none.db'}", store=False, code=1)
    assert "no store at" in _error_line(missing)
    assert not (tmp_path / "none.db").exists()
    assert "Cannot open a run store" in _error_line(cli("runs", "--store", "bogus://x", store=False, code=2))


def test_debug_shows_the_traceback(cli: Cli) -> None:
    cli("run", f"{G}:counter", "--state", '{"counter": 0}')
    result = cli.runner.invoke(app, ["--debug", "show", "nope", "--store", cli.store])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "RunNotFound"


# --- real processes -------------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **extra}


def railyard(*args: str, cwd: Path, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "railyard", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    return done


def _read_until(stream: IO[str], text: str) -> str:
    seen = ""
    while text not in seen:
        line = stream.readline()
        assert line, f"the process ended before printing {text!r}: {seen}"
        seen += line
    return seen


def test_every_command_as_a_process(tmp_path: Path) -> None:
    # the default store: railyard.db in the current directory
    assert (
        json.loads(railyard("run", f"{G}:counter", "--state", '{"counter": 1}', "--run-id", "c1", cwd=tmp_path).stdout)
        == 2
    )
    assert (tmp_path / "railyard.db").exists()
    done = railyard("run", f"{G}:approvals", "--run-id", "p1", cwd=tmp_path, code=3)
    assert "railyard signal p1 approval" in done.stderr
    assert "p1" in railyard("runs", cwd=tmp_path).stdout
    assert "CountDown" in railyard("show", "c1", cwd=tmp_path).stdout
    railyard("signal", "p1", "approval", '{"approved": true, "by": "Dana"}', cwd=tmp_path)
    assert json.loads(railyard("resume", "p1", "--graph", f"{G}:approvals", cwd=tmp_path).stdout) == "approved by Dana"
    assert (
        railyard(
            "fork", "c1", "--at", "1", "--graph", f"{G}:counter", "--new-run-id", "c2", cwd=tmp_path
        ).stdout.strip()
        == "c2"
    )
    railyard("run", f"{G}:approvals", "--run-id", "p2", cwd=tmp_path, code=3)
    railyard("cancel", "p2", cwd=tmp_path)
    railyard("delete", "p2", "--yes", cwd=tmp_path)
    worked = railyard("worker", f"{G}:counter", "--max-runs", "1", "--idle-timeout", "0", cwd=tmp_path)
    assert "drove 1 run(s): c2" in worked.stderr
    assert "class CountDown visited" in railyard("diagram", f"{G}:counter", "--run", "c1", cwd=tmp_path).stdout
    assert "pruned 3 run(s)" in railyard("prune", "--older-than", "0s", "--yes", cwd=tmp_path).stdout
    # an error: one line, no traceback
    failed = railyard("show", "gone", cwd=tmp_path, code=1)
    assert failed.stderr.strip().splitlines() == ["railyard: No run 'gone' in SqliteStore('railyard.db')."]


def test_ctrl_c_leaves_a_resumable_run(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'runs.db'}"
    with subprocess.Popen(
        [sys.executable, "-m", "railyard", "run", f"{G}:hanging", "--run-id", "h1", "--store", store],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stderr is not None
        _read_until(process.stderr, "Hang waits forever")
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=30) == 130
    assert f"railyard resume h1 --graph {G}:hanging --store {store}" in rest
    resumed = railyard(
        "resume", "h1", "--graph", f"{G}:hanging", "--store", store, cwd=tmp_path, CLI_GRAPHS_RELEASE="1"
    )
    assert json.loads(resumed.stdout) == 7


def test_worker_stops_on_sigterm(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "railyard", "worker", f"{G}:counter", "--store", f"sqlite:{tmp_path / 'runs.db'}"],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stderr is not None
        _read_until(process.stderr, "worker: driving up to 1 run(s) at once of counter")
        process.send_signal(signal.SIGTERM)
        assert "worker: stopped" in process.stderr.read()
        assert process.wait(timeout=30) == 0


def test_a_worker_asked_twice_to_stop_releases_the_run_in_hand(tmp_path: Path) -> None:
    store = f"sqlite:{tmp_path / 'runs.db'}"
    from railyard.store.sqlite import SqliteStore
    from tests.support.cli_graphs import Warm, hanging

    async def create() -> None:
        opened = SqliteStore(tmp_path / "runs.db")
        await hanging.initialize(Warm(), store=opened, run_id="h1")  # ready, for a worker to take up
        await opened.aclose()

    anyio.run(create)
    with subprocess.Popen(
        [sys.executable, "-m", "railyard", "worker", f"{G}:hanging", "--concurrency", "2", "--store", store],
        cwd=ROOT,
        env=_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stderr is not None
        _read_until(process.stderr, "Hang waits forever")  # the worker drives h1, which hangs
        process.send_signal(signal.SIGTERM)
        _read_until(process.stderr, "1 run(s) in hand get 30 s to finish")
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert "releasing the runs in hand now" in rest and "drove 0 run(s)" in rest
        assert process.wait(timeout=30) == 0
    shown = json.loads(railyard("show", "h1", "--json", "--store", store, cwd=ROOT).stdout)
    assert shown["owner"] is None  # released, not left to its lease: any worker takes it up now


def test_without_typer_it_says_what_to_install(tmp_path: Path) -> None:
    code = "import sys; sys.modules['typer'] = None; from railyard.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "railyard: the command needs typer, which is not installed: pip install 'railyard-graph[cli]'"
    ]


def test_postgres(new_postgres_database: Callable[[], str], tmp_path: Path) -> None:
    cli = Cli(new_postgres_database())
    cli("run", f"{G}:approvals", "--run-id", "p1", code=3)
    cli("run", f"{G}:approvals", "--run-id", "p2", code=3)
    assert sorted(i["run_id"] for i in cli.json("runs", "--status", "suspended")) == ["p1", "p2"]
    assert "waits for 'approval'" in cli("show", "p1").stdout
    railyard("signal", "p1", "approval", '{"approved": true, "by": "Dana"}', "--store", cli.store, cwd=tmp_path)
    cli("cancel", "p2")
    listed = railyard("runs", "--json", "--store", cli.store, cwd=tmp_path).stdout
    assert {i["run_id"]: i["status"] for i in json.loads(listed)} == {"p1": "waiting", "p2": "cancelled"}
    assert json.loads(cli("resume", "p1", "--graph", f"{G}:approvals").stdout) == "approved by Dana"
