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
from dataclasses import dataclass
from time import time
from typing import TYPE_CHECKING, Any, TypeVar

from railyard.exceptions import GraphRuntimeError, PersistenceError, RailyardError
from railyard.store.records import RunStatus

if TYPE_CHECKING:
    from railyard.store import RunStore

__all__ = (
    "RunSuspended",
    "SignalError",
    "WaitRequested",
    "Waiting",
    "cancel",
    "signal",
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


class WaitRequested(BaseException):
    """Raised by `wait_for` inside a step to suspend the run (a `BaseException`, so `except Exception` passes it)."""

    def __init__(self, key: str, payload_type: Any, prompt: str | None) -> None:
        super().__init__(key)
        self.key = key
        self.payload_type = payload_type
        self.prompt = prompt


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
    """A signal cannot be delivered: the run does not wait for that key, or the payload is not valid."""


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
) -> T:
    """The payload a signal delivered for `key` to this step, validated; else suspend the run.

    Raises:
        WaitRequested: no answer yet (the loop stores the wait and suspends the run).
        GraphRuntimeError: the run is not durable, so it could not be resumed with an answer.
    """
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
    raise WaitRequested(key, payload_type, prompt)


def waiting_of(kind: str, body: dict[str, Any], open_waits: dict[str, Waiting]) -> None:
    """Bring `open_waits` up to date with one stored record (by its kind and JSON body)."""
    if kind == "step_suspended":
        open_waits[body["key"]] = Waiting(
            body["key"], body["task_id"], body["payload_type"], body["payload_schema"], body["prompt"]
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
    """
    import pydantic

    async with store.lock(run_id):
        open_waits = {w.key: w for w in await waiting_for(store, run_id)}
        wait = open_waits.get(key)
        if wait is None:
            waits = ", ".join(repr(k) for k in open_waits) or "nothing"
            raise SignalError(f"Run {run_id!r} does not wait for {key!r}; it waits for {waits}.")
        checked_type = payload_type if payload_type is not None else _import_type(wait.payload_type, key, run_id)
        adapter = _adapter(checked_type)
        try:
            value = adapter.validate_python(payload)
        except pydantic.ValidationError as err:
            raise SignalError(
                f"The payload for {key!r} of run {run_id!r} is not a valid `{wait.payload_type}`: {err}"
            ) from None
        # ready once stored: a driver or worker resumes it, and the answered step goes on
        payload_json = adapter.dump_python(value, mode="json")
        await _append(store, run_id, "signal_received", {"key": key, "payload": payload_json}, RunStatus.WAITING)


async def cancel(store: RunStore, run_id: str, reason: str) -> None:
    """Cancel a run no driver holds (waiting, suspended, failed or created): it is never resumed or claimed again.

    The run is stored `cancelled` with `reason`; resuming it raises `RunCancelled`.

    Raises:
        RunNotFound: the store has no such run.
        RunLocked: a driver is running it right now (cancel it between its drives).
        RunEnded: it has ended already (nothing is stored).
        RunCancelled: it was cancelled already (nothing is stored).
    """
    from railyard.exceptions import RunCancelled, RunEnded

    async with store.lock(run_id):
        records = await store.read(run_id)
        for record in records:
            if record.kind == "run_cancelled":
                raise RunCancelled(run_id, repr(store), json.loads(record.body)["reason"])
        if records and records[-1].status is RunStatus.ENDED:
            raise RunEnded(run_id, repr(store))
        await _append(store, run_id, "run_cancelled", {"reason": reason}, RunStatus.CANCELLED)


async def _append(store: RunStore, run_id: str, kind: str, fields: dict[str, Any], status: RunStatus) -> None:
    """Append one record made outside a run (a signal, a cancellation) in the codec's JSON shape."""
    import pydantic_core

    from railyard.store import StoredRecord

    ts = time()
    body = pydantic_core.to_json({"kind": kind, **fields, "ts": ts}).decode()
    record = StoredRecord(kind=kind, body=body, status=status, node_id=None, finishes_step=False, ts=ts)
    await store.append(run_id, [record])
