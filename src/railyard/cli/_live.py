"""What `railyard run` and `resume` show while a run moves: its steps, and a progress bar per fan-out.

The display is made from the run's records as they are stored (`StoreTap` sees each
commit of the run it drives), so it shows only what is durable and never re-reads the log.
Steps outside a fan-out get one line each; the items of a fan-out (a builder map's items,
or a broadcast's branches) are counted instead — done, running, queued, failed — on a
live bar in a terminal, or on an occasional plain line when stderr is a pipe or a file.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from railyard.cli._render import duration_text, step_line
from railyard.store import RunDetail, RunInfo, RunStatus, RunStore, StoredRecord

__all__ = ("FanOut", "ItemState", "LiveDisplay", "RunProgress", "StoreTap", "fan_out_line")

_START = "__start__"
"""The fork id of the frame every builder task runs in: the run itself, not a fan-out."""

_FAILURES_SHOWN = 3
"""A fan-out's first failed items get a line each; the bar counts the rest."""

_QUIET = 10.0
"""Seconds after which a plain display says how a fan-out stands even if no tenth more is done."""


# -- watching what is stored ------------------------------------------------------------------


Seen = Callable[[Sequence[StoredRecord]], None]
"""Told the records of the watched run once they are stored (it must not block: it runs inside the store's write)."""


class StoreTap:
    """A run store that tells `seen` what it stored for one run, after storing it.

    Everything else is the wrapped store's own; the runtime drives the run through it.
    """

    def __init__(self, store: RunStore, run_id: str, seen: Seen) -> None:
        self.wrapped = store
        """The store the records go to."""
        self._run_id = run_id
        self._seen = seen

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create a run in the wrapped store; the watched run's records are told once stored."""
        await self.wrapped.create(run_id, records)
        if run_id == self._run_id:
            self._seen(records)

    async def append(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Append to a run in the wrapped store; the watched run's records are told once stored."""
        await self.wrapped.append(run_id, records)
        if run_id == self._run_id:
            self._seen(records)

    async def read(self, run_id: str) -> Sequence[StoredRecord]:
        """The wrapped store's `read`."""
        return await self.wrapped.read(run_id)

    async def runs(
        self,
        *,
        status: RunStatus | Collection[RunStatus] | None = None,
        graph: str | Collection[str] | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Sequence[RunInfo]:
        """The wrapped store's `runs`."""
        return await self.wrapped.runs(status=status, graph=graph, since=since, until=until, limit=limit, cursor=cursor)

    async def delete(self, run_id: str) -> None:
        """The wrapped store's `delete`."""
        await self.wrapped.delete(run_id)

    async def prune(
        self, *, older_than: timedelta | float, status: RunStatus | Collection[RunStatus] | None = None
    ) -> list[str]:
        """The wrapped store's `prune`."""
        if status is None:
            return await self.wrapped.prune(older_than=older_than)
        return await self.wrapped.prune(older_than=older_than, status=status)

    async def request_cancel(self, run_id: str, reason: str) -> None:
        """The wrapped store's `request_cancel`."""
        await self.wrapped.request_cancel(run_id, reason)

    async def run(self, run_id: str) -> RunDetail:
        """The wrapped store's `run`."""
        return await self.wrapped.run(run_id)

    def lock(self, run_id: str) -> AbstractAsyncContextManager[None]:
        """The wrapped store's `lock`."""
        return self.wrapped.lock(run_id)

    async def claim(
        self,
        *,
        statuses: Collection[RunStatus] | None = None,
        exclude: Collection[str] = (),
        graphs: Collection[str | None] | None = None,
    ) -> str | None:
        """The wrapped store's `claim`."""
        if statuses is None:
            return await self.wrapped.claim(exclude=exclude, graphs=graphs)
        return await self.wrapped.claim(statuses=statuses, exclude=exclude, graphs=graphs)

    async def release_claim(self, run_id: str) -> None:
        """The wrapped store's `release_claim`."""
        await self.wrapped.release_claim(run_id)

    async def aclose(self) -> None:
        """The wrapped store's `aclose`."""
        await self.wrapped.aclose()

    def __getattr__(self, name: str) -> Any:  # a backend's extras (its lease, heartbeat, ...): Any as theirs
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return repr(self.wrapped)


# -- what the records say -------------------------------------------------------------------


class ItemState(StrEnum):
    """Where one item (one branch) of a fan-out stands."""

    QUEUED = "queued"
    """None of its steps has started."""
    RUNNING = "running"
    """A step of it runs, or it is part-way (a step finished, the next not started)."""
    WAITING = "waiting"
    """A step of it is suspended, waiting for a signal."""
    DONE = "done"
    """Every step of it finished."""
    FAILED = "failed"
    """A step of it failed for good."""


class _Task(StrEnum):
    """Where one task of a fan-out stands (each value names the `_Item` count it adds to)."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _Item:
    """One branch of a fan-out: how many of its tasks stand where."""

    pending: int = 0
    running: int = 0
    waiting: int = 0
    done: int = 0
    failed: int = 0

    @property
    def state(self) -> ItemState:
        if self.failed:
            return ItemState.FAILED
        if self.waiting:
            return ItemState.WAITING
        if self.running or (self.pending and self.done):
            return ItemState.RUNNING
        return ItemState.QUEUED if self.pending else ItemState.DONE


@dataclass
class FanOut:
    """One fan-out of a run (one execution of a map or broadcast), counted by item."""

    key: str
    """The fork's run id: what its items' fork stacks name."""
    fork_id: str
    """The fork's node id."""
    expected: int | None = None
    """How many items a map was given (`None`: not known, the items are counted as they come)."""
    began: float = 0.0
    """When its first items were made (a POSIX timestamp, from the record that made them)."""
    ended: float | None = None
    """When it closed (a POSIX timestamp), once it has."""
    nodes: dict[str, None] = field(default_factory=dict[str, None])
    """The nodes its items ran, in the order first seen (but joins)."""
    joins: set[str] = field(default_factory=set[str])
    """The joins its items meet at: it is over when one closes."""
    items: dict[int, _Item] = field(default_factory=dict[int, _Item])
    """Its items made into tasks so far, by index."""
    counts: dict[ItemState, int] = field(default_factory=lambda: dict.fromkeys(ItemState, 0))
    """How many of its known items stand where."""
    failures_shown: int = 0
    """How many of its failed items got a line."""
    closed: bool = False
    """Whether it is over: its join closed, or every item it was given is done or failed."""

    @property
    def label(self) -> str:
        """What it is called on its bar: the fork, and the first two nodes its items run."""
        return f"{self.fork_id} -> {', '.join(list(self.nodes)[:2]) or ', '.join(sorted(self.joins)) or '?'}"

    @property
    def total(self) -> int:
        """How many items it has (as far as known)."""
        return max(self.expected or 0, len(self.items))

    def count(self, state: ItemState) -> int:
        """How many items stand at `state` (items not made into tasks yet are queued)."""
        unmade = self.total - len(self.items) if state is ItemState.QUEUED else 0
        return self.counts[state] + unmade

    @property
    def settled(self) -> int:
        """How many items are done or failed."""
        return self.counts[ItemState.DONE] + self.counts[ItemState.FAILED]


def fan_out_line(fan_out: FanOut, *, ending: str = "") -> str:
    """A fan-out as one plain line: `map -> double: 300/1000 done, 16 running, 684 queued, 0 failed`."""
    done = fan_out.count(ItemState.DONE)
    failed = fan_out.count(ItemState.FAILED)
    if fan_out.closed:
        took = duration_text((fan_out.ended or fan_out.began) - fan_out.began)
        also = f", {failed} failed" if failed else ""
        return f"  {fan_out.label}: {done}/{fan_out.total} done{also} in {took}"
    parts = [f"{done}/{fan_out.total} done", f"{fan_out.count(ItemState.RUNNING)} running"]
    if waiting := fan_out.count(ItemState.WAITING):
        parts.append(f"{waiting} waiting")
    parts += [f"{fan_out.count(ItemState.QUEUED)} queued", f"{failed} failed"]
    return f"  {fan_out.label}: {', '.join(parts)}{ending}"


def _collected_failure(tasks: Any) -> dict[str, Any] | None:
    """The `ItemFailure` a step's next task carries (a map that collects errors), if any."""
    for task in tasks:
        inputs = task.get("inputs") if isinstance(task, dict) else None
        if isinstance(inputs, dict) and inputs.get("kind") == "item_failure":
            return inputs
    return None


def _frames(task: dict[str, Any]) -> list[tuple[str, str, int]]:
    frames: list[tuple[str, str, int]] = []
    for frame in task.get("fork_stack") or ():
        if isinstance(frame, dict):
            frames.append((str(frame.get("fork_id")), str(frame.get("node_run_id")), int(frame.get("thread_index", 0))))
        elif isinstance(frame, list) and len(frame) == 3:
            frames.append((str(frame[0]), str(frame[1]), int(frame[2])))
    return frames


class RunProgress:
    """A run's steps and fan-outs, followed record by record (no I/O: `LiveDisplay` shows it).

    After `feed`, `told` holds what to print (step lines, and the fan-outs that closed,
    in order) and `changed` the open fan-outs whose counts moved; the display takes them.
    """

    def __init__(self) -> None:
        self.told: list[str | FanOut] = []
        """What to print next, in order: step lines, and fan-outs that closed (a line each)."""
        self.changed: dict[str, FanOut] = {}
        """Fan-outs whose counts changed since they were last shown, by key."""
        self.fan_outs: dict[str, FanOut] = {}
        """The open fan-outs, by key."""
        self.running: dict[str, str] = {}
        """Steps outside fan-outs that run now: node id by task id."""
        self.failure: tuple[str, str, str] | None = None
        """The last step that failed for good: its node, its error's type and message."""
        self._tasks: dict[str, tuple[FanOut, int, str]] = {}
        self._states: dict[str, _Task] = {}
        self._kinds: dict[str, str] = {}
        self._expected: dict[str, int] = {}
        self._over: dict[str, FanOut] = {}

    def feed(self, records: Sequence[StoredRecord]) -> None:
        """Follow `records`, the run's next ones in the order they were stored."""
        for record in records:
            try:
                body = json.loads(record.body)
            except ValueError:
                continue  # a damaged record: the run's driver says so, not its display
            if isinstance(body, dict):
                self._follow(record, body)

    def _follow(self, record: StoredRecord, body: dict[str, Any]) -> None:
        kind = record.kind
        if kind == "run_created":
            shape = body.get("shape") or {}
            nodes = shape.get("nodes") if isinstance(shape, dict) else None
            if isinstance(nodes, dict):
                self._kinds.update({str(k): str(v.get("kind")) for k, v in nodes.items() if isinstance(v, dict)})
        elif kind == "tasks_scheduled":
            for replaced in body.get("replaces") or ():
                self._forget(str(replaced))
            self._made(body.get("tasks") or (), record.ts)
        elif kind == "step_started":
            self._move(str(body.get("task_id")), _Task.RUNNING, record.node_id)
        elif kind == "step_finished":
            task_id = str(body.get("task_id"))
            node = str(body.get("node_id") or record.node_id or "?")
            next_tasks = body.get("next_tasks") or ()
            self._made(next_tasks, record.ts)
            if not self._move(task_id, _Task.DONE, node, record.ts):
                self.told.append(step_line(kind, node, body))
            elif collected := _collected_failure(next_tasks):
                self._collected(task_id, node, body, collected)
        elif kind == "step_failed":
            self._failed(record, body)
        elif kind == "step_suspended":
            self._move(str(body.get("task_id")), _Task.WAITING, record.node_id)
        elif kind == "join_closed":
            self._made(body.get("next_tasks") or (), record.ts)
            join_id = str(body.get("join_id"))
            for fan_out in list(self.fan_outs.values()):
                if join_id in fan_out.joins:
                    self._close(fan_out, record.ts)

    def _failed(self, record: StoredRecord, body: dict[str, Any]) -> None:
        task_id = str(body.get("task_id"))
        node = str(record.node_id or "?")
        final = body.get("retry_at") is None
        inside = self._tasks.get(task_id)
        if final:
            error = body.get("error") or {}
            self.failure = (node, str(error.get("type", "?")), str(error.get("message", "")))
        self._move(task_id, _Task.FAILED if final else _Task.PENDING, node, record.ts)
        if inside is None:
            self.told.append(step_line("step_failed", node, body))
        elif final and inside[0].failures_shown < _FAILURES_SHOWN:
            inside[0].failures_shown += 1
            self.told.append(step_line("step_failed", node, body, item=inside[1]))

    def _collected(self, task_id: str, node: str, body: dict[str, Any], failure: dict[str, Any]) -> None:
        """A map item's step failed and its failure went on to the join (`on_error="collect"`)."""
        fan_out, index, _ = self._tasks[task_id]
        if fan_out.closed:
            return
        self._adjust(fan_out, index, _Task.FAILED, +1)
        if fan_out.failures_shown < _FAILURES_SHOWN:
            fan_out.failures_shown += 1
            error = {"type": failure.get("error_type", "?"), "message": failure.get("message", "")}
            self.told.append(step_line("step_failed", node, {**body, "error": error}, item=index, collected=True))

    def _made(self, tasks: Any, ts: float) -> None:
        for task in tasks:
            if not isinstance(task, dict):
                continue
            task_id, node = str(task.get("task_id")), str(task.get("node_id"))
            inputs = task.get("inputs")
            if self._kinds.get(node) == "map" and isinstance(inputs, list):
                self._expected[task_id] = len(inputs)
            frames = [frame for frame in _frames(task) if frame[0] != _START]
            if not frames:
                continue
            fork_id, key, index = frames[0]
            fan_out = self.fan_outs.get(key) or self._over.get(key)
            if fan_out is None:
                fan_out = self.fan_outs[key] = FanOut(key, fork_id, self._expected.pop(key, None), began=ts)
            if self._kinds.get(node) == "join":
                if len(frames) == 1:  # it meets its siblings there (a nested fan-out's join is not its own)
                    fan_out.joins.add(node)
            else:
                fan_out.nodes.setdefault(node, None)
            self._tasks[task_id] = (fan_out, index, node)
            if not fan_out.closed:
                self._states[task_id] = _Task.PENDING
                self._adjust(fan_out, index, _Task.PENDING, +1)

    def _move(self, task_id: str, to: _Task, node: str | None, ts: float = 0.0) -> bool:
        """Move a task of a fan-out to `to`; `False` if the task is not in a fan-out."""
        inside = self._tasks.get(task_id)
        if inside is None:
            if to is _Task.RUNNING:
                self.running[task_id] = node or "?"
            else:
                self.running.pop(task_id, None)
            return False
        fan_out, index, _ = inside
        if fan_out.closed:
            return True
        was = self._states.get(task_id)
        if was is not None:
            self._adjust(fan_out, index, was, -1)
        self._states[task_id] = to
        self._adjust(fan_out, index, to, +1)
        if to in (_Task.DONE, _Task.FAILED) and fan_out.expected is not None and fan_out.settled >= fan_out.expected:
            self._close(fan_out, ts)
        return True

    def _forget(self, task_id: str) -> None:
        inside = self._tasks.pop(task_id, None)
        was = self._states.pop(task_id, None)
        if inside is not None and was is not None:
            self._adjust(inside[0], inside[1], was, -1)

    def _adjust(self, fan_out: FanOut, index: int, where: _Task, by: int) -> None:
        item = fan_out.items.get(index)
        if item is None:
            item = fan_out.items[index] = _Item()
            fan_out.counts[item.state] += 1
        before = item.state
        setattr(item, where, getattr(item, where) + by)
        after = item.state
        if after is not before:
            fan_out.counts[before] -= 1
            fan_out.counts[after] += 1
        if not fan_out.closed:
            self.changed[fan_out.key] = fan_out

    def _close(self, fan_out: FanOut, ts: float) -> None:
        if fan_out.closed:
            return
        fan_out.closed, fan_out.ended = True, ts
        self.fan_outs.pop(fan_out.key, None)
        self.changed.pop(fan_out.key, None)
        self.told.append(fan_out)
        self._over[fan_out.key] = fan_out  # a late record of one of its tasks is not a step line of its own


# -- showing it -----------------------------------------------------------------------------


@dataclass
class _Shown:
    """How far a plain display has told a fan-out."""

    tenths: int = -1
    at: float = 0.0
    line: str = ""


class LiveDisplay:
    """Shows a run's progress on stderr while it is driven; `stdout` is left to the result.

    In an interactive terminal, fan-outs are live bars (and the steps outside fan-outs that
    are running, a spinner each) under the step lines; otherwise, each fan-out gets a line
    when it starts, at each tenth of its items done (or after a quiet while), and when it
    closes. `start`, then run `follow` in a task and give `seen` to a `StoreTap`; `stop`
    shows what is left and ends the live part.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        """Where it shows (stderr by default)."""
        self.interactive = self.console.is_terminal and not self.console.is_dumb_terminal
        """Whether it draws live bars (a terminal) or writes plain lines."""
        self.progress = RunProgress()
        """What the records said so far."""
        self._queued: list[StoredRecord] = []
        self._wake = anyio.Event()
        self._bars = Progress(
            TextColumn("  {task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._spinners = Progress(
            TextColumn(" "),
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._bar_ids: dict[str, TaskID] = {}
        self._spinner_ids: dict[str, TaskID] = {}
        self._plain: dict[str, _Shown] = {}
        self._live: Live | None = None

    def seen(self, records: Sequence[StoredRecord]) -> None:
        """Take the run's newly stored records (shown by the display's task, not here)."""
        self._queued.extend(records)
        self._wake.set()

    def catch_up(self, records: Sequence[StoredRecord]) -> None:
        """Follow records stored before the display started, printing no step line for them."""
        self.progress.feed(records)
        self.progress.told.clear()
        self.progress.failure = None  # an earlier attempt's: not what this one may fail with

    def say(self, text: str) -> None:
        """Print a line above the live part (or plainly)."""
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    async def follow(self) -> None:
        """Show records as they are stored, until cancelled (`flush` shows what is left)."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            self.flush()
            await anyio.sleep(0.02)  # let a few commits gather: fewer, larger updates

    def flush(self) -> None:
        """Show every record stored so far."""
        records, self._queued = self._queued, []
        progress = self.progress
        progress.feed(records)
        for told in progress.told:
            if isinstance(told, FanOut):
                self._drop(told)
                self.say(fan_out_line(told))
            else:
                self.say(told)
        progress.told.clear()
        for fan_out in progress.changed.values():
            self._show(fan_out)
        progress.changed.clear()
        if self.interactive:
            self._show_running()

    def start(self) -> None:
        """Start showing: in a terminal, the live part begins (a resumed run's open fan-outs are on it at once)."""
        if self.interactive:
            self._live = Live(
                _Both(self._spinners, self._bars),
                console=self.console,
                refresh_per_second=10,
                transient=True,
                redirect_stdout=False,  # stdout holds the run's result, nothing else
                redirect_stderr=True,
            )
        for fan_out in self.progress.fan_outs.values():
            self._show(fan_out)
        if self._live is not None:
            self._live.start(refresh=True)

    def stop(self, *, stopped: bool) -> None:
        """End the live part; fan-outs still open get a last line (`stopped`: the run stopped mid-way)."""
        self.flush()
        live, self._live = self._live, None
        if live is not None:
            live.stop()
        for fan_out in self.progress.fan_outs.values():
            self.say(fan_out_line(fan_out, ending=" when the run stopped" if stopped else ""))
        self.progress.fan_outs.clear()

    def _show(self, fan_out: FanOut) -> None:
        if self.interactive:
            detail = f"{fan_out.count(ItemState.RUNNING)} running"
            if waiting := fan_out.count(ItemState.WAITING):
                detail += f" · {waiting} waiting"
            detail += f" · {fan_out.count(ItemState.QUEUED)} queued · {fan_out.count(ItemState.FAILED)} failed"
            done = fan_out.count(ItemState.DONE)
            bar = self._bar_ids.get(fan_out.key)
            if bar is None:
                self._bar_ids[fan_out.key] = self._bars.add_task(
                    fan_out.label, total=fan_out.total, completed=done, detail=detail
                )
            else:
                self._bars.update(bar, description=fan_out.label, total=fan_out.total, completed=done, detail=detail)
            return
        shown = self._plain.setdefault(fan_out.key, _Shown())
        tenths = 10 * fan_out.settled // max(fan_out.total, 1)
        now = time.monotonic()
        line = fan_out_line(fan_out)
        if tenths > shown.tenths or (now - shown.at >= _QUIET and line != shown.line):
            shown.tenths, shown.at, shown.line = max(tenths, shown.tenths), now, line
            self.say(line)

    def _drop(self, fan_out: FanOut) -> None:
        bar = self._bar_ids.pop(fan_out.key, None)
        if bar is not None:
            self._bars.remove_task(bar)
        self._plain.pop(fan_out.key, None)

    def _show_running(self) -> None:
        running = self.progress.running
        for task_id in [t for t in self._spinner_ids if t not in running]:
            self._spinners.remove_task(self._spinner_ids.pop(task_id))
        for task_id, node in running.items():
            if task_id not in self._spinner_ids:
                self._spinner_ids[task_id] = self._spinners.add_task(f"{node} running")


class _Both:
    """The live part: spinners for running steps, then the fan-outs' bars (each only if it has rows)."""

    def __init__(self, spinners: Progress, bars: Progress) -> None:
        self.spinners = spinners
        self.bars = bars

    def __rich__(self) -> RenderableType:
        parts = [part for part in (self.spinners, self.bars) if part.tasks]
        return Group(*parts)
