"""Every example in `examples/` runs, as a script, and prints exactly what it should.

The examples are deterministic, so their whole output is pinned here; each test also
checks that what the output says makes sense (balances add up, runs end where they
should). Each example runs in its own process with this interpreter, from the repo root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

TESTED: set[str] = set()
"""The example files that have a test below (see `test_every_example_has_a_test`)."""


def covers(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a test as the test of the example files `names`."""

    def mark(test: Callable[..., Any]) -> Callable[..., Any]:
        TESTED.update(names)
        return test

    return mark


def stored_snapshots(state_file: Path) -> list[dict[str, Any]]:
    """The quiz run's snapshots, read from its file through the public API, as JSON."""
    import asyncio
    import importlib.util

    from railyard import FileStatePersistence

    spec = importlib.util.spec_from_file_location("question_graph_example", EXAMPLES / "question_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        persistence: FileStatePersistence[Any, Any] = FileStatePersistence(state_file)
        persistence.set_graph_types(module.question_graph)
        asyncio.run(persistence.load_all())
        return json.loads(persistence.dump_json())
    finally:
        del sys.modules[spec.name]


def run_example(name: str, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `examples/<name>` as a script; with `ok`, check it succeeded without a word on stderr."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    return proc


@covers("count_down.py")
def test_count_down() -> None:
    # The lines documented in the seed (pydantic-graph's March-2025 docs).
    assert run_example("count_down.py").stdout.splitlines() == [
        "Node: CountDown()",
        "Node: CountDown()",
        "Node: CountDown()",
        "Node: End(data=0)",
        "Final result: 0",
        "History snapshots: [CountDown(), CountDown(), CountDown(), CountDown(), End(data=0)]",
    ]


@covers("count_down_next.py")
def test_count_down_next() -> None:
    assert run_example("count_down_next.py").stdout.splitlines() == [
        "Node: CountDown()",
        "Node: CountDown()",
        "Node: CountDown()",
        "Node: CountDown()",
        "None",
        "History Step: CountDown() CountDownState(counter=4)",
        "History Step: CountDown() CountDownState(counter=3)",
        "History Step: CountDown() CountDownState(counter=2)",
    ]


@covers("never_42.py")
def test_never_42() -> None:
    # From 1 the run ends at 2; from 41 it must skip 42 and end at 43.
    assert run_example("never_42.py").stdout.splitlines() == [
        "MyState(number=2)",
        "2",
        "MyState(number=43)",
        "43",
    ]


VENDING_MACHINE_OUTPUT = """\
Menu: water $0.90, soda $1.25, chips $1.50
-> InsertCoin()
    Insert coins ($): 1.00
-> CoinsInserted(amount=100)
    balance is now $1.00
-> SelectProduct()
    Choose a product: caviar
-> Purchase(product='caviar')
    no such product: 'caviar'
-> SelectProduct()
    Choose a product: chips
-> Purchase(product='chips')
    chips costs $1.50: insert $0.50 more
-> InsertCoin()
    Insert coins ($): 0.25
-> CoinsInserted(amount=25)
    balance is now $1.25
-> Purchase(product='chips')
    chips costs $1.50: insert $0.25 more
-> InsertCoin()
    Insert coins ($): 0.50
-> CoinsInserted(amount=50)
    balance is now $1.75
-> Purchase(product='chips')
    vending chips, change $0.25
-> End(data=Receipt(product='chips', price=150, change=25))
Result: Receipt(product='chips', price=150, change=25)
Final state: MachineState(user_balance=0, product='chips')

---
title: vending_machine_graph
---
stateDiagram-v2
  [*] --> InsertCoin
  InsertCoin --> CoinsInserted
  CoinsInserted --> SelectProduct
  CoinsInserted --> Purchase
  SelectProduct --> Purchase
  Purchase --> InsertCoin: not enough money
  Purchase --> SelectProduct: unknown product
  Purchase --> [*]: vend
"""


@covers("vending_machine.py")
def test_vending_machine() -> None:
    out = run_example("vending_machine.py").stdout
    assert out == VENDING_MACHINE_OUTPUT
    # $1.00 + $0.25 + $0.50 paid for $1.50 chips: $0.25 back, and the balance is spent.
    assert "Result: Receipt(product='chips', price=150, change=25)" in out
    assert "Final state: MachineState(user_balance=0, product='chips')" in out
    assert out.count("-> Purchase(") == 4
    assert "  Purchase --> InsertCoin: not enough money" in out


EMAIL_FEEDBACK_OUTPUT = """\
Round 1: sent back: Greet Ada by name.
Round 2: sent back: Mention their interests: trains, state machines.
Round 3: sent back: Please sign off as the team.
Round 4: sent back: Make the subject personal.
Round 5: approved

To: ada@example.com
Subject: Welcome aboard, Ada!

Hi Ada,

Welcome to Railyard! Your account is ready.
Since you like trains and state machines, we picked a few guides for you.

Cheers,
The Railyard team

Rounds: 5
"""


@covers("email_feedback.py")
def test_email_feedback() -> None:
    out = run_example("email_feedback.py").stdout
    assert out == EMAIL_FEEDBACK_OUTPUT
    # Every note the reviewer made is addressed in the final email.
    rounds = [line for line in out.splitlines() if line.startswith("Round ")]
    assert len(rounds) == 5
    assert rounds[-1] == "Round 5: approved"
    assert out.endswith("Rounds: 5\n")
    for wanted in ("Subject: Welcome aboard, Ada!", "Hi Ada,", "trains and state machines", "The Railyard team"):
        assert wanted in out


ORDER_REVIEW_OUTPUT = """\
railyard demo: orders, with a wait for human review
====================================================

The graph, as mermaid (paste it into https://mermaid.live to draw it):

---
title: orders
---
stateDiagram-v2
  [*] --> ValidateOrder
  ValidateOrder --> PriceOrder
  ValidateOrder --> Reject
  PriceOrder --> Ship
  PriceOrder --> NeedsReview: over $1,000
  NeedsReview --> Ship: approved
  NeedsReview --> Reject: turned down
  Ship --> [*]
  Reject --> [*]

Order A-1001 from Ada: 4 x widget, 1 x gadget
  -> shipped to Ada, $32
Order A-1002 from Bob: 3 x gizmo
  || suspended at NeedsReview: Approve order A-1002 for $1,350?
Order A-1003 from Cleo: 2 x widget, 1 x flux capacitor
  -> rejected: unknown item 'flux capacitor'
Order A-1004 from Dev: 60 x gadget
  || suspended at NeedsReview: Approve order A-1004 for $1,200?

The store (orders.db):
  A-1001  ended      3 steps, at Ship
  A-1002  suspended  2 steps, at NeedsReview  waits for 'review': Approve order A-1002 for $1,350?
  A-1003  ended      2 steps, at Reject
  A-1004  suspended  2 steps, at NeedsReview  waits for 'review': Approve order A-1004 for $1,200?

A worker drives the runs that are ready: [] (the suspended ones wait for their review)

Dana approves A-1002.
Dana turns down A-1004 (over the customer's credit limit).
The worker takes the answered runs up: ['A-1002', 'A-1004']

The store (orders.db):
  A-1001  ended      3 steps, at Ship
  A-1002  ended      4 steps, at Ship
  A-1003  ended      2 steps, at Reject
  A-1004  ended      4 steps, at Reject

Summary:
  A-1001: shipped to Ada, $32
  A-1002: shipped to Bob, $1,350 (approved by Dana)
  A-1003: rejected: unknown item 'flux capacitor'
  A-1004: rejected: turned down by Dana: over the customer's credit limit
"""


@covers("order_review.py")
def test_order_review() -> None:
    out = run_example("order_review.py").stdout
    assert out == ORDER_REVIEW_OUTPUT
    summary = out.split("Summary:\n")[1].splitlines()
    assert summary == [
        "  A-1001: shipped to Ada, $32",
        "  A-1002: shipped to Bob, $1,350 (approved by Dana)",
        "  A-1003: rejected: unknown item 'flux capacitor'",
        "  A-1004: rejected: turned down by Dana: over the customer's credit limit",
    ]
    # The big orders were suspended at their review, left alone by the worker, and finished once answered.
    for order_id in ("A-1002", "A-1004"):
        assert f"  {order_id}  suspended  2 steps, at NeedsReview  waits for 'review'" in out
    assert "A worker drives the runs that are ready: [] (the suspended ones wait for their review)" in out
    assert "The worker takes the answered runs up: ['A-1002', 'A-1004']" in out


DOCUMENT_REVIEW_OUTPUT = """\
---
title: document_review
---
stateDiagram-v2
  read_folder
  state map <<fork>>
  review_document
  state reviews <<join>>
  tally
  approve
  report

  [*] --> read_folder
  read_folder --> map
  map --> review_document: each document, 3 at a time
  review_document --> reviews
  reviews --> tally
  tally --> approve
  approve --> report: a person answered
  report --> [*]

review-1 is suspended: it waits for 'approval': Publish 5 documents (3 with flagged words)?
  board-minutes.txt: Minutes of the board meeting of 3 November. [flagged: confidential]
  launch-announcement.txt: Railyard 1.0 is out today. [flagged: guarantee]
  pricing-faq.txt: Railyard is free and open source under the MIT licence.
  release-notes.txt: This release adds the railyard command and a run... [flagged: todo]
  support-handbook.txt: Answer every ticket within one working day.
14 steps so far; failed attempts run again: 1
Dana approves.
5 documents, 174 words, approved by Dana (fix the TODO first); flagged board-minutes.txt: confidential; \
launch-announcement.txt: guarantee; release-notes.txt: todo
"""


@covers("document_review.py")
def test_document_review() -> None:
    out = run_example("document_review.py").stdout
    assert out == DOCUMENT_REVIEW_OUTPUT
    # One attempt failed (the summariser's time-out on board-minutes.txt) and was run again.
    assert "failed attempts run again: 1\n" in out


@pytest.mark.anyio
async def test_document_review_of_another_folder_turned_down(tmp_path: Path) -> None:
    from examples import document_review as review

    from railyard import SqliteStore
    from railyard.suspension import RunSuspended, SignalError, signal

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b-plan.txt").write_text("A draft plan. Nothing here is DRAFT-free: draft, draft.\n")
    (folder / "a-memo.txt").write_text("A short memo. It says nothing to worry about.\n")
    (folder / "notes.md").write_text("draft\n")  # not a .txt file: not reviewed
    request = review.ReviewRequest(folder=str(folder), flag=["Draft"])
    store = SqliteStore(tmp_path / "runs.db")
    try:
        with pytest.raises(RunSuspended) as suspended:
            await review.review.run(inputs=request, state=review.ReviewState(), store=store, run_id="r-1")
        assert suspended.value.waiting.key == "approval"
        assert suspended.value.waiting.prompt == "Publish 2 documents (1 with flagged words)?"
        with pytest.raises(SignalError):  # `by` is missing: refused, nothing stored
            await signal(store, "r-1", "approval", {"approved": False})
        await signal(store, "r-1", "approval", {"approved": False, "by": "Lee", "note": "too many drafts"})
        result = await review.review.resume(store, "r-1")
        detail = await store.run("r-1")
    finally:
        await store.aclose()
    # The reviews were joined in name order, whatever order they finished in; no summary failed here.
    assert result == "2 documents, 18 words, turned down by Lee (too many drafts); flagged b-plan.txt: draft"
    assert detail.attempts == 0


TOUR_OUTPUT = """\
railyard demo: review 5 documents, with a person's approval in the middle

# Every command reads and writes one SQLite file: no server.
$ export RAILYARD_STORE=sqlite:.demo/demo.db

# Fan out over examples/documents/*.txt and review each file, 3 at a time (the summariser
# times out once: the step is retried), join the reviews, then wait for a person (exit status 3):
$ railyard run examples.document_review:review --run-id review-1
run review-1 of document_review in sqlite:.demo/demo.db
...
run review-1 is suspended: it waits for 'approval' (Publish 5 documents (3 with flagged words)?), \
an answer of type examples.document_review:Approval. Answer it with:
  railyard signal review-1 approval '{"approved": true, "by": "", "note": ""}' --store sqlite:.demo/demo.db
then carry it on: railyard resume review-1 --graph examples.document_review:review --store sqlite:.demo/demo.db

# The run is stored as suspended; no process waits for it:
$ railyard runs
id       ┃ graph           ┃ status    ┃ started  ┃ updated  ┃ steps ┃ last node ┃ waiting for / error
━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━
review-1 │ document_review │ suspended │ 19:14:13 │ 19:14:14 │    14 │ approve   │ waits for approval

# Dana answers, from any process; the payload is checked against Approval first:
$ railyard signal review-1 approval '{"approved": true, "by": "Dana", "note": "fix the TODO first"}'
signalled 'approval' to run review-1: it is ready to go on (a worker or `railyard resume` runs it)

# The run carries on from the step that waited, to its end:
$ railyard resume review-1 --graph examples.document_review:review
resuming run review-1 of document_review
...
"5 documents, 174 words, approved by Dana (fix the TODO first); flagged board-minutes.txt: confidential; \
launch-announcement.txt: guarantee; release-notes.txt: todo"
run review-1 ended

# Every step, attempt and state is in the run's log, the failed attempt too:
$ railyard show review-1
run review-1  graph document_review  status ended
started 19:14:13  updated 19:14:15  17 steps  last node __end__
failed attempts run again: 1
step ┃ node            ┃ status    ┃ attempt ┃ duration
━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━
   1 │ __start__       │ finished  │       1 │   0.0 ms
   2 │ read_folder     │ finished  │       1 │   3.4 ms
   3 │ map             │ finished  │       1 │   0.0 ms
   - │ review_document │ failed    │       1 │   0.2 ms
   4 │ review_document │ finished  │       1 │   1.7 ms
   5 │ review_document │ finished  │       1 │   0.4 ms
   6 │ reviews         │ finished  │       1 │   0.1 ms
   7 │ reviews         │ finished  │       1 │   0.0 ms
   8 │ review_document │ finished  │       1 │   0.1 ms
   9 │ review_document │ finished  │       1 │   0.1 ms
  10 │ reviews         │ finished  │       1 │   0.0 ms
  11 │ reviews         │ finished  │       1 │   0.0 ms
  12 │ review_document │ finished  │       2 │ 203.3 ms
  13 │ reviews         │ finished  │       1 │   0.0 ms
  14 │ tally           │ finished  │       1 │   0.0 ms
   - │ approve         │ suspended │       1 │        -
  15 │ approve         │ finished  │       1 │   0.2 ms
  16 │ report          │ finished  │       1 │   0.0 ms
  17 │ __end__         │ finished  │       1 │   0.0 ms
state after step 17:
  {
    "words": 174,
    "summaries": {
      "board-minutes.txt": "Minutes of the board meeting of 3 November.",
      "launch-announcement.txt": "Railyard 1.0 is out today.",
      "pricing-faq.txt": "Railyard is free and open source under the MIT licence.",
      "release-notes.txt": "This release adds the railyard command and a run...",
      "support-handbook.txt": "Answer every ticket within one working day."
    },
    "flagged": {
      "board-minutes.txt": [
        "confidential"
      ],
      "launch-announcement.txt": [
        "guarantee"
      ],
      "release-notes.txt": [
        "todo"
      ]
    },
    "decided_by": "Dana"
  }
step 17 changed nothing in the state

# To type these yourself: . .venv-demo/bin/activate, then the export above.
# The inspector shows the same runs in the browser, the graph drawn, with a form to answer a waiting run
# (given the graph, it can resume and fork its runs too):
  railyard ui examples.document_review:review --store sqlite:.demo/demo.db
"""
"""What `./dev demo` prints. A `...` line stands for any lines: the live display of a run as
it moves, whose updates depend on timing. Times of day, durations and column widths are
normalised (`_tour_lines`); everything else must be as here."""


def _tour_lines(text: str) -> list[str]:
    """The tour's output with what differs from run to run made equal: times, durations, widths."""
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d|\d\d:\d\d:\d\d", "<time>", text)
    text = re.sub(r" *\b\d+(?:\.\d+)? m?s\b", " <took>", text)
    text = re.sub(r"━+", "━", text)  # the columns are as wide as their values
    return [re.sub(r" {2,}", " ", line).rstrip() for line in text.splitlines()]


def _matches(lines: list[str], expected: list[str]) -> bool:
    """Whether `lines` are `expected`, where an expected `...` matches any lines (none too)."""
    if not expected:
        return not lines
    if expected[0] == "...":
        return any(_matches(lines[skip:], expected[1:]) for skip in range(len(lines) + 1))
    return bool(lines) and lines[0] == expected[0] and _matches(lines[1:], expected[1:])


def test_demo_tour(tmp_path: Path) -> None:
    import asyncio

    from railyard import SqliteStore
    from railyard.store import RunStatus

    demo = tmp_path / "demo"
    # `railyard` from this interpreter's environment, as `./dev demo` puts .venv-demo/bin first
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    proc = subprocess.run(
        ["bash", str(EXAMPLES / "demo_tour.sh"), str(demo)],
        cwd=tmp_path,
        env={**os.environ, "PATH": path, "COLUMNS": "160"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
    printed = _tour_lines(proc.stdout.replace(str(demo), ".demo"))
    assert _matches(printed, _tour_lines(TOUR_OUTPUT)), proc.stdout
    # What the tour printed is what the store holds: the run ended, one failed attempt was run again.
    assert sorted(path.name for path in demo.iterdir() if not path.name.startswith("demo.db-")) == [
        ".gitignore",
        "demo.db",
    ]

    async def stored() -> tuple[RunStatus, int, int]:
        store = SqliteStore(demo / "demo.db")
        try:
            detail = await store.run("review-1")
            return detail.info.status, detail.info.steps, detail.attempts
        finally:
            await store.aclose()

    assert asyncio.run(stored()) == (RunStatus.ENDED, 17, 1)
    # A second tour starts afresh: the old run is gone, not in the way of the new one.
    again = subprocess.run(
        ["bash", str(EXAMPLES / "demo_tour.sh"), str(demo)],
        cwd=tmp_path,
        env={**os.environ, "PATH": path, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert asyncio.run(stored()) == (RunStatus.ENDED, 17, 1)


def test_the_examples_page_shows_the_tours_commands() -> None:
    # docs/examples.md lists the tour's commands in a block the docs tests do not run: they are the tour's own.
    page = (ROOT / "docs" / "examples.md").read_text()
    shown = re.search(r"^```bash\n(export RAILYARD_STORE=.*?)^```$", page, flags=re.S | re.M)
    assert shown is not None
    commands = [line for line in shown[1].splitlines() if line]
    tour = [line.removeprefix("$ ") for line in _tour_lines(TOUR_OUTPUT) if line.startswith("$ ")]
    assert commands == [*tour, "railyard ui examples.document_review:review --store sqlite:.demo/demo.db"]


def test_dev_demo_runs_the_tour_with_only_the_ui_extra() -> None:
    # The README's first command is `./dev demo`: it must run the tour, in a venv without the test tools.
    demo = re.search(r"^  demo\)\n(.*?)^    ;;$", (ROOT / "dev").read_text(), flags=re.S | re.M)
    assert demo is not None
    assert 'venv .venv-demo "[ui]"' in demo[1]
    assert "examples/demo_tour.sh" in demo[1]


@pytest.mark.parametrize("document", sorted((EXAMPLES / "documents").glob("*.txt")), ids=lambda path: path.name)
def test_the_demo_documents_are_small_text(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    assert text.endswith("\n") and 0 < len(text.split()) <= 60


@covers("question_graph.py")
def test_question_graph(tmp_path: Path) -> None:
    state_file = tmp_path / "quiz.json"

    def quiz(*answer: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run_example("question_graph.py", state_file, *answer, ok=ok)

    def statuses() -> list[tuple[str, str]]:
        return [
            (snapshot["node"]["node_id"], snapshot["status"]) if snapshot["kind"] == "node" else ("end", "-")
            for snapshot in stored_snapshots(state_file)
        ]

    # An answer before any question is an error, and leaves no file behind.
    early = quiz("42", ok=False)
    assert (early.returncode, early.stdout) == (1, "")
    assert "no question is waiting" in early.stderr
    assert not state_file.exists()

    # Start: the run stops at `Answer`, which waits in the file.
    assert quiz().stdout == "Question: What is 7 * 6?\n"
    assert statuses() == [("Ask", "success"), ("Answer", "created")]
    # Without an answer, the same question is shown again and nothing runs.
    assert quiz().stdout == "Question (still waiting for an answer): What is 7 * 6?\n"
    assert statuses() == [("Ask", "success"), ("Answer", "created")]

    # A wrong answer: reprimand, then the next question, waiting again.
    assert quiz("41").stdout == "Wrong: 7 * 6 is 42, not 41. Try another one.\nQuestion: What is 2 ** 10?\n"
    assert statuses()[-1] == ("Answer", "created")

    # The right answer ends the run.
    assert quiz(" 1024 ").stdout == "Correct: 2 ** 10 = 1024. Wrong answers before this one: 1.\nThe quiz is over.\n"
    assert statuses() == [
        ("Ask", "success"),
        ("Answer", "pending"),  # the unanswered `Answer`, claimed by `load_next` and replaced by the answered one
        ("Answer", "success"),
        ("Evaluate", "success"),
        ("Reprimand", "success"),
        ("Ask", "success"),
        ("Answer", "pending"),
        ("Answer", "success"),
        ("Evaluate", "success"),
        ("end", "-"),
    ]
    end = stored_snapshots(state_file)[-1]
    assert end["state"] == {"asked": 2, "wrong": 1}

    # After the end: a clear error and a non-zero exit, with or without an answer.
    for answer in (("13",), ()):
        late = quiz(*answer, ok=False)
        assert (late.returncode, late.stdout) == (1, "")
        assert late.stderr == (
            f"error: the quiz in {state_file} is already over "
            "(Correct: 2 ** 10 = 1024. Wrong answers before this one: 1.); use a new state file\n"
        )
    usage = run_example("question_graph.py", ok=False)
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: ")


def test_question_graph_snapshots_keep_the_state_before_each_node(tmp_path: Path) -> None:
    # A node snapshot holds the state the node ran on (pydantic-graph 1.x): `Ask` ran on a
    # fresh `QuizState()`, the answered `Answer` on the state the waiting one had.
    state_file = tmp_path / "quiz.json"
    run_example("question_graph.py", state_file)
    run_example("question_graph.py", state_file, "41")
    snapshots = stored_snapshots(state_file)
    assert [s["state"] for s in snapshots[:3]] == [
        {"asked": 0, "wrong": 0},
        {"asked": 1, "wrong": 0},
        {"asked": 1, "wrong": 0},
    ]


@covers("approval.py")
def test_approval_waits_for_a_person_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"

    def approval(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run_example("approval.py", db, *args, ok=ok)

    assert approval("submit", "A-1", "300").stdout == (
        "A-1 fulfilled: $300\n  validated $300; approved automatically (at most $1000); fulfilled\n"
    )
    assert approval("submit", "A-7", "2500").stdout == "A-7 waits for approval ($2500 is over $1000)\n"
    assert approval("list").stdout == (
        "A-1: ended, 3 steps, last node Fulfil\nA-7: waiting, 1 steps, last node Validate\n"
    )
    # the decision arrives in another process, later
    assert approval("decide", "A-7", "approve", "looks fine").stdout == (
        "A-7 fulfilled: $2500\n  validated $2500; approved by a person: looks fine; fulfilled\n"
    )
    again = approval("decide", "A-7", "reject", ok=False)
    assert again.returncode == 1
    assert again.stderr == (
        f"error: Run 'A-7' in SqliteStore({str(db)!r}) has ended and cannot be resumed. "
        "Use `graph.fork(...)` to start a new run from one of its steps.\n"
    )
    # time travel: a new run from the step before the decision; the old run is untouched
    assert approval("reopen", "A-7").stdout == "A-7 reopened as A-7-reopened; it waits for a decision again\n"
    assert approval("decide", "A-7-reopened", "reject", "changed my mind").stdout == (
        "A-7 rejected\n  validated $2500; rejected by a person: changed my mind\n"
    )
    assert approval("list").stdout == (
        "A-1: ended, 3 steps, last node Fulfil\n"
        "A-7: ended, 3 steps, last node Fulfil\n"
        "A-7-reopened: ended, 1 steps, last node AwaitApproval\n"
    )
    early = approval("decide", "B-9", "approve", ok=False)
    assert early.returncode == 1 and "No run 'B-9'" in early.stderr


@covers("fan_out.py")
def test_fan_out_builder_example() -> None:
    out = run_example("fan_out.py").stdout
    assert out.endswith("\nbig pages: docs\nfetched ['about', 'blog', 'docs', 'home'], at most 3 at a time\n")
    assert out.startswith("---\ntitle: crawl\n---\nstateDiagram-v2\n  state map <<fork>>\n  fetch\n")
    assert "  decision --> report_big: yes\n  decision --> report_small: no\n" in out


@covers("agent_capital.py")
def test_agent_capital_prints_the_seeds_node_list() -> None:
    out = run_example("agent_capital.py").stdout
    stamp = re.compile(r"datetime\.datetime\([0-9, ]+tzinfo=datetime\.timezone\.utc\)")
    assert stamp.sub("<now>", out) == (
        "[ModelRequestNode(request=ModelRequest(parts=[UserPromptPart(content='What is the capital of France?', "
        "timestamp=<now>, part_kind='user-prompt')], kind='request')), "
        "CallToolsNode(model_response=ModelResponse(parts=[TextPart(content='Paris', part_kind='text')], "
        "model_name='function:answer:', timestamp=<now>, kind='response')), "
        "End(data=FinalResult(data='Paris', tool_name=None, tool_call_id=None))]\n"
        "Paris\n"
        "Usage(requests=1, request_tokens=56, response_tokens=1, total_tokens=57, details=None)\n"
    )


@covers("agent_trip.py")
@pytest.mark.parametrize("die_after", [1, 4, 5, 6])
def test_agent_trip_resumes_in_a_new_process_without_repeating_a_step(tmp_path: Path, die_after: int) -> None:
    db = tmp_path / "trips.db"
    itinerary = "city='Lisbon' flight='TP-1351' booking_ref='REF-TP-1351'"
    died = run_example("agent_trip.py", db, "start", "T-1", "--die-after", str(die_after), ok=False)
    assert died.returncode == 1, died.stderr
    assert died.stdout.endswith(
        f"step {die_after}: {'ModelRequestNode' if die_after % 2 else 'CallToolsNode'}\nthe process dies here\n"
    )
    booked_before = (tmp_path / "trips.bookings").exists()
    assert booked_before == (die_after >= 5)  # step 5 is reached after the booking tool ran
    resumed = run_example("agent_trip.py", db, "resume", "T-1").stdout
    assert resumed == f"{itinerary}\nrequests: 3\nbookings: ['booked TP-1351']\n"
    # the same run, never interrupted, ends the same way
    whole = run_example("agent_trip.py", tmp_path / "whole.db", "start", "T-2").stdout
    assert whole.endswith(f"step 7: End\n{itinerary}\n")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.py")), ids=lambda path: path.name)
def test_every_example_has_a_test(example: Path) -> None:
    assert example.name in TESTED, f"examples/{example.name} has no test: add one to tests/test_examples.py"


@covers("scale_out_ray.py")
def test_scale_out_ray_runs_the_maps_branches_on_a_local_ray_instance() -> None:
    proc = run_example("scale_out_ray.py", 4, 2000, ok=False)  # Ray logs on stderr
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "4 items crunched; first digests: 4e0f5589, 6ee4d1b6, 9a25187b\n"
        "same result as in process: True\n"
        "branches recorded by this driver: 4\n"
    )


@covers("scale_out_workers.py")
def test_scale_out_workers_drives_every_run_once_across_three_processes() -> None:
    assert run_example("scale_out_workers.py").stdout == (
        "3 workers, --concurrency 4 each, exited with [0]\n40 of 40 runs ended, 120 steps\na step finished twice: False\n"
    )


@covers("scale_out_branches.py")
def test_scale_out_branches_spreads_one_maps_items_over_three_worker_processes(
    new_postgres_database: Callable[[], str],
) -> None:
    assert run_example("scale_out_branches.py", new_postgres_database()).stdout == (
        "200 pages summarised; first: page-000:685520, page-001:e92cfe\n"
        "worker processes that ran pages: 3 of 3\n"
        "most pages at once: within the queue's limit of 6: True\n"
        "a page ran twice: False\n"
        "3 workers, --branches 4 each, exited with [0]\n"
    )


def test_scale_out_workers_on_postgresql(new_postgres_database: Callable[[], str]) -> None:
    assert run_example("scale_out_workers.py", new_postgres_database()).stdout == (
        "3 workers, --concurrency 4 each, exited with [0]\n40 of 40 runs ended, 120 steps\na step finished twice: False\n"
    )
