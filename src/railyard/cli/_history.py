"""A run's steps and states read straight from its stored records, without the graph's code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from railyard.store import StatePatchError as PatchError
from railyard.store import StateReader as StateRebuild
from railyard.store import StoredRecord

__all__ = ("Step", "StepStates", "read_history", "state_changes")


@dataclass(frozen=True, slots=True)
class Step:
    """One finished, failed or suspended attempt at a step, in the order the log has them."""

    index: int | None
    """The step's number among the run's finished steps (1 on), as `fork --at` counts them; `None` unless finished."""
    node: str | None
    """The node (or builder step) that ran."""
    status: str
    """`finished`, `failed` (an attempt raised), `suspended` (it waits for a signal) or `running`."""
    attempt: int
    """Which attempt at the task this was (1 on)."""
    duration: float | None
    """How long it ran, in seconds, when the log says."""
    task_id: str
    """The task's id (stable across re-runs of one step)."""
    started: float | None = None
    """When the attempt started (a POSIX timestamp), when the log says."""
    ended: float | None = None
    """When it finished, failed or suspended (a POSIX timestamp); `None` while it runs."""


@dataclass(slots=True)
class StepStates:
    """The run's state after each finished step: `states[0]` the state it started with (JSON values)."""

    states: list[Any] = field(default_factory=list)
    """The state after step `n` at index `n`; `None` where a run keeps no state."""
    error: str | None = None
    """Why states could not be rebuilt from some record on (a damaged or partial log)."""


def read_history(records: Sequence[StoredRecord]) -> tuple[list[Step], StepStates]:
    """The steps a run took and its state after each, from its stored records."""
    steps: list[Step] = []
    states = StepStates()
    rebuild = StateRebuild()
    state: Any = None
    node_of: dict[str, str] = {}
    failures: dict[str, int] = {}
    running: dict[str, str | None] = {}
    started_at: dict[str, float] = {}
    finished = 0
    for record in records:
        body: dict[str, Any] = json.loads(record.body)
        if states.error is None and ("state" in body or "state_patch" in body):
            try:
                state = rebuild.decode(body)
            except PatchError as err:
                states.error = str(err)
        kind = record.kind
        if kind in ("tasks_scheduled", "join_closed"):
            for task in body.get("tasks", body.get("next_tasks", [])):
                node_of[task["task_id"]] = task["node_id"]
            if not states.states:
                states.states.append(state)
        elif kind == "step_started":
            running[body["task_id"]] = record.node_id
            started_at[body["task_id"]] = record.ts
        elif kind in ("step_finished", "step_failed", "step_suspended"):
            task_id = body.get("task_id", "")
            node = body.get("node_id") or record.node_id or node_of.get(task_id)
            running.pop(task_id, None)
            began = started_at.pop(task_id, None)
            attempt = failures.get(task_id, 0) + 1
            if kind == "step_finished":
                finished += 1
                steps.append(Step(finished, node, "finished", attempt, body.get("duration"), task_id, began, record.ts))
                for task in body.get("next_tasks", []):
                    node_of[task["task_id"]] = task["node_id"]
                if not states.states:
                    states.states.append(None)
                states.states.append(state)
            elif kind == "step_failed":
                failures[task_id] = attempt
                steps.append(Step(None, node, "failed", attempt, body.get("duration"), task_id, began, record.ts))
            else:
                steps.append(Step(None, node, "suspended", attempt, None, task_id, began, record.ts))
    for task_id, node in running.items():
        attempt = failures.get(task_id, 0) + 1
        began = started_at.get(task_id)
        steps.append(Step(None, node or node_of.get(task_id), "running", attempt, None, task_id, began))
    if not states.states:
        states.states.append(state)
    return steps, states


def state_changes(before: Any, after: Any, path: str = "") -> list[tuple[str, str, Any, Any]]:
    """What changed from one JSON state to the next: `(path, change, old, new)`, change `+`, `-` or `~`."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[tuple[str, str, Any, Any]] = []
        for key, value in after.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in before:
                changes.append((where, "+", None, value))
            elif before[key] != value:
                changes.extend(state_changes(before[key], value, where))
        for key, value in before.items():
            if key not in after:
                changes.append((f"{path}.{key}" if path else str(key), "-", value, None))
        return changes
    if before == after:
        return []
    return [(path or "(state)", "~", before, after)]
