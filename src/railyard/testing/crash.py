"""Crash-test a durable graph: kill its process at random moments, resume, compare.

```python
report = await crash_test("my_app.crash:subject", "sqlite:///tmp/runs.db", trials=20)
```

`target` names a function `subject(workdir: Path) -> CrashSubject` in an importable
module: the graph (a node-API `Graph` or a builder `Graph`), where it starts (a node, or
the builder's `inputs`), the initial state and the dependencies (which may write side
effects under `workdir`). For each trial the harness starts the run in a new process,
kills it with SIGKILL at a random moment, resumes it in another new process, and checks
the guarantee against an uninterrupted reference run:

- a node graph's finished steps (each step's node and the state after it) are exactly
  the reference's, in order; a builder graph's steps may finish in another order when
  its branches run at once, so its finished steps (each step's node and inputs) are the
  reference's as a multiset, and its final state and output are the reference's;
- no step finished twice, and the only steps started again are those that were running
  when the process died (for a node graph, at most the one step in flight).

A failed check raises `AssertionError` naming the trial. The worker is this module run
as a program: `python -m railyard.testing.crash worker TARGET STORE_URL RUN_ID WORKDIR`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from railyard.durable import read_run
from railyard.exceptions import RunNotFound
from railyard.graph import Graph
from railyard.nodes import BaseNode
from railyard.store import RunStore
from railyard.store.codec import RecordCodec
from railyard.store.records import RunEndRecorded, RunRecord, StepFinished, StepStarted
from railyard.store.urls import open_store

if TYPE_CHECKING:
    from railyard.builder.graph import Graph as BuilderGraph

__all__ = ("CrashReport", "CrashSubject", "CrashTrial", "crash_test")


@dataclass
class CrashSubject:
    """What a crash test runs: a graph, where it starts, and what it starts with."""

    graph: Graph[Any, Any, Any] | BuilderGraph[Any, Any, Any, Any]
    """The graph to run: a node-API graph or a builder graph."""
    start: BaseNode[Any, Any, Any] | None = None
    """The node a node-API run starts from."""
    state: Any = None
    """The initial state."""
    deps: Any = None
    """The dependencies, the same in every process."""
    inputs: Any = None
    """What a builder run starts with."""


@dataclass
class CrashTrial:
    """One kill and resume."""

    run_id: str
    """The run's id in the store."""
    killed: bool
    """Whether the first process was still running when it was killed."""
    kill_after: float
    """Seconds after the run started that the kill was sent."""
    finished_before_kill: int
    """Steps finished when the process died."""
    restarted_steps: list[str] = field(default_factory=list[str])
    """Ids of steps started again after the kill (the step in flight, if any)."""
    torn_records: int = 0
    """Records cut short by the kill (skipped, as they must be)."""


@dataclass
class CrashReport:
    """The outcome of `crash_test`: every trial passed its checks."""

    store_url: str
    """The store the runs were kept in."""
    steps: int
    """Steps in the uninterrupted reference run."""
    reference_seconds: float
    """How long an uninterrupted run took, from its start to its end (the faster of two)."""
    trials: list[CrashTrial]
    """The trials, in order."""

    @property
    def kills_mid_run(self) -> int:
        """Trials whose process was killed while the run was going on."""
        return sum(1 for trial in self.trials if trial.killed and trial.finished_before_kill < self.steps)


def load_subject(target: str, workdir: Path) -> CrashSubject:
    """Import `module:function` and call it with `workdir`."""
    module_name, _, function = target.partition(":")
    factory: Callable[[Path], CrashSubject] = getattr(importlib.import_module(module_name), function)
    return factory(workdir)


def _codec(subject: CrashSubject) -> RecordCodec:
    graph = subject.graph
    if isinstance(graph, Graph):
        state_type, run_end_type = graph.inferred_types
        return RecordCodec(graph.get_nodes(), state_type, run_end_type)
    from railyard.builder._durable import builder_codec

    return builder_codec(graph)


async def _drive(subject: CrashSubject, store_url: str, run_id: str) -> None:
    """The worker: start the run (or resume it if it exists) and drive it to its end."""
    store = open_store(store_url)
    graph = subject.graph
    try:
        exists = True
        try:
            await store.read(run_id)
        except RunNotFound:
            exists = False
        context: AbstractAsyncContextManager[AsyncIterator[Any]]
        if exists:
            context = graph.iter_resume(store, run_id, deps=subject.deps)
        elif isinstance(graph, Graph):
            if subject.start is None:
                raise TypeError(f"CrashSubject of node graph {graph.name!r} needs a start node")
            context = graph.iter(
                subject.start, state=subject.state, deps=subject.deps, store=store, run_id=run_id, infer_name=False
            )
        else:
            context = graph.iter(
                state=subject.state,
                deps=subject.deps,
                inputs=subject.inputs,
                store=store,
                run_id=run_id,
                infer_name=False,
            )
        async with context as run:
            print("started", flush=True)
            async for _ in run:
                pass
        print("ended", flush=True)
    finally:
        await store.aclose()


def _worker(target: str, store_url: str, run_id: str, workdir: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "railyard.testing.crash", "worker", target, store_url, run_id, workdir]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_started(process: subprocess.Popen[str], timeout: float) -> float:
    """Wait for the worker's `started` line; return when it came."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.strip() != "started":
        process.kill()
        _, err = process.communicate(timeout=timeout)
        raise AssertionError(f"the crash-test worker failed to start its run: {line!r}\n{err}")
    return time.perf_counter()


def _wait_ended(process: subprocess.Popen[str]) -> float:
    """Wait for the worker's `ended` line (or its exit); return when it came."""
    assert process.stdout is not None
    process.stdout.readline()
    return time.perf_counter()


def _reap(process: subprocess.Popen[str], timeout: float) -> None:
    process.communicate(timeout=timeout)


def _finish(process: subprocess.Popen[str], timeout: float, what: str) -> None:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise AssertionError(f"the crash-test worker ({what}) exited with {process.returncode}:\n{out}\n{err}")


async def _records(store: RunStore, run_id: str, codec: RecordCodec) -> tuple[list[RunRecord], int]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = await read_run(store, run_id, codec)
    return records, len(caught)


def _finished_steps(records: Sequence[RunRecord], codec: RecordCodec, *, sequential: bool) -> list[tuple[str, Any]]:
    """Each finished step, in order: its node id and the state after it (as JSON).

    For a graph whose steps run at once (`sequential=False`), the step's inputs instead
    of the state after it (the state between steps depends on the order they finish in),
    and the final state as a last entry.
    """
    tasks: dict[str, dict[str, Any]] = {}
    steps: list[tuple[str, Any]] = []
    final: Any = None
    for record in records:
        dumped = codec.dump(record)
        for task in dumped.get("tasks", []) + dumped.get("next_tasks", []):
            tasks[task["task_id"]] = task
        if isinstance(record, StepFinished) and record.task_id:
            task = tasks.get(record.task_id, {})
            node_id = task.get("node_id", record.task_id.split(":")[1] if record.task_id.startswith("join:") else "?")
            steps.append((node_id, dumped["state"] if sequential else task.get("inputs")))
            final = dumped["state"]
    if sequential:
        return steps
    ordered = sorted(steps, key=repr)
    return [*ordered, ("final state", final)]


async def crash_test(
    target: str,
    store_url: str,
    *,
    trials: int = 20,
    workdir: Path | None = None,
    seed: int | None = None,
    worker_timeout: float = 120.0,
) -> CrashReport:
    """Kill and resume a durable run `trials` times and check that nothing is lost or repeated.

    Raises:
        AssertionError: a trial broke the guarantee (or a worker failed); the message says how.
    """
    rng = random.Random(seed)
    base = Path(workdir) if workdir is not None else Path.cwd() / ".railyard-crash"
    base.mkdir(parents=True, exist_ok=True)
    subject = load_subject(target, base / "reference")
    codec = _codec(subject)
    store = open_store(store_url)
    try:
        stamp = f"{os.getpid()}-{rng.randrange(1 << 30):x}"
        reference_id = f"crash-reference-{stamp}"
        timeout = worker_timeout
        # the reference run, then one more (a warm machine runs faster than the first run did):
        # kills are timed by the faster of the two, the run itself, not the interpreter's exit
        timings: list[float] = []
        for run_id, folder in ((reference_id, "reference"), (f"crash-calibration-{stamp}", "calibration")):
            process = _worker(target, store_url, run_id, str(base / folder))
            started = await anyio.to_thread.run_sync(_wait_started, process, timeout)
            ended = await anyio.to_thread.run_sync(_wait_ended, process)
            await anyio.to_thread.run_sync(_finish, process, timeout, f"{folder} run")
            timings.append(ended - started)
        reference_seconds = min(timings)
        reference, _ = await _records(store, reference_id, codec)
        sequential = isinstance(subject.graph, Graph)
        expected = _finished_steps(reference, codec, sequential=sequential)

        steps = len(expected) if sequential else len(expected) - 1  # less the final state
        report = CrashReport(store_url, steps, reference_seconds, [])
        for index in range(trials):
            run_id = f"crash-{stamp}-{index}"
            trial_dir = str(base / f"trial-{index}")
            first = _worker(target, store_url, run_id, trial_dir)
            began = await anyio.to_thread.run_sync(_wait_started, first, timeout)
            # within the first three quarters of the reference's time: a kill lands mid-run even
            # when this process runs a little faster than the reference did
            delay = rng.uniform(0.0, 0.75 * reference_seconds)
            await anyio.sleep(max(0.0, began + delay - time.perf_counter()))
            killed = first.poll() is None
            if killed:
                first.send_signal(signal.SIGKILL)
            await anyio.to_thread.run_sync(_reap, first, timeout)
            before, torn = await _records(store, run_id, codec)
            finished_before = {r.task_id for r in before if isinstance(r, StepFinished) and r.task_id}
            started_before = [r.task_id for r in before if isinstance(r, StepStarted)]

            if not any(isinstance(r, StepFinished | RunEndRecorded) and r.end is not None for r in before):
                second = _worker(target, store_url, run_id, trial_dir)
                await anyio.to_thread.run_sync(_wait_started, second, timeout)
                await anyio.to_thread.run_sync(_finish, second, timeout, f"resume of trial {index}")
            after, _ = await _records(store, run_id, codec)
            trial = CrashTrial(run_id, killed, delay, len(finished_before), torn_records=torn)
            _check_trial(
                trial,
                index=index,
                expected=expected,
                after=after,
                finished_before=finished_before,
                started_before=started_before,
                codec=codec,
                sequential=sequential,
            )
            report.trials.append(trial)
        return report
    finally:
        await store.aclose()


def _check_trial(
    trial: CrashTrial,
    *,
    index: int,
    expected: list[tuple[str, Any]],
    after: Sequence[RunRecord],
    finished_before: set[str],
    started_before: list[str],
    codec: RecordCodec,
    sequential: bool,
) -> None:
    got = _finished_steps(after, codec, sequential=sequential)
    where = f"trial {index} (run {trial.run_id}, killed after {trial.kill_after:.4f}s)"
    assert len(got) == len(expected), f"{where}: {len(got)} finished steps, the reference has {len(expected)}"
    for number, (step, reference) in enumerate(zip(got, expected, strict=True), start=1):
        assert step == reference, f"{where}: step {number} is {step}, the reference's is {reference}"
    finished = [r.task_id for r in after if isinstance(r, StepFinished) and r.task_id]
    assert len(finished) == len(set(finished)), f"{where}: a step finished twice"
    restarted = [task_id for task_id in [r.task_id for r in after if isinstance(r, StepStarted)][len(started_before) :]]
    again = [task_id for task_id in restarted if task_id in started_before]
    assert not set(again) & finished_before, f"{where}: a finished step ran again: {set(again) & finished_before}"
    if sequential:
        assert len(set(again)) <= 1, f"{where}: more than the one step in flight ran again: {again}"
    trial.restarted_steps = sorted(set(again))


def main(argv: Sequence[str]) -> int:
    """`python -m railyard.testing.crash worker TARGET STORE_URL RUN_ID WORKDIR`."""
    if len(argv) != 5 or argv[0] != "worker":
        print("usage: python -m railyard.testing.crash worker TARGET STORE_URL RUN_ID WORKDIR", file=sys.stderr)
        return 2
    _, target, store_url, run_id, workdir = argv
    Path(workdir).mkdir(parents=True, exist_ok=True)
    asyncio.run(_drive(load_subject(target, Path(workdir)), store_url, run_id))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
