"""Tables and values as the commands print them (rich tables for people, JSON for programs)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from rich.console import Console
from rich.table import Table

from railyard.cli._history import Step
from railyard.store import RunInfo

__all__ = ("console", "duration_text", "info_json", "print_runs", "print_steps", "step_line", "to_json", "when")


def console() -> Console:
    """A console on stdout, made when used (so tests capturing stdout see what it prints)."""
    shown = Console(highlight=False, soft_wrap=False)
    if not shown.is_terminal and "COLUMNS" not in os.environ:
        shown.width = 160  # piped or captured: room for whole rows rather than 80 columns of wrapping
    return shown


def to_json(value: Any, *, indent: int | None = None) -> str:
    """`value` as JSON; what JSON cannot hold is shown by its `repr`."""
    return pydantic_core.to_json(value, indent=indent, fallback=repr).decode()


def when(moment: datetime | None) -> str:
    """A time as a person reads it: local, to the second."""
    if moment is None:
        return "-"
    local = moment.astimezone()
    return local.strftime("%H:%M:%S" if local.date() == datetime.now().astimezone().date() else "%Y-%m-%d %H:%M")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def info_json(info: RunInfo) -> dict[str, Any]:
    """A run's summary as a JSON object."""
    return {
        "run_id": info.run_id,
        "graph": info.graph,
        "status": info.status.value,
        "started_at": _iso(info.started_at),
        "updated_at": _iso(info.updated_at),
        "steps": info.steps,
        "last_node": info.last_node,
        "error": info.error,
        "waiting_for": list(info.waiting_for),
        "wake_at": _iso(info.wake_at),
        "owner": info.owner,
        "lease_expires": _iso(info.lease_expires),
        "cancel_requested": info.cancel_requested,
    }


def _note(info: RunInfo) -> str:
    if info.waiting_for:
        return "waits for " + ", ".join(info.waiting_for)
    if info.error:
        return info.error.removeprefix("builtins.")
    if info.cancel_requested:
        return f"cancel requested: {info.cancel_requested}"
    return ""


def print_runs(infos: Sequence[RunInfo]) -> None:
    """The runs as a table: id, graph, status, started, updated, steps, last node, waiting for / error."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "graph", "status", "started", "updated", "steps", "last node", "waiting for / error"):
        last = column.startswith("waiting")
        table.add_column(column, justify="right" if column == "steps" else "left", no_wrap=not last, overflow="fold")
    for info in infos:
        table.add_row(
            info.run_id,
            info.graph or "-",
            info.status.value,
            when(info.started_at),
            when(info.updated_at),
            str(info.steps),
            info.last_node or "-",
            _note(info),
        )
    console().print(table, markup=False)


def _seconds(duration: float | None) -> str:
    if duration is None:
        return "-"
    if duration < 1:
        return f"{duration * 1000:.1f} ms"
    return f"{duration:.2f} s"


def print_steps(steps: Sequence[Step]) -> None:
    """A run's steps as a table: index, node, status, attempt, duration."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("step", "node", "status", "attempt", "duration"):
        table.add_column(column, justify="right" if column in ("step", "attempt", "duration") else "left")
    for step in steps:
        table.add_row(
            str(step.index) if step.index is not None else "-",
            step.node or "-",
            step.status,
            str(step.attempt),
            _seconds(step.duration),
        )
    console().print(table, markup=False)


def duration_text(duration: float | None) -> str:
    """A step's duration as a person reads it."""
    return _seconds(duration)


_SHOWN = 60
"""At most this many characters of a run's end value on its step line."""


def _led_to(body: dict[str, Any]) -> str:
    """What a finished step returned, compactly: `-> Next`, `-> A, B (+3)` for a fan-out, `-> end: value`."""
    end = body.get("end")
    if end is not None:
        value = json.dumps(end.get("data") if isinstance(end, dict) else end, default=str)
        return f"-> end: {value if len(value) <= _SHOWN else value[: _SHOWN - 3] + '...'}"
    nodes = [str(task.get("node_id", "?")) for task in body.get("next_tasks") or [] if isinstance(task, dict)]
    if not nodes:
        return ""
    shown = ", ".join(dict.fromkeys(nodes[:2]))
    return f"-> {shown}" + (f" (+{len(nodes) - 2})" if len(nodes) > 2 else "")


def step_line(kind: str, node: str, body: dict[str, Any], *, item: int | None = None, collected: bool = False) -> str:
    """A finished or failed step as one line: its node, duration, and what it led to or what it raised."""
    took = duration_text(body.get("duration"))
    if kind == "step_finished":
        return f"  {node}  {took}  {_led_to(body)}".rstrip()
    error = body.get("error") or {}
    line = f"  {node}  {took}  failed: {str(error.get('type', '?')).rsplit('.', 1)[-1]}: {error.get('message', '')}"
    if item is not None:
        line += f" (item {item}{', collected' if collected else ''})"
    if body.get("retry_at") is not None:
        line += f" (attempt {body.get('attempt', 1)}; it runs again)"
    return line
