"""The inspector's pages: the runs, one run, and the live streams that tell a page it changed."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from railyard.cli._history import read_history, state_changes
from railyard.cli._inspect import parse_statuses
from railyard.exceptions import RunNotFound
from railyard.inspector._context import Inspector, event
from railyard.inspector._forms import FormField, form_fields
from railyard.inspector._views import diagram_of, first_node, highlighted, path_of, shape_of, timeline_of
from railyard.store import RunInfo, RunStatus, StoredRecord
from railyard.suspension import Waiting, waiting_for

__all__ = ("run_events", "run_page", "runs_events", "runs_page")

COUNTED = 10_000
"""The runs page counts statuses over at most this many of the latest runs."""

_NOT_RESUMED = frozenset({RunStatus.ENDED, RunStatus.CANCELLED, RunStatus.SUSPENDED})
"""A run in these cannot be resumed from the page (a suspended one is answered first)."""

COUNT_EVERY = 20
"""A runs page's stream counts the runs by status once in this many looks (10 s at the default poll)."""

KEEPALIVE = 15.0
"""A live stream sends a comment this often, so proxies keep it open."""


class PageError(Exception):
    """A request names something the page cannot show: `status` is the HTTP status, the message the why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _filters(request: Request) -> dict[str, Any]:
    from railyard.cli._common import CliError
    from railyard.cli._inspect import _moment  # pyright: ignore[reportPrivateUsage]

    params = request.query_params
    try:
        statuses = parse_statuses([s for s in params.getlist("status") if s]) or None
        since_text = params.get("since") or ""
        since = _moment(since_text, "since") if since_text else None
    except CliError as err:
        raise PageError(400, err.message.replace("--status", "status")) from None
    graph = params.get("graph") or None
    try:
        limit = max(1, min(int(params.get("limit") or 100), 1000))
    except ValueError:
        raise PageError(400, f"limit {params.get('limit')!r} is not a whole number") from None
    return {"statuses": statuses, "since": since, "since_text": since_text, "graph": graph, "limit": limit}


async def _listing(inspector: Inspector, filters: dict[str, Any]) -> tuple[list[RunInfo], Counter[str], list[str]]:
    every = await inspector.store.runs(graph=filters["graph"], since=filters["since"], limit=COUNTED)
    counts: Counter[str] = Counter(info.status.value for info in every)
    wanted = set(filters["statuses"] or ())
    shown = [info for info in every if not wanted or info.status in wanted][: filters["limit"]]
    graphs = sorted({info.graph for info in every if info.graph} | set(inspector.graphs))
    return shown, counts, graphs


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, default=str, sort_keys=True).encode()).hexdigest()[:16]


async def runs_page(request: Request) -> Response:
    """GET /: the runs, filtered by status, graph and time, with counts by status."""
    inspector: Inspector = request.app.state.inspector
    try:
        filters = _filters(request)
    except PageError as err:
        return inspector.page(request, "error.html", err.status, message=err.message)
    shown, counts, graphs = await _listing(inspector, filters)
    return inspector.page(
        request,
        "runs.html",
        runs=shown,
        counts=counts,
        statuses=[s.value for s in RunStatus],
        graphs=graphs,
        filters=filters,
        selected={s.value for s in filters["statuses"] or ()},
        key=_digest([(i.run_id, i.status, i.updated_at, i.steps, i.owner) for i in shown] + sorted(counts.items())),
        query=request.url.query,
    )


def _stream(changes: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        changes, media_type="text/event-stream", headers={"cache-control": "no-store", "x-accel-buffering": "no"}
    )


async def _watch(inspector: Inspector, look: Any) -> AsyncIterator[str]:
    last: str | None = None
    quiet = 0.0
    yield ": live\n\n"
    while not inspector.closing:
        try:
            now = await look()
        except RunNotFound:
            now = "gone"
        if last is not None and now != last:
            yield event({"key": now})
            quiet = 0.0
        last = now
        await anyio.sleep(inspector.poll)
        quiet += inspector.poll
        if quiet >= KEEPALIVE:
            yield ": keep-alive\n\n"
            quiet = 0.0


async def runs_events(request: Request) -> Response:
    """GET /events: a `change` event each time the runs the page shows (with its filters) change."""
    inspector: Inspector = request.app.state.inspector
    try:
        filters = _filters(request)
    except PageError as err:
        return PlainTextResponse(err.message, status_code=err.status)

    looks = [0]
    counted: list[Any] = []

    async def look() -> str:
        # the page's own rows every look; the counts over every run only now and then (they cost a full listing)
        wanted = filters["statuses"]
        shown = await inspector.store.runs(
            status=wanted, graph=filters["graph"], since=filters["since"], limit=filters["limit"]
        )
        if looks[0] % COUNT_EVERY == 0:
            _, counts, _ = await _listing(inspector, filters)
            counted[:] = sorted(counts.items())
        looks[0] += 1
        return _digest([(i.run_id, i.status, i.updated_at, i.steps, i.owner) for i in shown] + counted)

    return _stream(_watch(inspector, look))


def _attempt_errors(records: Sequence[StoredRecord]) -> dict[tuple[str, int], dict[str, Any]]:
    errors: dict[tuple[str, int], dict[str, Any]] = {}
    tries: Counter[str] = Counter()
    for record in records:
        if record.kind == "step_failed":
            body = json.loads(record.body)
            task_id = str(body.get("task_id", ""))
            tries[task_id] += 1
            error = body.get("error")
            if isinstance(error, dict):
                errors[task_id, tries[task_id]] = error
    return errors


def _wait_forms(waits: list[Waiting]) -> list[tuple[Waiting, list[FormField]]]:
    return [(wait, form_fields(wait.payload_schema)) for wait in waits if not wait.is_timer]


async def run_view(
    inspector: Inspector, request: Request, run_id: str, forms: dict[str, list[FormField]] | None = None
) -> dict[str, Any]:
    """Everything the run page shows (`forms`: answer forms filled in as last sent, by wait key)."""
    try:
        detail = await inspector.store.run(run_id)
    except RunNotFound:
        raise PageError(404, f"the store has no run {run_id!r}") from None
    records = await inspector.store.read(run_id)
    waits = await waiting_for(inspector.store, run_id)
    info = detail.info
    try:
        steps, states = read_history(records)
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # records no railyard version writes
        raise PageError(500, f"the records of run {run_id!r} cannot be shown: {type(err).__name__}: {err}") from None
    last = len(states.states) - 1
    chosen = request.query_params.get("step")
    try:
        at = last if not chosen else int(chosen)
    except ValueError:
        raise PageError(400, f"step {chosen!r} is not a whole number") from None
    if not 0 <= at <= last:
        raise PageError(404, f"run {run_id!r} has steps 0 to {last}; {at} is not one of them")
    visited, current, failed = path_of(steps, info.status)
    loaded = inspector.graph_for(info.graph)
    code = _own_diagram(loaded) if loaded is not None else None
    if code is None:
        shape = shape_of(records)
        code = diagram_of(shape, first_node(records)) if shape is not None else None
    wait_forms = _wait_forms(waits) if info.status is RunStatus.SUSPENDED else []
    if forms:
        wait_forms = [(wait, forms.get(wait.key, fields)) for wait, fields in wait_forms]
    step_node = next((s.node for s in steps if s.index == at), None)
    diagram = highlighted(code, visited, current, failed) if code else None
    live = (info.status.value, info.steps, len(records), info.owner, info.cancel_requested)
    return {
        "info": info,
        "detail": detail,
        "steps": steps,
        "timeline": timeline_of(steps, time.time()),
        "errors": _attempt_errors(records),
        "diagram": diagram,
        "diagram_key": _digest(diagram),
        "waits": waits,
        "wait_forms": wait_forms,
        "at": at,
        "last": last,
        "step_node": step_node,
        "state": states.states[at],
        "changes": state_changes(states.states[at - 1], states.states[at]) if at > 0 else [],
        "state_error": states.error,
        "can_resume": loaded is not None and info.status not in _NOT_RESUMED and info.owner is None,
        "stopped": inspector.stopped.get(run_id),
        "fork_at": at - 1 if info.status is RunStatus.ENDED and at == last and at > 0 else at,
        "can_fork": inspector.can_fork(info.graph),
        "can_cancel": info.status not in (RunStatus.ENDED, RunStatus.CANCELLED),
        "driving": run_id in inspector.driving,
        "key": _digest(live),
        "forms_key": _digest([w.key for w in waits]),
    }


_SAFE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _own_diagram(loaded: Any) -> str | None:
    """The graph's own diagram (with its labels and notes), unless a node id is one mermaid cannot take."""
    from railyard.cli._load import GraphKind

    ids = loaded.graph.node_defs if loaded.kind is GraphKind.NODE else getattr(loaded.graph, "nodes", {})
    if not all(_SAFE_ID.fullmatch(str(node_id)) for node_id in ids):
        return None  # drawn from the stored shape, whose ids are made safe
    if loaded.kind is GraphKind.NODE:
        code: str = loaded.graph.mermaid_code()
        return code
    if loaded.kind is GraphKind.BUILDER:
        drawn: str = loaded.graph.render(title=loaded.name)
        return drawn
    return None


async def run_page(request: Request) -> Response:
    """GET /runs/{run_id}: the run's diagram, timeline, steps, state at a step, waits and actions."""
    inspector: Inspector = request.app.state.inspector
    run_id = request.path_params["run_id"]
    try:
        view = await run_view(inspector, request, run_id)
    except PageError as err:
        return inspector.page(request, "error.html", err.status, message=err.message)
    return inspector.page(request, "run.html", run_id=run_id, done=request.query_params.get("done"), **view)


async def run_events(request: Request) -> Response:
    """GET /runs/{run_id}/events: a `change` event each time the run moves."""
    inspector: Inspector = request.app.state.inspector
    run_id = request.path_params["run_id"]

    async def look() -> str:
        detail = await inspector.store.run(run_id)
        info = detail.info
        return _digest((info.status.value, info.steps, info.updated_at, info.owner, info.cancel_requested))

    return _stream(_watch(inspector, look))
