"""`BranchExecutor`: a run's steps (or the ones you name) as branch tasks in PostgreSQL.

The loop hands each step attempt to the executor; this one writes it as a row of
`railyard_tasks` (`railyard.store._postgres_tasks`) and waits for a branch worker's
answer, so the loop records each branch's result as it comes, exactly as in process:
the driver keeps the run's log, workers only run steps. A task is named by its run,
step id and attempt: a driver restarted mid-map submits the same tasks again and gets
the answers of those that finished meanwhile without running them again.

The executor's database work runs on a thread of its own (`railyard._branch_client`):
the run's event loop only waits on futures.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from railyard._branch_client import BranchClient, NotDurable
from railyard._step_codec import (
    StepCode,
    StepLost,
    ValueCannotCross,
    apply_state,
    bind_elsewhere,
    code_of,
    dump,
    error_from_json,
    load,
    load_result,
    wait_future,
)
from railyard.exceptions import GraphRuntimeError
from railyard.runtime._executor import StepCall, StepFunction
from railyard.store.postgres import PostgresStore

__all__ = ("BranchExecutor",)

logger = logging.getLogger("railyard.branches")

WHERE = "as a branch task"


@dataclass(slots=True)
class _Bound:
    """What one run of an executor holds: each step's code."""

    codes: dict[tuple[Any, ...], StepCode] = field(default_factory=dict[tuple[Any, ...], StepCode])


class BranchExecutor:
    """Runs a durable run's steps as branch tasks in PostgreSQL, for branch workers on any machine.

    ```python
    store = PostgresStore("postgresql://...")
    executor = BranchExecutor(store, steps=["summarise"], queue="summaries", concurrency=16)
    await graph.run(inputs=documents, store=store, executor=executor)
    # elsewhere, as many as you like:  railyard worker app:graph --store postgresql://... --branches 4
    ```

    Each attempt of a chosen step becomes one task row in the queue; a worker started
    with branch slots (`run_worker(..., branches=N)`, `railyard worker --branches N`)
    claims it, runs the step with its own copy of the graph and its own `deps`, and
    writes the answer, which the driver reads back and records like any step's:

    - The run must be stored in the same PostgreSQL database (`store=` on `run`); the
      workers need the graph by the run's graph name.
    - Inputs, the result and the state cross as JSON through pydantic, by the step's
      annotated types (as for `RayExecutor`); a value that cannot cross fails the step with
      `ValueCannotCross`, never retried. Dependencies do not cross: the worker's own are used.
    - The step's exception comes back as itself when its class is imported in the driver
      and its arguments are JSON; otherwise as `RemoteStepError` with its type, message and
      the worker's traceback. The step's retry policy decides, as for any error.
    - A worker that dies or is cut off loses its tasks once their lease runs out (the
      store's `lease`); another worker takes them, up to `max_claims` times in all; then the
      attempt fails with `StepLost`.
    - Cancelling the wait cancels the task: a worker running it stops it at its next lease
      renewal, and its answer is never delivered.
    - `concurrency` is the queue's limit over all workers and runs (set in the database
      when this executor first submits; `None` leaves the queue's limit as it is, no limit
      for a new queue); `max_in_flight` bounds the tasks of one run not yet answered.

    Streaming steps and anything the loop runs itself (forks, joins, decisions) stay in the
    driver, and so do steps not in `steps` when it is given. Close the executor (or use it
    as a context manager) to end its thread and sessions; the process ending does too.
    """

    def __init__(
        self,
        store: PostgresStore,
        steps: Collection[str] | None = None,
        *,
        queue: str = "default",
        concurrency: int | None = None,
        max_in_flight: int | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        """Send every step to branch workers (`steps=None`), or only those named.

        Args:
            store: The PostgreSQL store the runs are stored in (its database holds the tasks).
            steps: The node ids of the steps that run as branch tasks; `None`: every step.
            queue: The queue the tasks go in (workers may take some queues only).
            concurrency: At most this many tasks of the queue run at once, over every worker.
            max_in_flight: At most this many tasks of one run not yet answered.
            poll_interval: Seconds between looks for answers a notification did not bring.

        Raises:
            TypeError: `store` is not a `PostgresStore`, or `steps` is one string.
            ValueError: a number is out of range, or the queue name is empty.
        """
        if not isinstance(store, PostgresStore):
            raise TypeError(
                f"BranchExecutor needs the PostgresStore the runs are stored in (its database holds the tasks), "
                f"got {store!r}"
            )
        if isinstance(steps, str):
            raise TypeError(f"BranchExecutor(steps=...) takes node ids, not one string: write steps=[{steps!r}]")
        for name, value in (("concurrency", concurrency), ("max_in_flight", max_in_flight)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"BranchExecutor({name}=...) must be a whole number of at least 1 or None, got {value!r}"
                )
        if not isinstance(queue, str) or not queue:
            raise ValueError(f"BranchExecutor(queue=...) must be a name, got {queue!r}")
        if not poll_interval > 0:
            raise ValueError(f"BranchExecutor(poll_interval={poll_interval!r}): a number of seconds, more than 0")
        self.store = store
        """The store whose database holds the runs and their tasks."""
        self.steps: frozenset[str] | None = None if steps is None else frozenset(steps)
        """The steps that run as branch tasks, by node id (`None`: every step)."""
        self.queue = queue
        """The queue the tasks go in."""
        self.concurrency = concurrency
        """The queue's limit over all workers (`None`: left as the database has it)."""
        self.max_in_flight = max_in_flight
        """At most this many tasks of one run not yet answered (`None`: no limit of the executor's own)."""
        self._client = BranchClient(store.conninfo, queue, concurrency, poll_interval)

    def bind(self, run: StepFunction) -> StepFunction:
        """The function the loop calls per step attempt: it queues the chosen steps, runs the rest here."""
        bound = _Bound()
        steps = self.steps
        return bind_elsewhere(
            run, lambda node_id: steps is None or node_id in steps, self.max_in_flight, lambda c: self._remote(c, bound)
        )

    async def _remote(self, call: StepCall, bound: _Bound) -> Any:
        """Queue one attempt, wait for its answer, apply its state, give its result."""
        if call.run_id is None:
            raise NotDurable(
                f"Step `{call.node_id}` runs as a branch task, but its run is not stored: branch workers find a "
                f"task's run in the database. Give the run the PostgreSQL store: run(..., store=store)."
            )
        code = self._code(call, bound)
        try:
            state_json = None if code.state_type is None else dump(call.node_id, "state", code.state_type, call.state)
            inputs = dump(call.node_id, "inputs", code.input_type, call.inputs)
        except ValueCannotCross as err:
            raise err.moved("BranchExecutor") from None
        payload = {
            "inputs": inputs,
            "state": state_json,
            "step_id": call.step_id,
            "run_id": call.run_id,
            "attempt": call.attempt,
        }
        row = {
            "run_id": call.run_id,
            "step_id": call.step_id,
            "attempt": call.attempt,
            "node_id": call.node_id,
            "payload": payload,
        }
        future = self._client.submit(row)
        try:
            await wait_future(future)
        except BaseException:  # cancelled (or failed) while it waits: the task is cancelled, its answer unread
            self._client.cancel(future)
            raise
        if future.cancelled():
            raise GraphRuntimeError(
                f"Step `{call.node_id}` ({call.step_id}) was waiting for its branch task when {self!r} was closed"
            )
        got = future.result()
        if got.state == "done":
            try:
                result = load_result(code, got.answer["result"])
                if "state" in got.answer:
                    new_state = load(call.node_id, "state", code.state_type, got.answer["state"])
                    apply_state(call, state_json, new_state, got.answer["state"])
            except ValueCannotCross as err:
                raise err.moved("BranchExecutor") from None
            return result
        if got.state == "failed":
            error = error_from_json(call.node_id, call.step_id, got.answer["error"], f"on branch worker {got.owner}")
            if isinstance(error, ValueCannotCross):
                error = error.moved("BranchExecutor")
            raise error
        if got.state == "lost":
            claims = got.answer.get("claims") if isinstance(got.answer, dict) else None
            holder = got.answer.get("lost") if isinstance(got.answer, dict) else None
            raise StepLost(
                call.node_id,
                call.step_id,
                f"its lease ran out {claims} times, the last time held by {holder}",
                WHERE,
            )
        raise StepLost(call.node_id, call.step_id, "its task was cancelled by someone else", WHERE)

    def _code(self, call: StepCall, bound: _Bound) -> StepCode:
        state_type = None if call.state is None else call.state_type
        what: Any = call.function if call.function is not None else type(call.inputs)
        key = (call.node_id, what, state_type)
        made = bound.codes.get(key)
        if made is None:
            made = bound.codes[key] = code_of(call)
        return made

    def close(self) -> None:
        """End the executor's thread and sessions.

        Steps still waiting for their tasks fail (`GraphRuntimeError`); the tasks' rows stay as
        they are, so a resume of their runs gets their answers.
        """
        self._client.close()

    def __enter__(self) -> BranchExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        parts = [repr(self.store)]
        if self.steps is not None:
            parts.append(f"steps={sorted(self.steps)!r}")
        parts.append(f"queue={self.queue!r}")
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency}")
        if self.max_in_flight is not None:
            parts.append(f"max_in_flight={self.max_in_flight}")
        return f"BranchExecutor({', '.join(parts)})"
