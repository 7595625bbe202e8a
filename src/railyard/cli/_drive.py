"""The commands that run a graph's code: `run`, `resume`, `fork` and `worker`."""

from __future__ import annotations

import contextlib
import json
import signal as signals
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
import typer
from anyio.abc import TaskStatus

from railyard.cli._common import (
    DEFAULT_STORE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_SUSPENDED,
    EXIT_USAGE,
    CliError,
    StoreOption,
    close_store,
    command_line,
    execute,
    open_cli_store,
    write_out,
)
from railyard.cli._executors import ExecutorOption, close_executor, open_executor
from railyard.cli._live import LiveDisplay, StoreTap
from railyard.cli._load import GraphKind, LoadedGraph, load_graph, load_json
from railyard.cli._render import to_json
from railyard.exceptions import RunNotFound
from railyard.store import RunStatus, RunStore
from railyard.suspension import RunSuspended, Waiting

__all__ = ("fork", "resume", "run", "worker")


def _say(text: str) -> None:
    """A progress line: on stderr, so stdout holds only the command's result."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _validated(value: Any, type_: Any, option: str) -> Any:
    import pydantic

    try:
        return pydantic.TypeAdapter(type_).validate_python(value)
    except pydantic.ValidationError as err:
        name = getattr(type_, "__name__", repr(type_))
        raise CliError(f"{option} is not a valid {name}: {err}", EXIT_USAGE) from None


def _start_node(loaded: LoadedGraph, start: str | None) -> Any:
    node_defs: dict[str, Any] = loaded.graph.node_defs
    if start is None:
        for node_def in node_defs.values():
            try:
                return node_def.node()
            except TypeError:
                continue
        raise CliError(
            f"{loaded.spec}: no node starts without arguments: pass --start '{{\"NodeName\": {{...fields}}}}'",
            EXIT_USAGE,
        )
    if start.isidentifier():
        fields: Any = {}
        node_id = start
    else:
        value = load_json(start, "--start")
        if not isinstance(value, dict) or len(value) != 1:
            raise CliError(
                '--start takes a node name or {"NodeName": {...fields}}, one key: the node to start with', EXIT_USAGE
            )
        ((node_id, fields),) = value.items()
    if node_id not in node_defs:
        known = ", ".join(node_defs)
        raise CliError(f"--start: {loaded.spec} has no node {node_id!r}; its nodes are {known}", EXIT_USAGE)
    return _validated(fields, node_defs[node_id].node, "--start")


def _state(state_type: Any, state: str | None) -> Any:
    if state is not None:
        return _validated(load_json(state, "--state"), state_type, "--state")
    if state_type is None or state_type is type(None):
        return None
    try:
        return state_type()
    except TypeError:
        name = getattr(state_type, "__name__", repr(state_type))
        raise CliError(f"the graph's state {name} needs fields: pass --state JSON (or @file)", EXIT_USAGE) from None


def _output(loaded: LoadedGraph, result: Any) -> Any:
    if loaded.kind is GraphKind.NODE:
        return result.output
    if loaded.kind is GraphKind.AGENT:
        return result.data
    return result


def _sample(schema: dict[str, Any]) -> Any:
    """A JSON value of the shape a payload schema asks for, to fill in."""
    samples = {"boolean": True, "string": "", "integer": 0, "number": 0, "array": [], "null": None}
    if schema.get("type") == "object" and "properties" in schema:
        return {key: _sample(value) for key, value in schema["properties"].items()}
    return samples.get(schema.get("type", ""), {})


def _suspended(run_id: str, waits: list[Waiting], store: str, spec: str) -> None:
    for wait in waits:
        if wait.is_timer:
            _say(f"run {run_id} sleeps until {wait.key.removeprefix('timer:')}; a worker carries it on then:")
            _say(f"  {command_line('worker', spec, store=store)}")
            continue
        asked = f" ({wait.prompt})" if wait.prompt else ""
        _say(
            f"run {run_id} is suspended: it waits for {wait.key!r}{asked}, "
            f"an answer of type {wait.payload_type}. Answer it with:"
        )
        payload = json.dumps(_sample(wait.payload_schema))
        _say(f"  {command_line('signal', run_id, wait.key, payload, store=store)}")
    _say(f"then carry it on: {command_line('resume', run_id, '--graph', spec, store=store)}")


async def _drive(
    store: RunStore, run_id: str, go: Callable[[RunStore], Awaitable[Any]], loaded: LoadedGraph, store_url: str
) -> int:
    """Run `go` (a run or resume of `run_id`, through the store it is given), showing it live; return the exit status.

    The display follows the records as they are stored (`StoreTap`): a resumed run's
    earlier records are read once, before it goes on.
    """
    display = LiveDisplay()
    with contextlib.suppress(RunNotFound):  # a new run: not created yet
        display.catch_up(await store.read(run_id))
    tap = StoreTap(store, run_id, display.seen)
    interrupted = False
    outcome: tuple[str, Any] = ("none", None)

    try:
        async with anyio.create_task_group() as group:

            async def on_signal(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
                nonlocal interrupted
                try:
                    receiver = anyio.open_signal_receiver(signals.SIGINT, signals.SIGTERM)
                except (ValueError, NotImplementedError):  # not the main thread, or no signals here
                    task_status.started()
                    return
                with receiver as received:
                    task_status.started()
                    async for _ in received:
                        interrupted = True
                        group.cancel_scope.cancel()
                        return

            await group.start(on_signal)
            display.start()
            group.start_soon(display.follow)
            try:
                outcome = ("ended", await go(tap))
            except RunSuspended as err:
                outcome = ("suspended", err)
            except Exception as err:
                outcome = ("error", err)
            group.cancel_scope.cancel()
    finally:
        display.stop(stopped=interrupted or outcome[0] != "ended")

    if interrupted:
        _say(f"interrupted: run {run_id} stopped and can be resumed with:")
        _say(f"  {command_line('resume', run_id, '--graph', loaded.spec, store=store_url)}")
        return EXIT_INTERRUPTED
    kind, value = outcome
    if kind == "ended":
        write_out(to_json(_output(loaded, value)))
        _say(f"run {run_id} ended")
        return 0
    if kind == "suspended":
        _suspended(run_id, value.waits, store_url, loaded.spec)
        return EXIT_SUSPENDED
    try:
        detail = await store.run(run_id)
    except RunNotFound:
        detail = None
    failure = display.progress.failure  # the step that failed, as its record says
    if detail is not None and detail.error is not None:
        failure = (failure[0] if failure else str(detail.info.last_node), detail.error.type, detail.error.message)
    if detail is None or detail.info.status is not RunStatus.FAILED or failure is None:
        raise value
    node, error_type, message = failure
    _say(f"run {run_id} failed at {node}: {error_type.rsplit('.', 1)[-1]}: {message}")
    _say(f"  see it: {command_line('show', run_id, store=store_url)}")
    _say(f"  after a fix: {command_line('resume', run_id, '--graph', loaded.spec, store=store_url)}")
    return EXIT_FAILED


def run(  # noqa: PLR0917 - a command: typer passes its options by name
    ctx: typer.Context,
    graph: Annotated[str, typer.Argument(help="The graph to run, as MODULE:GRAPH (node, builder or agent).")],
    state: Annotated[str | None, typer.Option(help="The state to start with: JSON, or @file.")] = None,
    inputs: Annotated[str | None, typer.Option(help="A builder graph's inputs: JSON, or @file.")] = None,
    start: Annotated[
        str | None,
        typer.Option(help='A node graph\'s first node: its name, or {"NodeName": {...fields}}.'),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="An agent's prompt.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="The new run's id (default: GRAPH-random).")] = None,
    executor: ExecutorOption = "inline",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Start a durable run of a graph and show each step as it finishes.

    Exit status: 0 the run ended (its output is printed as JSON), 1 it failed, 3 it is
    suspended (the command that answers it is printed), 130 interrupted (it can be resumed).

    Example:
        railyard run myapp.flows:count_down --state '{"counter": 3}' --start CountDown
    """

    async def work() -> int:
        loaded = load_graph(graph)
        if loaded.kind is GraphKind.NODE:
            first = _start_node(loaded, start)
            begin_state = _state(loaded.graph.inferred_types[0], state)
        elif loaded.kind is GraphKind.BUILDER:
            begin_state = _state(loaded.graph.state_type, state)
            begin_inputs = (
                _validated(load_json(inputs, "--inputs"), loaded.graph.input_type, "--inputs") if inputs else None
            )
        elif prompt is None:
            raise CliError(f"{graph} is an agent: pass --prompt TEXT", EXIT_USAGE)
        new_id = run_id or f"{loaded.name or 'run'}-{uuid.uuid4().hex[:8]}"
        opened = open_cli_store(store, create=True)
        where = None
        try:
            where = await open_executor(executor, loaded, opened)

            async def go(tap: RunStore) -> Any:
                if loaded.kind is GraphKind.NODE:
                    return await loaded.graph.run(first, state=begin_state, store=tap, run_id=new_id, executor=where)
                if loaded.kind is GraphKind.BUILDER:
                    return await loaded.graph.run(
                        inputs=begin_inputs, state=begin_state, store=tap, run_id=new_id, executor=where
                    )
                return await loaded.graph.run(prompt, store=tap, run_id=new_id)

            _say(f"run {new_id} of {loaded.name or graph} in {store}")
            return await _drive(opened, new_id, go, loaded, store)
        finally:
            close_executor(where)
            await close_store(opened)

    execute(ctx, work)


GraphOption = Annotated[str, typer.Option("--graph", help="The run's graph, as MODULE:GRAPH: its code carries it on.")]


def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to carry on.")],
    graph: GraphOption,
    executor: ExecutorOption = "inline",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Carry a stored run on to its end with its graph's code (exit statuses as for `run`).

    Example:
        railyard resume order-7 --graph myapp.flows:orders
    """

    async def work() -> int:
        loaded = load_graph(graph)
        opened = open_cli_store(store)
        where = None
        try:
            where = await open_executor(executor, loaded, opened)
            await opened.read(run_id)  # RunNotFound before anything runs
            _say(f"resuming run {run_id} of {loaded.name or graph}")

            def go(tap: RunStore) -> Awaitable[Any]:
                if loaded.kind is GraphKind.AGENT:
                    return loaded.graph.resume(tap, run_id)  # type: ignore[no-any-return]
                return loaded.graph.resume(tap, run_id, executor=where)  # type: ignore[no-any-return]

            return await _drive(opened, run_id, go, loaded, store)
        finally:
            close_executor(where)
            await close_store(opened)

    execute(ctx, work)


def fork(  # noqa: PLR0917 - a command: typer passes its options by name
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to fork.")],
    at: Annotated[int, typer.Option("--at", help="The step to fork at (0: the run's start).")],
    graph: GraphOption,
    new_run_id: Annotated[str | None, typer.Option("--new-run-id", help="The new run's id.")] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Start a new run from a step of a stored run (the old run is unchanged); print its id.

    Example:
        railyard fork order-7 --at 2 --graph myapp.flows:orders
    """

    async def work() -> int:
        loaded = load_graph(graph)
        opened = open_cli_store(store)
        try:
            try:
                new_id: str = await loaded.graph.fork(opened, run_id, at, new_run_id=new_run_id)
            except ValueError as err:
                raise CliError(str(err), EXIT_FAILED) from None
            write_out(new_id)
            _say(f"forked run {run_id} at step {at}; carry it on with:")
            _say(f"  {command_line('resume', new_id, '--graph', graph, store=store)}")
            return 0
        finally:
            await close_store(opened)

    execute(ctx, work)


def worker(  # noqa: PLR0917 - a command: typer passes its options by name
    ctx: typer.Context,
    graphs: Annotated[list[str], typer.Argument(help="The graphs whose runs it drives, as MODULE:GRAPH.")],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Drive up to this many runs at once.")] = 1,
    grace: Annotated[
        float, typer.Option("--grace", help="On SIGTERM, seconds the runs in hand get to finish before release.")
    ] = 30.0,
    idle_timeout: Annotated[
        float | None, typer.Option("--idle-timeout", help="Stop once no run was ready for this many seconds.")
    ] = None,
    max_runs: Annotated[int | None, typer.Option("--max-runs", help="Stop after driving this many runs.")] = None,
    branches: Annotated[
        int,
        typer.Option(
            "--branches",
            help="Also run up to this many branch tasks at once (PostgreSQL; with --concurrency 0: only those).",
        ),
    ] = 0,
    queue: Annotated[
        list[str] | None, typer.Option("--queue", help="Take branch tasks of this queue only (repeatable).")
    ] = None,
    executor: ExecutorOption = "inline",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Claim ready runs of the graphs and drive up to --concurrency of them at once, until stopped.

    On SIGTERM or Ctrl-C the worker claims no more runs and gives the runs it drives
    --grace seconds to finish; a second signal (or the end of the grace) releases them
    where they stand, resumable by any worker (a step in flight runs again from its start).

    With --branches N (PostgreSQL) it also claims branch tasks of the graphs' steps (runs
    started with --executor branches[:QUEUE]) and runs up to N of them at once.

    Example:
        railyard worker myapp.flows:orders myapp.flows:refunds --concurrency 8 --store postgresql://localhost/app
    """

    async def work() -> int:
        from railyard.worker import Worker

        loaded = [load_graph(spec) for spec in graphs]
        opened = open_cli_store(store, create=True)
        where = None
        try:
            where = await open_executor(executor, None, opened)
            try:
                pool = Worker(
                    [g.graph for g in loaded],
                    opened,
                    concurrency=concurrency,
                    max_runs=max_runs,
                    idle_timeout=idle_timeout,
                    grace=grace,
                    branches=branches,
                    queues=queue or None,
                    executor=where,
                )
            except ValueError as err:
                raise CliError(str(err), EXIT_USAGE) from None
            signalled = 0
            async with anyio.create_task_group() as group:

                async def on_signal(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
                    nonlocal signalled
                    with anyio.open_signal_receiver(signals.SIGINT, signals.SIGTERM) as received:
                        task_status.started()
                        async for _ in received:
                            signalled += 1
                            if signalled == 1:
                                held = len(pool.driving)
                                _say(
                                    f"worker: stopping: no more claims; {held} run(s) in hand get {grace:g} s "
                                    "to finish (signal again to release them now)"
                                )
                                pool.stop()
                            else:
                                _say("worker: releasing the runs in hand now")
                                pool.stop(grace=0)

                async def drive() -> None:
                    await pool.run()
                    group.cancel_scope.cancel()

                await group.start(on_signal)
                names = ", ".join(g.name or g.spec for g in loaded)
                tasks = f", running up to {branches} branch task(s) at once" if branches else ""
                _say(f"worker: driving up to {concurrency} run(s) at once of {names}{tasks} in {store}")
                group.start_soon(drive)
        finally:
            close_executor(where)
            await close_store(opened)
        driven = pool.driven
        if signalled:
            _say("worker: stopped; a run it released can be resumed by any worker")
        _say(f"worker: drove {len(driven)} run(s)" + (f": {', '.join(driven)}" if driven else ""))
        return 0

    execute(ctx, work)
