"""The inspector's actions: answer a waiting run, resume it, cancel it, fork it from a step.

Each is a POST from the run page's forms, checked by the guard (same site, the form
token), refused when the inspector is read-only, and answered with a redirect back to
the run page (or, for a refused answer, the page again with the error on the form).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from railyard.exceptions import RailyardError, RunLocked, RunNotFound
from railyard.inspector._context import Inspector
from railyard.inspector._forms import FIELD, FORM_TOKEN, WAIT_KEY, FormProblem, form_fields, payload_of, problems_of
from railyard.inspector._pages import PageError, run_view
from railyard.store import RunStatus
from railyard.suspension import RunSuspended, SignalError, cancel, signal, waiting_for

__all__ = ("cancel_run", "fork_run", "resume_run", "signal_run")

logger = logging.getLogger("railyard.inspector")


def _to_run(run_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/runs/{quote(run_id, safe='')}?done={done}", status_code=303)


async def _checked(request: Request) -> tuple[Inspector, str, FormData] | Response:
    inspector: Inspector = request.app.state.inspector
    run_id: str = request.path_params["run_id"]
    if inspector.read_only:
        return inspector.page(request, "error.html", 403, message="this inspector is read-only: it changes no run")
    form = await request.form()
    token = form.get(FORM_TOKEN)
    if not inspector.guard.form_token_ok(token if isinstance(token, str) else None):
        return inspector.page(
            request, "error.html", 403, message="the form is stale or from elsewhere: reload the page and try again"
        )
    return inspector, run_id, form


def _problem(inspector: Inspector, request: Request, status: int, message: str) -> Response:
    return inspector.page(request, "error.html", status, message=message)


async def signal_run(request: Request) -> Response:
    """POST /runs/{run_id}/signal: answer what the run waits for with the form's payload."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    inspector, run_id, form = checked
    key = form.get(WAIT_KEY)
    if not isinstance(key, str):
        return _problem(inspector, request, 400, "the form names no wait to answer")
    try:
        waits = {w.key: w for w in await waiting_for(inspector.store, run_id)}
    except RunNotFound:
        return _problem(inspector, request, 404, f"the store has no run {run_id!r}")
    wait = waits.get(key)
    if wait is None:
        known = ", ".join(repr(k) for k in waits) or "nothing"
        return _problem(inspector, request, 409, f"run {run_id!r} does not wait for {key!r} (it waits for {known})")
    fields = form_fields(wait.payload_schema)
    texts = {
        name.removeprefix(FIELD): value
        for name, value in form.multi_items()
        if isinstance(value, str) and name.startswith(FIELD)
    }
    for form_field in fields:
        form_field.value = texts.get(form_field.name) if form_field.kind != "checkbox" else None
        form_field.checked = form_field.name in texts
    message: str | None = None
    try:
        payload = payload_of(fields, texts)
        await signal(inspector.store, run_id, key, payload)
    except FormProblem as err:
        target = next(f for f in fields if f.name == err.field)
        target.error = err.message
    except SignalError as err:
        errors: list[Any] = err.details.get("errors") or []
        message = problems_of(fields, errors) if errors else str(err)
    except RunLocked:
        message = "a driver holds the run right now: try again in a moment"
    except RailyardError as err:  # it was cancelled, or ended, meanwhile
        return _problem(inspector, request, 409, str(err))
    else:
        return _to_run(run_id, "signalled")
    try:
        view = await run_view(inspector, request, run_id, forms={key: fields})
    except PageError as page_error:
        return _problem(inspector, request, page_error.status, page_error.message)
    return inspector.page(request, "run.html", 422, run_id=run_id, done=None, form_error=(key, message), **view)


async def cancel_run(request: Request) -> Response:
    """POST /runs/{run_id}/cancel: cancel the run (its driver, if any, stops at its next step)."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    inspector, run_id, form = checked
    reason = form.get("reason")
    text = reason.strip() if isinstance(reason, str) and reason.strip() else "cancelled from the inspector"
    try:
        await cancel(inspector.store, run_id, text)
    except RunNotFound:
        return _problem(inspector, request, 404, f"the store has no run {run_id!r}")
    except RailyardError as err:  # it ended, or was cancelled already
        return _problem(inspector, request, 409, str(err))
    return _to_run(run_id, "cancelled")


async def resume_run(request: Request) -> Response:
    """POST /runs/{run_id}/resume: drive the run on in this process, with the graph given to the inspector."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    inspector, run_id, _ = checked
    try:
        info = (await inspector.store.run(run_id)).info
    except RunNotFound:
        return _problem(inspector, request, 404, f"the store has no run {run_id!r}")
    loaded = inspector.graph_for(info.graph)
    if loaded is None:
        return _problem(
            inspector,
            request,
            409,
            f"run {run_id!r} is of the graph {info.graph!r}, which this inspector was not given: "
            "start it with `railyard ui MODULE:GRAPH ...` to resume and fork its runs",
        )
    if inspector.tasks is None:
        return _problem(
            inspector,
            request,
            503,
            "this inspector's lifespan is not running (an app that mounts it must run its lifespan), "
            "so it cannot drive runs",
        )
    if info.owner is not None:
        return _problem(inspector, request, 409, f"run {run_id!r} is driven by {info.owner} right now")
    if info.status in (RunStatus.ENDED, RunStatus.CANCELLED, RunStatus.SUSPENDED):
        why = "answer what it waits for first" if info.status is RunStatus.SUSPENDED else "it cannot go on"
        return _problem(inspector, request, 409, f"run {run_id!r} is {info.status.value}: {why}")
    if run_id in inspector.driving:
        return _to_run(run_id, "resumed")
    inspector.driving.add(run_id)
    inspector.tasks.start_soon(_drive, inspector, loaded.graph, run_id)
    return _to_run(run_id, "resumed")


async def _drive(inspector: Inspector, graph: Any, run_id: str) -> None:
    """Carry a run on to where it stops; what happens is in its log, so nothing is raised here."""
    inspector.stopped.pop(run_id, None)
    try:
        await graph.resume(inspector.store, run_id)
    except RunSuspended:
        pass  # the page shows what it waits for
    except Exception as err:  # failed, cancelled, locked: the page says so (a failure is in the store too)
        inspector.stopped[run_id] = f"{type(err).__name__}: {err}"
        logger.warning("run %s stopped: %s: %s", run_id, type(err).__name__, err)
    finally:
        inspector.driving.discard(run_id)


async def fork_run(request: Request) -> Response:
    """POST /runs/{run_id}/fork: a new run from a step of this one (this one unchanged)."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    inspector, run_id, form = checked
    at_text = form.get("at")
    try:
        at = int(at_text) if isinstance(at_text, str) else -1
    except ValueError:
        at = -1
    try:
        info = (await inspector.store.run(run_id)).info
    except RunNotFound:
        return _problem(inspector, request, 404, f"the store has no run {run_id!r}")
    loaded = inspector.graph_for(info.graph)
    if loaded is None or not inspector.can_fork(info.graph):
        return _problem(
            inspector, request, 409, f"runs of {info.graph!r} cannot be forked here: give its graph to `railyard ui`"
        )
    if at < 0:
        return _problem(inspector, request, 400, f"fork at {at_text!r}: give a step number (0: the run's start)")
    try:
        new_id: str = await loaded.graph.fork(inspector.store, run_id, at)
    except (ValueError, RailyardError) as err:
        return _problem(inspector, request, 400, str(err))
    return _to_run(new_id, "forked")
