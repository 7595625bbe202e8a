"""The run inspector in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from railyard.store import RunStatus
from tests.support.inspector import Served, serving
from tests.test_inspector import RAILYARD, ROOT, _status, five_runs

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

GRAPHS = ("tests.support.cli_graphs:counter", "tests.support.inspector_subjects:decide")


def chromium_path() -> str:
    """Debian's Chromium, which `./dev test` installs when it is missing."""
    found = os.environ.get("RAILYARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the browser tests need Chromium: install Debian's chromium package (./dev test does)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert problems == []  # no script on any page threw


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return five_runs(tmp_path)


@pytest.fixture
def served(store_url: str) -> Iterator[Served]:
    with serving(store_url, GRAPHS) as inspector:
        yield inspector


def test_the_runs_page_lists_and_filters_runs(page: Page, served: Served) -> None:
    page.goto(served.url + "/")
    expect(page.locator("table.runs tbody tr")).to_have_count(5)
    page.locator("input[name=status][value=failed]").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    expect(page.locator("table.runs tbody tr")).to_have_attribute("data-run", "fail-1")
    page.locator("select[name=graph]").select_option("")
    page.locator("input[name=status][value=ended]").check()
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(4)
    page.get_by_role("link", name="count-1").click()
    expect(page.locator("#run-status")).to_have_text("ended")


def test_a_run_page_draws_its_graph_with_the_visited_and_failed_nodes(page: Page, served: Served) -> None:
    page.goto(served.url + "/runs/count-1")
    visited = page.locator("#diagram svg g.node.visited")
    expect(visited).to_have_count(1)
    assert "CountDown" in (visited.get_attribute("id") or "")
    page.goto(served.url + "/runs/fail-1")
    failed = page.locator("#diagram svg g.node.failed")
    expect(failed).to_have_count(1)
    assert "Explode" in (failed.get_attribute("id") or "")
    expect(page.locator("#run-error")).to_contain_text("the flux capacitor is empty")
    page.goto(served.url + "/runs/doubles-1")  # a graph the inspector was not given: drawn from the stored shape
    expect(page.locator("#diagram svg g.node.visited[id*='state-double-']")).to_have_count(1)
    expect(page.locator(".lanes .bar")).to_have_count(3)


def test_a_step_shows_its_state_and_what_it_changed(page: Page, served: Served) -> None:
    page.goto(served.url + "/runs/count-1")
    page.locator("#steps").get_by_role("link", name="2", exact=True).click()
    expect(page.locator("#state h2")).to_contain_text("State after step 2")
    expect(page.locator("#changes")).to_contain_text("counter: 2 → 1")
    expect(page.locator("#steps tr.chosen")).to_have_count(1)


def test_a_run_page_follows_a_run_another_process_drives(page: Page, served: Served, store_url: str) -> None:
    process = subprocess.Popen(
        [*RAILYARD, "run", "tests.support.inspector_subjects:ticker", "--run-id", "tick-1", "--store", store_url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stderr is not None
    try:
        _read_until(process.stderr, "tick 3 waits")
        page.goto(served.url + "/runs/tick-1")
        expect(page.locator("#live-dot.on")).to_have_count(1)  # the live stream is open
        page.evaluate("window.__same_page = true")
        expect(page.locator("#step-count")).to_have_text("0")
        expect(page.locator("#diagram svg g.node.current")).to_have_count(1)
        for done in ("1", "2"):
            process.stdin.write("go\n")
            process.stdin.flush()
            expect(page.locator("#step-count")).to_have_text(done)
        expect(page.locator("#run-status")).to_have_text("running")
        reason = page.locator("form.cancel input[name=reason]")
        reason.fill("half-typed")  # a person typing while the run moves: their text stays
        process.stdin.write("go\n")
        process.stdin.flush()
        expect(page.locator("#timeline .lanes .bar.finished")).to_have_count(3)  # other sections follow the run
        expect(reason).to_have_value("half-typed")
        page.locator("h2").first.click()  # they look elsewhere: the summary catches up
        expect(page.locator("#run-status")).to_have_text("ended")
        expect(page.locator("#diagram svg g.node.visited")).to_have_count(1)
        assert page.evaluate("window.__same_page") is True  # updated in place, never reloaded
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _read_until(stream: Any, text: str) -> None:
    for line in stream:
        if text in line:
            return
    raise AssertionError(f"the run never said {text!r}")


def test_the_form_answers_a_suspended_run_and_shows_a_bad_payloads_error(
    page: Page, served: Served, store_url: str
) -> None:
    page.goto(served.url + "/runs/decide-1")
    form = page.locator("form.answer")
    form.locator("select[name='f.verdict']").select_option("ship")
    form.locator("input[name='f.quantity']").fill("0")
    form.get_by_role("button", name="Answer").click()
    expect(page.locator(".field.invalid .field-error")).to_contain_text("greater than or equal to 1")
    assert page.url == served.url + "/runs/decide-1"  # the address is the run's again, so the page stays live
    assert _status(store_url, "decide-1") is RunStatus.SUSPENDED
    form = page.locator("form.answer")
    expect(form.locator("input[name='f.quantity']")).to_have_value("0")  # what was typed is kept
    form.locator("input[name='f.quantity']").fill("2")
    form.get_by_role("button", name="Answer").click()
    expect(page.locator("#notice")).to_contain_text("Answered")
    assert _status(store_url, "decide-1") is RunStatus.WAITING
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#run-status")).to_have_text("ended")
    expect(page.locator("#state-json")).to_contain_text("ship x2")


def test_cancel_and_fork(page: Page, served: Served, store_url: str) -> None:
    page.goto(served.url + "/runs/count-1")
    page.locator("#fork-at").fill("2")
    page.get_by_role("button", name="Fork").click()
    expect(page.locator("#notice")).to_contain_text("Forked")
    expect(page.locator("#step-count")).to_have_text("0")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#run-status")).to_have_text("ended")

    page.goto(served.url + "/runs/decide-1")
    page.locator("form.cancel input[name=reason]").fill("customer withdrew")
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#summary")).to_contain_text("customer withdrew")
    assert _status(store_url, "decide-1") is RunStatus.CANCELLED


def test_a_stored_script_shows_as_text(page: Page, served: Served) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(served.url + "/runs/notes-1")
    expect(page.locator("#state-json")).to_contain_text("<script>window.__pwned = 1; alert('pwned')</script>")
    expect(page.locator("#diagram svg")).to_have_count(1)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []


class _Attacker(http.server.BaseHTTPRequestHandler):
    """Another site: its page posts a form to the inspector as soon as it loads."""

    target = ""
    token = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><html><body>"
            f'<form id="f" method="post" action="{self.target}">'
            f'<input name="__form_token" value="{self.token}">'
            '<input name="reason" value="from another site"></form>'
            '<script>document.getElementById("f").submit()</script></body></html>'
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_page_on_another_site_cannot_change_a_run(page: Page, served: Served, store_url: str) -> None:
    _Attacker.target = f"{served.url}/act/cancel/decide-1"
    _Attacker.token = served.form_token  # even a page that somehow has the form token is refused
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url.startswith(served.url) and r.request.method == "POST") as posted:
            page.goto(f"http://localhost:{attacker.server_address[1]}/")
        assert posted.value.status == 403
    finally:
        attacker.shutdown()
        attacker.server_close()
    assert _status(store_url, "decide-1") is RunStatus.SUSPENDED


def test_a_token_guards_every_page(page: Page, store_url: str) -> None:
    with serving(store_url, GRAPHS, token="letmein") as served:
        refused = page.goto(served.url + "/runs/count-1")
        assert refused is not None and refused.status == 401
        page.goto(served.url + "/?token=letmein")
        assert "token" not in page.url  # kept in a cookie, not in the address
        expect(page.locator("table.runs tbody tr")).to_have_count(5)
        page.get_by_role("link", name="count-1").click()
        expect(page.locator("#diagram svg g.node.visited")).to_have_count(1)  # scripts and styles came too


def test_screenshots(page: Page, served: Served, tmp_path: Path) -> None:
    from tests.support.screenshots import take

    shots = take(page, served.url, tmp_path, run_id="count-1")
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
