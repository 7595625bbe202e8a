"""The run inspector over HTTP on a real loopback socket: pages, live streams, actions and its safety rules."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from railyard.inspector._forms import JSON_FIELD, FormProblem, form_fields, payload_of, problems_of
from railyard.store import RunStatus
from railyard.store.urls import open_store
from railyard.suspension import RunSuspended
from tests.support.cli_graphs import CountDown, CountState, Explode, counter, doubles, failing
from tests.support.inspector import Served, serving
from tests.support.inspector_subjects import (
    Ask,
    DecideState,
    NoteState,
    Order,
    Prepare,
    Scribble,
    decide,
    notes,
    tricky,
)

ROOT = Path(__file__).resolve().parent.parent
RAILYARD = (sys.executable, "-m", "railyard")


def _apart(work: Callable[[], Any]) -> Any:
    """Run `anyio.run(work)` on a thread of its own (the browser tests' thread runs Playwright's event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, work).result()


def _run(store_url: str, make: Callable[[Any], Any]) -> None:
    async def main() -> None:
        store = open_store(store_url)
        try:
            await make(store)
        except (RunSuspended, ValueError):
            pass
        finally:
            await store.aclose()  # type: ignore[attr-defined]

    _apart(main)


def _records(store_url: str, run_id: str) -> list[tuple[str, str]]:
    async def main() -> list[tuple[str, str]]:
        store = open_store(store_url)
        try:
            return [(r.kind, r.body) for r in await store.read(run_id)]
        finally:
            await store.aclose()  # type: ignore[attr-defined]

    result: Any = _apart(main)
    return result


def _status(store_url: str, run_id: str) -> RunStatus:
    async def main() -> RunStatus:
        store = open_store(store_url)
        try:
            return (await store.run(run_id)).info.status
        finally:
            await store.aclose()  # type: ignore[attr-defined]

    result: Any = _apart(main)
    return result


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return five_runs(tmp_path)


def five_runs(tmp_path: Path, url: str | None = None) -> str:
    """A store (SQLite, unless `url`) holding five runs: ended, suspended, failed, a fan-out, a script in its state."""
    url = url or f"sqlite:{tmp_path / 'runs.db'}"
    _run(url, lambda s: counter.run(CountDown(), state=CountState(counter=3), store=s, run_id="count-1"))
    _run(url, lambda s: decide.run(Prepare(), state=DecideState(), store=s, run_id="decide-1"))
    _run(url, lambda s: failing.run(Explode(), store=s, run_id="fail-1"))
    _run(url, lambda s: doubles.run(inputs=[1, 2, 3], store=s, run_id="doubles-1"))
    _run(url, lambda s: notes.run(Scribble(), state=NoteState(), store=s, run_id="notes-1"))
    return url


@pytest.fixture
def served(store_url: str) -> Iterator[Served]:
    with serving(store_url, ("tests.support.cli_graphs:counter", "tests.support.inspector_subjects:decide")) as s:
        yield s


def _classed(diagram: str, name: str) -> set[str]:
    """The nodes a diagram's `class A,B name` lines give the class `name`."""
    return {n for line in re.findall(rf"^  class (\S+) {name}$", diagram, re.M) for n in line.split(",")}


def _get(served: Served, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(served.url + path, timeout=10, **kwargs)


def _post(served: Served, path: str, data: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(served.url + path, data=data, timeout=10, **kwargs)


def test_the_runs_page_lists_runs_with_counts_and_filters(served: Served) -> None:
    page = _get(served, "/")
    assert page.status_code == 200
    for run_id in ("count-1", "decide-1", "fail-1", "doubles-1", "notes-1"):
        assert f'data-run="{run_id}"' in page.text
    assert 'data-count="ended">3<' in page.text
    assert 'data-count="suspended">1<' in page.text
    assert 'data-count="failed">1<' in page.text
    assert "ValueError: the flux capacitor is empty" in page.text  # a failed run's error in its row
    assert "order" in page.text  # what the suspended run waits for

    failed = _get(served, "/?status=failed").text
    assert 'data-run="fail-1"' in failed and 'data-run="count-1"' not in failed
    several = _get(served, "/?status=failed&status=suspended").text
    assert 'data-run="fail-1"' in several and 'data-run="decide-1"' in several and 'data-run="count-1"' not in several
    by_graph = _get(served, "/?graph=doubles").text
    assert 'data-run="doubles-1"' in by_graph and 'data-run="fail-1"' not in by_graph
    assert 'data-run="count-1"' not in _get(served, "/?since=2999-01-01T00:00").text
    assert 'data-run="count-1"' in _get(served, "/?since=1h").text


def test_bad_filters_are_one_clear_error(served: Served) -> None:
    page = _get(served, "/?status=sleeping")
    assert page.status_code == 400
    assert "&#39;sleeping&#39; is not a run status" in page.text
    assert _get(served, "/?since=yesterday").status_code == 400
    assert _get(served, "/?limit=many").status_code == 400


def test_a_run_page_shows_the_graph_with_its_path_steps_and_states(served: Served) -> None:
    page = _get(served, "/runs/count-1")
    assert page.status_code == 200
    diagram = re.search(r'<pre class="mermaid" id="diagram">(.*?)</pre>', page.text, re.S)
    assert diagram is not None
    assert "stateDiagram-v2" in diagram[1]
    assert _classed(diagram[1], "visited") == {"CountDown"}
    assert page.text.count('data-node="CountDown"') == 4  # four steps: 3, 2, 1, 0
    state = re.search(r'<pre class="state" id="state-json">(.*?)</pre>', page.text, re.S)
    assert state is not None and json.loads(state[1].replace("&#34;", '"')) == {"counter": 0, "seen": [3, 2, 1, 0]}

    step_two = _get(served, "/runs/count-1?step=2").text
    assert "State after step 2" in step_two
    assert "<code>counter</code>: 2 &rarr; 1" in step_two
    assert "<code>seen.1</code>" not in step_two  # a list changes as a whole value
    assert "Changed by step 2" in step_two


def test_a_run_page_draws_a_graph_it_cannot_import_from_the_stored_shape(served: Served) -> None:
    page = _get(served, "/runs/doubles-1").text  # doubles was not given to the inspector
    diagram = re.search(r'<pre class="mermaid" id="diagram">(.*?)</pre>', page, re.S)
    assert diagram is not None
    assert "state map &lt;&lt;fork&gt;&gt;" in diagram[1]
    assert "double" in _classed(diagram[1], "visited")
    assert "railyard ui MODULE:GRAPH" not in page  # an ended run: nothing to resume
    assert 'id="fork"' not in page  # its graph was not given: no fork


def test_a_failed_run_shows_its_error_and_traceback(served: Served) -> None:
    page = _get(served, "/runs/fail-1").text
    assert "the flux capacitor is empty" in page
    assert "Traceback (most recent call last)" in page
    assert _classed(page, "failed") == {"Explode"}


def test_unknown_runs_and_steps(served: Served) -> None:
    page = _get(served, "/runs/nope")
    assert page.status_code == 404 and "the store has no run &#39;nope&#39;" in page.text
    assert _get(served, "/runs/count-1?step=99").status_code == 404
    assert _get(served, "/runs/count-1?step=two").status_code == 400


def test_every_stored_value_is_escaped(served: Served) -> None:
    page = _get(served, "/runs/notes-1").text
    assert "<script>window.__pwned" not in page
    assert "&lt;script&gt;window.__pwned = 1; alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert page.count("<script") == 2  # the two script tags of the page itself, both from /static
    headers = _get(served, "/runs/notes-1").headers
    assert "script-src" not in headers["content-security-policy"]  # default-src 'self': no inline scripts
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_the_answer_form_is_made_from_the_payload_type(served: Served) -> None:
    page = _get(served, "/runs/decide-1").text
    assert "Waiting for <code>order</code>" in page
    assert "Ship order 7?" in page
    assert '<select name="f.verdict">' in page and '<option value="hold"' in page
    assert '<input name="f.quantity" value="" inputmode="decimal">' in page
    assert 'type="checkbox" name="f.rush"' in page
    assert "How many to ship" in page


def test_a_form_answers_a_suspended_run_and_a_resume_finishes_it(served: Served, store_url: str) -> None:
    answered = _post(
        served,
        "/act/signal/decide-1",
        {"__form_token": served.form_token, "__key": "order", "f.verdict": "ship", "f.quantity": "2", "f.rush": "on"},
    )
    assert answered.status_code == 303
    assert answered.headers["location"] == "/runs/decide-1?done=signalled"
    assert _status(store_url, "decide-1") is RunStatus.WAITING
    signalled = [json.loads(body) for kind, body in _records(store_url, "decide-1") if kind == "signal_received"]
    assert [(s["key"], s["payload"]) for s in signalled] == [
        ("order", {"verdict": "ship", "quantity": 2, "rush": True, "note": ""})
    ]
    page = _get(served, "/runs/decide-1?done=signalled").text
    assert "Answered: the run is ready to go on" in page

    with httpx.stream("GET", served.url + "/events/runs/decide-1", timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": live"
        assert _post(served, "/act/resume/decide-1", {"__form_token": served.form_token}).status_code == 303
        _until_status(lines, store_url, "decide-1", RunStatus.ENDED)
    page = _get(served, "/runs/decide-1").text
    assert "ship x2" in page


def _until_status(lines: Iterator[str], store_url: str, run_id: str, status: RunStatus) -> None:
    """Read the run's live stream until the store says it has `status` (each change event: a look)."""
    for line in lines:
        if line.startswith("event: change") and _status(store_url, run_id) is status:
            return
    raise AssertionError(f"the stream ended before {run_id} was {status}")


def test_a_bad_answer_shows_its_errors_on_the_form_and_stores_nothing(served: Served, store_url: str) -> None:
    before = _records(store_url, "decide-1")
    refused = _post(
        served, "/act/signal/decide-1", {"__form_token": served.form_token, "__key": "order", "f.verdict": "ship"}
    )
    assert refused.status_code == 422
    assert '<span class="field-error">Field required</span>' in refused.text
    zero = _post(
        served,
        "/act/signal/decide-1",
        {
            "__form_token": served.form_token,
            "__key": "order",
            "f.verdict": "ship",
            "f.quantity": "0",
            "f.note": "<b>hi</b>",
        },
    )
    assert zero.status_code == 422
    assert "Input should be greater than or equal to 1" in zero.text
    assert 'value="&lt;b&gt;hi&lt;/b&gt;"' in zero.text  # what was typed comes back, escaped
    words = _post(
        served,
        "/act/signal/decide-1",
        {"__form_token": served.form_token, "__key": "order", "f.verdict": "ship", "f.quantity": "lots"},
    )
    assert words.status_code == 422
    assert "&#39;lots&#39; is not a whole number" in words.text
    assert _records(store_url, "decide-1") == before
    other = _post(served, "/act/signal/decide-1", {"__form_token": served.form_token, "__key": "nope"})
    assert other.status_code == 409 and "does not wait for &#39;nope&#39;" in other.text


def test_cancel_and_fork(served: Served, store_url: str) -> None:
    cancelled = _post(served, "/act/cancel/decide-1", {"__form_token": served.form_token, "reason": "withdrawn"})
    assert cancelled.status_code == 303
    assert _status(store_url, "decide-1") is RunStatus.CANCELLED
    assert "withdrawn" in _get(served, "/runs/decide-1").text
    assert _post(served, "/act/cancel/decide-1", {"__form_token": served.form_token}).status_code == 409

    forked = _post(served, "/act/fork/count-1", {"__form_token": served.form_token, "at": "2"})
    assert forked.status_code == 303
    new_id = forked.headers["location"].split("/runs/", 1)[1].split("?", 1)[0]
    assert new_id != "count-1"
    page = _get(served, f"/runs/{new_id}?done=forked").text
    assert "Forked: this is a new run" in page and 'id="resume"' in page
    assert _status(store_url, new_id) is RunStatus.CREATED
    bad = _post(served, "/act/fork/count-1", {"__form_token": served.form_token, "at": "42"})
    assert bad.status_code == 400
    no_graph = _post(served, "/act/fork/doubles-1", {"__form_token": served.form_token, "at": "1"})
    assert no_graph.status_code == 409 and "give its graph to" in no_graph.text


def test_actions_refuse_cross_site_requests_and_stale_forms(served: Served, store_url: str) -> None:
    before = _records(store_url, "decide-1")
    data = {"__form_token": served.form_token, "reason": "evil"}
    assert _post(served, "/act/cancel/decide-1", {"reason": "no token"}).status_code == 403
    assert _post(served, "/act/cancel/decide-1", {**data, "__form_token": "guess"}).status_code == 403
    evil_origin = _post(served, "/act/cancel/decide-1", data, headers={"origin": "http://evil.example"})
    assert evil_origin.status_code == 403 and "another site" in evil_origin.text
    cross = _post(served, "/act/cancel/decide-1", data, headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    assert _get(served, "/act/cancel/decide-1").status_code in (404, 405)  # only POST changes a run
    assert httpx.put(served.url + "/act/cancel/decide-1", timeout=10).status_code == 405
    assert _records(store_url, "decide-1") == before


def test_a_foreign_host_header_is_refused(served: Served) -> None:
    page = _get(served, "/", headers={"host": "attacker.example"})
    assert page.status_code == 421


def test_a_token_is_needed_on_every_request(store_url: str) -> None:
    with serving(store_url, token="s3cret") as served:
        port = served.url.rsplit(":", 1)[1]
        cookie_name = f"railyard_token_{port}"  # one per port: two inspectors on one host keep their own
        assert _get(served, "/").status_code == 401
        assert _get(served, "/static/inspector.js").status_code == 401
        assert _get(served, "/?token=wrong").status_code == 401
        first = _get(served, "/?status=failed&token=s3cret&status=ended")
        assert first.status_code == 303 and first.headers["location"] == "/?status=failed&status=ended"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{cookie_name}=s3cret;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert _get(served, "/", cookies={cookie_name: "s3cret"}).status_code == 200
        assert _get(served, "/", headers={"authorization": "Bearer s3cret"}).status_code == 200
        odd = {"cookie": f'prefs={{"a": 1}}; other="x; {cookie_name}=s3cret'}  # other apps' cookies on localhost
        assert _get(served, "/", headers=odd).status_code == 200
        stale = _get(served, "/?token=s3cret", headers={"cookie": f"{cookie_name}=old"})
        assert stale.status_code == 303  # a stale cookie does not hide a right token
        sneaky = _get(served, "//evil.example/?token=s3cret")
        assert sneaky.status_code == 303 and sneaky.headers["location"].startswith("/evil.example")
        encoded = _get(served, "/runs/x%3Fy%23z?token=s3cret")
        assert encoded.headers["location"] == "/runs/x%3Fy%23z"  # the same run, not run x with a query
        post = _post(served, "/act/cancel/decide-1", {"__form_token": served.form_token})
        assert post.status_code == 401


def test_an_inspector_for_any_host_name_needs_a_token(store_url: str) -> None:
    from railyard.inspector import create_app
    from railyard.store.memory import MemoryStore

    with pytest.raises(ValueError, match="needs a token"):
        create_app(MemoryStore(), allowed_hosts=["*"])
    with pytest.raises(ValueError, match="needs a token"):
        create_app(MemoryStore(), host="0.0.0.0")
    create_app(MemoryStore(), host="0.0.0.0", token="t")
    with serving(store_url, allowed_hosts=["Runs.Example.com:8443"]) as served:  # names compare without case or port
        assert _get(served, "/", headers={"host": "runs.example.COM:7860"}).status_code == 200


def test_a_stream_with_a_bad_filter_answers_in_plain_text(served: Served) -> None:
    answer = _get(served, '/events?limit=<meta http-equiv="refresh" content="0;url=/x">')
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/plain")


def test_a_cancelled_run_cannot_be_answered(served: Served, store_url: str) -> None:
    assert _post(served, "/act/cancel/decide-1", {"__form_token": served.form_token}).status_code == 303
    assert (
        "form class" not in _get(served, "/runs/decide-1").text
        and 'class="answer"' not in _get(served, "/runs/decide-1").text
    )
    answer = {"__form_token": served.form_token, "__key": "order", "f.verdict": "ship", "f.quantity": "1"}
    refused = _post(served, "/act/signal/decide-1", answer)
    assert refused.status_code == 409 and "was cancelled" in refused.text
    assert _status(store_url, "decide-1") is RunStatus.CANCELLED


def test_run_ids_with_slashes_and_payload_fields_named_like_the_forms_own(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'runs.db'}"
    _run(url, lambda s: tricky.run(Ask(), store=s, run_id="team/a/events"))
    with serving(url, ("tests.support.inspector_subjects:tricky",)) as served:
        page = _get(served, "/runs/team/a/events")
        assert page.status_code == 200 and "Waiting for <code>question</code>" in page.text
        assert 'action="/act/signal/team%2Fa%2Fevents"' in page.text
        answer = {"__form_token": served.form_token, "__key": "question", "f.key": "k-7", "f.form_token": "mine"}
        answered = _post(served, "/act/signal/team%2Fa%2Fevents", {**answer, "f.ratio": "", "f.maybe": ""})
        assert answered.status_code == 303, answered.text
        assert answered.headers["location"] == "/runs/team%2Fa%2Fevents?done=signalled"
        payloads = [json.loads(b)["payload"] for k, b in _records(url, "team/a/events") if k == "signal_received"]
        assert payloads == [{"key": "k-7", "form_token": "mine", "ratio": 1.0, "maybe": None}]


def test_a_number_must_be_finite(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'runs.db'}"
    _run(url, lambda s: tricky.run(Ask(), store=s, run_id="t1"))
    with serving(url) as served:
        answer = {"__form_token": served.form_token, "__key": "question", "f.key": "k", "f.form_token": "f"}
        refused = _post(served, "/act/signal/t1", {**answer, "f.ratio": "nan"})
        assert refused.status_code == 422 and "is not a finite number" in refused.text
    assert _status(url, "t1") is RunStatus.SUSPENDED


def test_read_only_hides_and_refuses_every_action(store_url: str) -> None:
    with serving(store_url, ("tests.support.inspector_subjects:decide",), read_only=True) as served:
        page = _get(served, "/runs/decide-1").text
        assert "read-only" in page
        assert '<form method="post"' not in page and 'id="cancel"' not in page
        refused = _post(served, "/act/cancel/decide-1", {"__form_token": served.form_token})
        assert refused.status_code == 403
    assert _status(store_url, "decide-1") is RunStatus.SUSPENDED


def test_the_runs_stream_says_when_runs_change(served: Served, store_url: str) -> None:
    with httpx.stream("GET", served.url + "/events?status=ended", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": live"
        _run(store_url, lambda s: counter.run(CountDown(), state=CountState(counter=1), store=s, run_id="count-2"))
        for line in lines:
            if line.startswith("event: change"):
                break
    assert 'data-run="count-2"' in _get(served, "/?status=ended&partial=1").text


def test_the_ui_command_refuses_other_hosts_without_a_token(tmp_path: Path, store_url: str) -> None:
    from typer.testing import CliRunner

    from railyard.cli._app import app

    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--store", store_url])
    assert result.exit_code == 2
    assert "give a token" in result.output
    missing = CliRunner().invoke(app, ["ui", "--store", f"sqlite:{tmp_path / 'none.db'}"])
    assert missing.exit_code == 1 and "no store at" in missing.output
    (tmp_path / "notes.db").write_bytes(b"not a database")
    foreign = CliRunner().invoke(app, ["ui", "--store", f"sqlite:{tmp_path / 'notes.db'}"])
    assert foreign.exit_code == 1 and "is not a SQLite database" in foreign.output
    assert (tmp_path / "notes.db").read_bytes() == b"not a database"


def test_the_ui_command_serves_until_interrupted(store_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAILYARD_UI_TOKEN": "t0ken"}
    process = subprocess.Popen(
        [*RAILYARD, "ui", "tests.support.inspector_subjects:decide", "--port", "0", "--store", store_url],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+/)\?token=t0ken", line)
        assert match, line
        page = httpx.get(match[1], headers={"authorization": "Bearer t0ken"}, timeout=10)
        assert page.status_code == 200 and 'data-run="decide-1"' in page.text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130  # stopped by Ctrl-C, as every command is
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_over_postgresql(new_postgres_database: Callable[[], str], tmp_path: Path) -> None:
    url = five_runs(tmp_path, new_postgres_database())
    with serving(url, ("tests.support.inspector_subjects:decide",)) as served:
        page = _get(served, "/?status=suspended").text
        assert 'data-run="decide-1"' in page and 'data-run="count-1"' not in page
        assert _classed(_get(served, "/runs/count-1").text, "visited") == {"CountDown"}
        refused = _post(served, "/act/signal/decide-1", {"__form_token": served.form_token, "__key": "order"})
        assert refused.status_code == 422
        answered = _post(
            served,
            "/act/signal/decide-1",
            {"__form_token": served.form_token, "__key": "order", "f.verdict": "hold", "f.quantity": "1"},
        )
        assert answered.status_code == 303
        with httpx.stream("GET", served.url + "/events/runs/decide-1", timeout=10) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": live"
            assert _post(served, "/act/resume/decide-1", {"__form_token": served.form_token}).status_code == 303
            _until_status(lines, url, "decide-1", RunStatus.ENDED)


class TestForms:
    def test_an_object_payload_gets_a_field_each(self) -> None:
        fields = {f.name: f for f in form_fields(Order.model_json_schema())}
        assert [f.kind for f in fields.values()] == ["choice", "integer", "checkbox", "text"]
        assert fields["verdict"].choices == ["ship", "hold"] and fields["verdict"].required
        assert not fields["note"].required and fields["quantity"].help == "How many to ship"

    def test_a_form_becomes_a_payload(self) -> None:
        fields = form_fields(Order.model_json_schema())
        assert payload_of(fields, {"verdict": "hold", "quantity": "3"}) == {
            "verdict": "hold",
            "quantity": 3,
            "rush": False,
        }
        with pytest.raises(FormProblem, match="quantity: 'x' is not a whole number"):
            payload_of(fields, {"verdict": "hold", "quantity": "x"})

    def test_other_payloads_are_one_json_box(self) -> None:
        import pydantic

        fields = form_fields(pydantic.TypeAdapter(list[int]).json_schema())
        assert [f.name for f in fields] == [JSON_FIELD]
        assert payload_of(fields, {JSON_FIELD: "[1, 2]"}) == [1, 2]
        with pytest.raises(FormProblem, match="bad JSON at line 1"):
            payload_of(fields, {JSON_FIELD: "[1,"})

    def test_errors_land_on_their_fields(self) -> None:
        fields = form_fields(Order.model_json_schema())
        rest = problems_of(fields, [{"loc": ("quantity",), "msg": "too small"}, {"loc": (), "msg": "whole thing"}])
        assert next(f for f in fields if f.name == "quantity").error == "too small"
        assert rest == "whole thing"
