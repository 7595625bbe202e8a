"""What the pages show, read from a store: a run's diagram with its path, its timeline, its steps.

Everything here works from the stored records alone, so the inspector shows any run of
any graph without importing its code: the diagram is drawn from the graph's shape that
each run records when it is created (`run_created.shape`), unless the graph itself was
given to the inspector, whose own diagram is then used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from railyard.cli._history import Step
from railyard.store import RunStatus, StoredRecord

__all__ = (
    "Bar",
    "Timeline",
    "diagram_of",
    "first_node",
    "highlighted",
    "path_of",
    "shape_of",
    "timeline_of",
)

_SAFE = re.compile(r"[^A-Za-z0-9_]")

_KIND_MARK = {"fork": "<<fork>>", "map": "<<fork>>", "join": "<<join>>", "decision": "<<choice>>"}

_STYLES = (
    "  classDef visited fill:#dbeafe,stroke:#1d4ed8,color:#1e3a8a\n"
    "  classDef current fill:#fde68a,stroke:#b45309,stroke-width:3px,color:#78350f\n"
    "  classDef failed fill:#fecaca,stroke:#b91c1c,stroke-width:3px,color:#7f1d1d\n"
)


def shape_of(records: Sequence[StoredRecord]) -> dict[str, Any] | None:
    """The graph shape the run's latest `run_created` record holds, if any."""
    for record in reversed(records):
        if record.kind == "run_created":
            body = json.loads(record.body)
            shape = body.get("shape") if isinstance(body, dict) else None
            return shape if isinstance(shape, dict) else None
    return None


def first_node(records: Sequence[StoredRecord]) -> str | None:
    """The node the run's first scheduled task ran."""
    for record in records:
        if record.kind == "tasks_scheduled":
            tasks = json.loads(record.body).get("tasks") or []
            if tasks and isinstance(tasks[0], dict):
                node = tasks[0].get("node_id")
                return str(node) if node is not None else None
    return None


def _mermaid_id(node_id: str) -> str:
    safe = _SAFE.sub("_", node_id)
    return safe if safe and not safe[0].isdigit() else f"n_{safe}"


def _targets(edge: str, nodes: Mapping[str, Any]) -> str | None:
    """The node a stored edge leads to: its last part that names a node (or `End`)."""
    for part in reversed(edge.split(">")):
        if part in nodes or part == "End":
            return part
    return None


def diagram_of(shape: Mapping[str, Any], start: str | None) -> str:
    """A mermaid state diagram of a stored graph shape (node ids made safe for mermaid)."""
    nodes: Mapping[str, Any] = shape.get("nodes") or {}
    lines = ["stateDiagram-v2"]
    terminal = {node_id for node_id, node in nodes.items() if node.get("kind") in ("start", "end")}
    for node_id, node in nodes.items():
        if node_id in terminal:
            continue
        safe = _mermaid_id(node_id)
        mark = _KIND_MARK.get(str(node.get("kind")))
        if mark:
            lines.append(f"  state {safe} {mark}")
        elif safe != node_id:
            lines.append(f'  state "{_label(node_id)}" as {safe}')
        else:
            lines.append(f"  {safe}")
    lines.append("")
    if shape.get("api") == "node" and start is not None and start in nodes:
        lines.append(f"  [*] --> {_mermaid_id(start)}")
    for node_id, node in nodes.items():
        source = "[*]" if node_id in terminal else _mermaid_id(node_id)
        if node.get("kind") == "end":
            continue
        for edge in node.get("edges") or ():
            target = _targets(str(edge), nodes)
            if target is None:
                continue
            ends = target == "End" or (nodes.get(target) or {}).get("kind") == "end"
            lines.append(f"  {source} --> {'[*]' if ends else _mermaid_id(target)}")
    return "\n".join(lines) + "\n"


def _label(node_id: str) -> str:
    """A node id as a mermaid label: no quotes or markup can leave it."""
    return re.sub(r"[\"<>#;&]", "_", node_id)


def highlighted(code: str, visited: Iterable[str], current: Iterable[str], failed: Iterable[str]) -> str:
    """A mermaid diagram with the visited, current and failed nodes styled.

    Node ids go through the same making-safe as `diagram_of`; a graph's own diagram uses
    its node ids as they are, which are safe already.
    """
    groups = {"visited": list(visited), "current": list(current), "failed": list(failed)}
    drawn = {_mermaid_id(node) for members in groups.values() for node in members}
    if not drawn:
        return code
    text = code.rstrip("\n") + "\n\n" + _STYLES
    taken: set[str] = set()
    for name in ("failed", "current", "visited"):  # one class a node: the most telling one
        members = [safe for safe in dict.fromkeys(_mermaid_id(n) for n in groups[name]) if safe not in taken]
        taken.update(members)
        if members:
            text += f"  class {','.join(members)} {name}\n"
    return text


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt at a step on the timeline."""

    step: Step
    """The attempt."""
    lane: int
    """Its row: attempts that overlap in time sit in rows of their own (parallel branches side by side)."""
    left: float
    """Where it starts, as a percentage of the timeline's width."""
    width: float
    """How long it ran, as a percentage of the timeline's width (at least a sliver)."""


@dataclass(frozen=True, slots=True)
class Timeline:
    """A run's attempts laid out in time."""

    bars: list[Bar]
    """The attempts shown."""
    lanes: int
    """How many rows they take."""
    seconds: float
    """How long the shown part of the run took, first start to last end."""
    hidden: int
    """Attempts left out (the earliest), so that a huge fan-out keeps the page small."""


MAX_BARS = 400
"""At most this many attempts are drawn on a timeline (the latest ones)."""

MAX_LANES = 24
"""At most this many rows: beyond it, attempts share the last row."""


def timeline_of(steps: Sequence[Step], now: float) -> Timeline:
    """The attempts with a start time, in rows so that none overlaps another in its row."""
    timed = [step for step in steps if step.started is not None]
    hidden = max(0, len(timed) - MAX_BARS)
    timed = sorted(timed, key=lambda s: s.started or 0.0)[hidden:]
    if not timed:
        return Timeline([], 0, 0.0, hidden)
    begin = min(step.started or 0.0 for step in timed)
    end = max(_finish(step, now) for step in timed)
    span = max(end - begin, 1e-6)
    lane_ends: list[float] = []
    bars: list[Bar] = []
    for step in timed:
        start = step.started or begin
        finish = _finish(step, now)
        lane = next((i for i, free in enumerate(lane_ends) if free <= start), None)
        if lane is None:
            if len(lane_ends) < MAX_LANES:
                lane_ends.append(finish)
                lane = len(lane_ends) - 1
            else:
                lane = MAX_LANES - 1
        lane_ends[lane] = max(lane_ends[lane], finish)
        left = 100.0 * (start - begin) / span
        width = max(100.0 * (finish - start) / span, 0.4)
        bars.append(Bar(step, lane, round(left, 3), round(min(width, 100.0 - left + 0.4), 3)))
    return Timeline(bars, len(lane_ends), span, hidden)


def _finish(step: Step, now: float) -> float:
    """When an attempt's own work ended: its start plus how long it ran, else when it was recorded."""
    if step.started is not None and step.duration is not None:
        return step.started + step.duration
    return step.ended if step.ended is not None else now


def path_of(steps: Sequence[Step], status: RunStatus) -> tuple[list[str], list[str], list[str]]:
    """The nodes a run visited, the ones it is at now, and the one it failed at."""
    visited = [step.node for step in steps if step.node and step.status == "finished"]
    live = {"running", "suspended"}
    current = [step.node for step in steps if step.node and step.status in live]
    failed: list[str] = []
    if status is RunStatus.FAILED:
        failed = [step.node for step in steps[-1:] if step.node and step.status == "failed"]
    keep = [node for node in visited if not node.startswith("__")]
    return keep, [n for n in current if not n.startswith("__")], failed
