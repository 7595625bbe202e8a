"""Waiting for a person or another system: `ctx.wait_for`, `signal`, and suspended runs.

A step of a durable run asks for a typed answer and the run is stored `suspended`:

```python
@dataclass
class Review(BaseNode[OrderState]):
    async def run(self, ctx: GraphRunContext[OrderState]) -> Ship | Reject:
        decision = await ctx.wait_for("approval", Decision, prompt="Approve this order?")
        return Ship() if decision.approved else Reject(decision.reason)
```

The first time, `wait_for` stops the run: `graph.run(...)` (and `resume`, `next`) raise
`RunSuspended` saying what the run waits for, the run is stored `suspended`, and no
worker takes it. `await signal(store, run_id, "approval", {"approved": True})`, from any
process, checks the payload against the type and stores it; the run is ready again, and
the next driver or worker resumes it: the waiting step runs again from its start, and
this time `wait_for` returns the payload. Code before `wait_for` in that step therefore
runs twice: keep it free of side effects, or put them in an earlier step.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import time
from typing import TYPE_CHECKING, Any, TypeVar

from railyard.exceptions import (
    GraphRuntimeError,
    PersistenceError,
    RailyardError,
    RunCancelled,
    RunEnded,
    RunLocked,
)
from railyard.store.records import RunStatus

if TYPE_CHECKING:
    from railyard.store import RunStore, StoredRecord

__all__ = (
    "RunSuspended",
    "SignalError",
    "TIMER_PREFIX",
    "WaitRequested",
    "WaitTimedOut",
    "Waiting",
    "cancel",
    "DEADLINE_PREFIX",
    "first_timer",
    "signal",
    "sleep_until",
    "type_path",
    "wait_for",
    "waiting_for",
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a suspended run waits for."""

    key: str
    """The key a `signal` answers."""
    step_id: str
    """The waiting step's id."""
    payload_type: str
    """The payload's type, as `module:qualified name`."""
    payload_schema: dict[str, Any]
    """The payload's JSON schema."""
    prompt: str | None
    """What the step asks."""
    wake_at: float | None = None
    """When the wait ends by itself (a POSIX timestamp), or `None`: only a signal ends it."""

    @property
    def is_timer(self) -> bool:
        """Whether this is a timer (`ctx.sleep_until`): woken when due, never signalled."""
        return self.key.startswith(TIMER_PREFIX)


TIMER_PREFIX = "timer:"
"""The start of a timer's key (`ctx.sleep_until`): `timer:<when it is due, ISO 8601>`."""

DEADLINE_PREFIX = "\x00deadline:"
"""Where a waiting step's stored deadline is kept among the run's answers (not a key a signal can name)."""


class WaitRequested(BaseException):
    """Raised by `wait_for` inside a step to suspend the run (a `BaseException`, so `except Exception` passes it)."""

    def __init__(self, key: str, payload_type: Any, prompt: str | None, wake_at: float | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.payload_type = payload_type
        self.prompt = prompt
        self.wake_at = wake_at


class WaitTimedOut(RailyardError, TimeoutError):
    """`wait_for(key, ..., timeout=)` saw its deadline pass without an answer (the step may catch it and go on)."""

    def __init__(self, key: str, step_id: str, timeout: float) -> None:
        super().__init__(
            f"Step `{step_id}` waited {timeout:g} s for {key!r} and no signal came; catch WaitTimedOut in the step "
            f"to go on without it, or give wait_for a longer timeout."
        )
        self.key = key
        """What the step waited for."""
        self.step_id = step_id
        """The step that waited."""
        self.timeout = timeout
        """How long it waited, in seconds."""


class RunSuspended(RailyardError):
    """The run waits for a signal: it is stored `suspended`; `signal(store, run_id, key, payload)` answers it."""

    def __init__(self, run_id: str | None, waits: list[Waiting]) -> None:
        self.run_id = run_id
        """The suspended run."""
        self.waits = waits
        """What its steps wait for, one entry per waiting step."""
        self.waiting = waits[0]
        """What its (first) waiting step waits for."""
        asked = "; ".join(
            f"step `{w.step_id}` waits for {w.key!r}" + (f" ({w.prompt})" if w.prompt else "") for w in waits
        )
        key = waits[0].key if len(waits) == 1 else "KEY"
        super().__init__(
            f"Run {run_id!r} is suspended: {asked}. Answer it with `await signal(store, {run_id!r}, {key!r}, "
            f"payload)`; the next driver or worker then resumes it."
        )


class SignalError(PersistenceError):
    """A signal cannot be delivered: the run does not wait for that key, or the payload is not valid.

    A refused payload's `details["errors"]` holds pydantic's errors (`loc`, `msg`, `type`), one per field.
    """


def type_path(payload_type: Any) -> str:
    """`module:qualified name` of a type (what `signal` imports to validate a payload)."""
    module = getattr(payload_type, "__module__", "builtins")
    name = getattr(payload_type, "__qualname__", None) or repr(payload_type)
    return f"{module}:{name}"


def _adapter(payload_type: Any) -> Any:
    import pydantic

    return pydantic.TypeAdapter(payload_type)


def wait_for(
    answers: dict[str, tuple[str, Any]] | None,
    run_id: str | None,
    step_id: str,
    key: str,
    payload_type: type[T],
    *,
    prompt: str | None,
    timeout: float | timedelta | None = None,
) -> T:
    """The payload a signal delivered for `key` to this step, validated; else suspend the run.

    With `timeout`, the wait ends by itself that long after it began (the deadline is
    stored with the wait, so a step run again keeps it): once it has passed, `WaitTimedOut`.

    Raises:
        WaitRequested: no answer yet (the loop stores the wait and suspends the run).
        WaitTimedOut: the timeout passed without an answer.
        GraphRuntimeError: the run is not durable, so it could not be resumed with an answer.
        ValueError: the key is empty, has a line break or starts like a timer's, or the timeout is not positive.
    """
    if not key or "\n" in key or key.startswith((TIMER_PREFIX, DEADLINE_PREFIX)):
        raise ValueError(
            f"wait_for({key!r}, ...) in step `{step_id}`: a key is a non-empty line of text that does not start "
            f"with {TIMER_PREFIX!r} (timers' keys do)."
        )
    seconds = _seconds(timeout, f"wait_for({key!r}, ..., timeout=)") if timeout is not None else None
    if run_id is None:
        raise GraphRuntimeError(
            f"`wait_for({key!r}, ...)` in step `{step_id}` needs a durable run, which can wait and be resumed: "
            f"run the graph with `store=` (for instance `SqliteStore('runs.db')`)."
        )
    if answers:
        answer = answers.get(key)
        if answer is not None and answer[0] == step_id:
            value: T = _adapter(payload_type).validate_python(answer[1])
            return value
    if seconds is None:
        raise WaitRequested(key, payload_type, prompt)
    stored = answers.get(DEADLINE_PREFIX + key) if answers else None
    deadline = float(stored[1]) if stored is not None and stored[0] == step_id else time() + seconds
    if time() >= deadline:
        raise WaitTimedOut(key, step_id, seconds)
    raise WaitRequested(key, payload_type, prompt, wake_at=deadline)


async def sleep_until(run_id: str | None, step_id: str, when: datetime | float) -> None:
    """Wait until `when` (an aware datetime, or a POSIX timestamp); at once if it has passed.

    In a durable run the step is parked and the run stored `suspended` with its timer:
    no process waits meanwhile, and a worker takes the run up when it is due (the step
    then runs again from its start, and this returns at once). A run without a store
    sleeps in this process.

    Raises:
        WaitRequested: the timer is not due (the loop stores it and suspends the run).
        ValueError: `when` is a naive datetime, or not a time.
    """
    due = _when(when, f"sleep_until({when!r}) in step `{step_id}`")
    remaining = due - time()
    if remaining <= 0:
        return
    if run_id is None:
        import anyio

        await anyio.sleep(remaining)
        return
    stamp = datetime.fromtimestamp(due, UTC).isoformat()
    raise WaitRequested(f"{TIMER_PREFIX}{stamp}", type(None), None, wake_at=due)


def first_timer(waits: Sequence[Waiting]) -> float | None:
    """When the first of `waits` ends by itself (a POSIX timestamp), or `None` if only signals end them."""
    due = [w.wake_at for w in waits if w.wake_at is not None]
    return min(due) if due else None


def _when(value: datetime | float, where: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{where}: give an aware datetime (for instance datetime.now(UTC) + timedelta(hours=1)).")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: give a datetime or a POSIX timestamp.")
    return float(value)


def _seconds(value: float | timedelta, where: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"{where}: a timeout is a timedelta or a number of seconds, more than 0 (got {value!r}).")
    return float(seconds)


def waiting_of(kind: str, body: dict[str, Any], open_waits: dict[str, Waiting]) -> None:
    """Bring `open_waits` up to date with one stored record (by its kind and JSON body)."""
    if kind == "step_suspended":
        open_waits[body["key"]] = Waiting(
            body["key"],
            body["task_id"],
            body["payload_type"],
            body["payload_schema"],
            body["prompt"],
            body.get("wake_at"),
        )
    elif kind == "signal_received":
        open_waits.pop(body["key"], None)


async def waiting_for(store: RunStore, run_id: str) -> list[Waiting]:
    """What the run waits for (empty if it waits for nothing).

    Raises:
        RunNotFound: the store has no such run.
    """
    open_waits: dict[str, Waiting] = {}
    for record in await store.read(run_id):
        if record.kind in ("step_suspended", "signal_received"):
            waiting_of(record.kind, json.loads(record.body), open_waits)
    return list(open_waits.values())


def _import_type(path: str, key: str, run_id: str) -> Any:
    module_name, _, qualname = path.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError):
        raise SignalError(
            f"Cannot check the payload for {key!r} of run {run_id!r}: its type `{path}` cannot be imported here. "
            f"Pass it: `signal(store, run_id, key, payload, payload_type=...)`."
        ) from None
    return value


async def signal(store: RunStore, run_id: str, key: str, payload: Any, *, payload_type: Any = None) -> None:
    """Answer what a suspended run waits for: check `payload`, store it, and make the run ready.

    The payload is validated against the waiting step's type (imported from where it is
    defined, or `payload_type`). Nothing is stored when it is refused.

    Raises:
        RunNotFound: the store has no such run.
        SignalError: the run does not wait for `key` (the message lists what it waits for),
            or the payload is not valid for the type (with pydantic's account of why).
        RunLocked: a driver is running the run right now.
        RunCancelled: the run was cancelled.
        RunEnded: the run has ended.
    """
    import pydantic

    async with store.lock(run_id):
        _refuse_finished(store, run_id, await store.read(run_id))  # a cancelled or ended run is not answered
        open_waits = {w.key: w for w in await waiting_for(store, run_id)}
        wait = open_waits.get(key)
        if wait is None:
            waits = ", ".join(repr(k) for k in open_waits) or "nothing"
            raise SignalError(f"Run {run_id!r} does not wait for {key!r}; it waits for {waits}.")
        if wait.is_timer:
            raise SignalError(
                f"{key!r} of run {run_id!r} is a timer: it is not signalled, a worker takes the run up when it is due."
            )
        checked_type = payload_type if payload_type is not None else _import_type(wait.payload_type, key, run_id)
        adapter = _adapter(checked_type)
        try:
            value = adapter.validate_python(payload)
        except pydantic.ValidationError as err:
            raise SignalError(
                f"The payload for {key!r} of run {run_id!r} is not a valid `{wait.payload_type}`: {err}",
                errors=err.errors(include_url=False, include_context=False, include_input=False),
            ) from None
        # ready once stored: a driver or worker resumes it, and the answered step goes on
        payload_json = adapter.dump_python(value, mode="json")
        await _append(store, run_id, "signal_received", {"key": key, "payload": payload_json}, RunStatus.WAITING)


async def cancel(store: RunStore, run_id: str, reason: str) -> None:
    """Cancel a run: it stops for good, is never resumed or claimed again, and ends `cancelled`.

    A run no driver holds (waiting, suspended, failed, created) is stored `cancelled` at
    once. A run being driven right now, in this process or another, is asked to stop: its
    driver sees the request at its next step boundary (or within a third of the store's
    lease, while a long step runs), cancels the running steps with an anyio cancellation,
    records the cancellation and raises `RunCancelled`. `cancel` returns once the run is
    cancelled or the request is stored; `store.run(run_id)` shows it `cancelled` once the
    driver has stopped. Resuming a cancelled run raises `RunCancelled`. The run's child
    runs (`ctx.run_child`) that have not finished are cancelled with it.

    Raises:
        RunNotFound: the store has no such run.
        RunEnded: it has ended already (nothing is stored).
        RunCancelled: it was cancelled already (nothing is stored).
        RunLocked: a driver holds it and the store cannot pass a request on to drivers.
    """
    await _cancel_one(store, run_id, reason)
    for child in await _children(store, run_id):  # its child runs (and theirs) stop with it
        try:
            await _cancel_one(store, child, f"its parent run {run_id!r} was cancelled: {reason}")
        except (RunEnded, RunCancelled):
            continue  # finished before: nothing to stop


async def _cancel_one(store: RunStore, run_id: str, reason: str) -> None:
    """Cancel one run: at once if no driver holds it, else by asking its driver."""
    try:
        await _cancel_now(store, run_id, reason)
        return
    except RunLocked:
        request = getattr(store, "request_cancel", None)
        if request is None:
            raise
    _refuse_finished(store, run_id, await store.read(run_id))
    await request(run_id, reason)  # not stored if it finished meanwhile:
    try:
        _refuse_finished(store, run_id, await store.read(run_id))  # then this says so (RunEnded)
    except RunCancelled:
        return  # its driver saw the request and stopped
    try:  # its driver may have let go before it could see the request: then it is cancelled here
        await _cancel_now(store, run_id, reason)
    except RunLocked:
        return  # its driver stops it at its next step boundary
    except RunCancelled:
        return  # cancelled by its driver meanwhile


async def _children(store: RunStore, run_id: str) -> list[str]:
    """The stored child runs of a run, and theirs (`railyard.children`: their ids start with the parent's)."""
    prefix = f"{run_id}.child-"
    return [info.run_id for info in await store.runs() if info.run_id.startswith(prefix)]


async def _cancel_now(store: RunStore, run_id: str, reason: str) -> None:
    """Store a run no driver holds as cancelled.

    Raises:
        RunLocked: a driver holds it.
    """
    async with store.lock(run_id):
        _refuse_finished(store, run_id, await store.read(run_id))
        await _append(store, run_id, "run_cancelled", {"reason": reason}, RunStatus.CANCELLED)


def _refuse_finished(store: RunStore, run_id: str, records: Sequence[StoredRecord]) -> None:
    """Refuse to cancel a run that was cancelled, or has ended.

    Raises:
        RunCancelled: it was cancelled.
        RunEnded: it ended.
    """
    for record in records:
        if record.kind == "run_cancelled":
            raise RunCancelled(run_id, repr(store), json.loads(record.body)["reason"])
    if records and records[-1].status is RunStatus.ENDED:
        raise RunEnded(run_id, repr(store))


async def _append(store: RunStore, run_id: str, kind: str, fields: dict[str, Any], status: RunStatus) -> None:
    """Append one record made outside a run (a signal, a cancellation) in the codec's JSON shape."""
    import pydantic_core

    from railyard.store import StoredRecord

    ts = time()
    body = pydantic_core.to_json({"kind": kind, **fields, "ts": ts}).decode()
    record = StoredRecord(kind=kind, body=body, status=status, node_id=None, finishes_step=False, ts=ts)
    await store.append(run_id, [record])
