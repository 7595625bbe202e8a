"""The commands that read a store: `runs`, `show` and `diagram`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
import typer

from railyard.cli._common import (
    DEFAULT_STORE,
    EXIT_USAGE,
    CliError,
    StoreOption,
    close_store,
    execute,
    open_cli_store,
    write_out,
)
from railyard.cli._history import read_history, state_changes
from railyard.cli._load import GraphKind, load_graph
from railyard.cli._render import info_json, print_runs, print_steps, to_json, when
from railyard.store import RunStatus
from railyard.suspension import waiting_for

__all__ = ("diagram", "parse_age", "parse_statuses", "runs", "show")

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str, option: str) -> timedelta:
    """`30m`, `2h`, `7d`, `45s`, `1w` as a duration.

    Raises:
        CliError: the text is none of these.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise CliError(f"{option} {text!r}: give a duration like 45s, 30m, 2h, 7d or 1w", EXIT_USAGE)
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def _moment(text: str, option: str) -> datetime:
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*[smhdw]\s*", text):
        return datetime.now(UTC) - parse_age(text, option)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{option} {text!r}: give a time (2025-01-31T12:00) or how long ago (30m, 2h, 7d)", EXIT_USAGE
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def parse_statuses(values: list[str] | None, option: str = "--status") -> list[RunStatus] | None:
    """Status names as `RunStatus` values.

    Raises:
        CliError: a name is not a status.
    """
    if not values:
        return None
    statuses: list[RunStatus] = []
    for value in values:
        try:
            statuses.append(RunStatus(value.strip().lower()))
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise CliError(f"{option} {value!r} is not a run status: use one of {known}", EXIT_USAGE) from None
    return statuses


def runs(  # noqa: PLR0917 - a command: typer passes its options by name
    ctx: typer.Context,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only runs with this status (repeat for several).")
    ] = None,
    graph: Annotated[str | None, typer.Option("--graph", help="Only runs of the graph with this name.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only runs started since: an ISO time, or 30m, 2h, 7d ago.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many runs, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one array) instead of a table.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """List the runs in a store: id, graph, status, times, steps, last node, what it waits for or its error.

    Example:
        railyard runs --status suspended --status failed --since 2h
    """

    async def work() -> None:
        statuses = parse_statuses(status)
        begin = _moment(since, "--since") if since else None
        opened = open_cli_store(store)
        try:
            infos = await opened.runs(status=statuses, graph=graph, since=begin, limit=limit)
        finally:
            await close_store(opened)
        if as_json:
            write_out(to_json([info_json(info) for info in infos], indent=2))
        elif infos:
            print_runs(infos)
        else:
            write_out("no runs")

    execute(ctx, work)


def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to show.")],
    step: Annotated[
        int | None, typer.Option("--step", help="Show the state after this step (0: the start) and what it changed.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Show one run: its summary, one row per step, the state at a step and its change, errors and waits.

    States are rebuilt from what the store holds (whole states and changes), as JSON,
    without the graph's code.

    Example:
        railyard show order-7 --step 2
    """

    async def work() -> None:
        opened = open_cli_store(store)
        try:
            detail = await opened.run(run_id)
            records = await opened.read(run_id)
            waits = await waiting_for(opened, run_id)
        finally:
            await close_store(opened)
        steps, states = read_history(records)
        at = len(states.states) - 1 if step is None else step
        if not 0 <= at < len(states.states):
            raise CliError(
                f"run {run_id!r} has steps 0 to {len(states.states) - 1}; --step {step} is not one of them", EXIT_USAGE
            )
        state = states.states[at]
        changes = state_changes(states.states[at - 1], state) if at > 0 else []
        info = detail.info
        if as_json:
            shown: dict[str, Any] = {
                **info_json(info),
                "attempts": detail.attempts,
                "cancel_reason": detail.cancel_reason,
                "error": (
                    {"type": detail.error.type, "message": detail.error.message, "traceback": detail.error.traceback}
                    if detail.error
                    else None
                ),
                "waits": [{"key": w.key, "prompt": w.prompt, "payload_type": w.payload_type} for w in waits],
                "steps": [
                    {
                        "step": s.index,
                        "node": s.node,
                        "status": s.status,
                        "attempt": s.attempt,
                        "duration": s.duration,
                        "task_id": s.task_id,
                    }
                    for s in steps
                ],
                "state_step": at,
                "state": state,
                "changes": [{"path": p, "change": c, "old": o, "new": n} for p, c, o, n in changes],
                "state_error": states.error,
            }
            write_out(to_json(shown, indent=2))
            return
        lines = [
            f"run {info.run_id}  graph {info.graph or '-'}  status {info.status.value}",
            f"started {when(info.started_at)}  updated {when(info.updated_at)}  "
            f"{info.steps} steps  last node {info.last_node or '-'}",
        ]
        if detail.attempts:
            lines.append(f"failed attempts run again: {detail.attempts}")
        if detail.cancel_reason:
            lines.append(f"cancelled: {detail.cancel_reason}")
        if info.cancel_requested:
            lines.append(f"cancel requested: {info.cancel_requested}")
        if info.owner:
            lines.append(f"driven by {info.owner} (lease until {when(info.lease_expires)})")
        write_out("\n".join(lines))
        if steps:
            print_steps(steps)
        write_out(f"state after step {at}:" if at else "state at the start:")
        write_out("  " + to_json(state, indent=2).replace("\n", "\n  "))
        if at > 0:
            write_out(f"changed by step {at}:" if changes else f"step {at} changed nothing in the state")
            for path, change, old, new in changes:
                if change == "+":
                    write_out(f"  + {path} = {to_json(new)}")
                elif change == "-":
                    write_out(f"  - {path} (was {to_json(old)})")
                else:
                    write_out(f"  ~ {path}: {to_json(old)} -> {to_json(new)}")
        if states.error:
            write_out(f"(states after some record could not be rebuilt: {states.error})")
        for wait in waits:
            asked = f" ({wait.prompt})" if wait.prompt else ""
            write_out(f"waits for {wait.key!r}{asked}: an answer of type {wait.payload_type}")
        if detail.error is not None:
            write_out(f"error: {detail.error.type}: {detail.error.message}")
            write_out(detail.error.traceback.rstrip())

    execute(ctx, work)


def _visited(records_nodes: list[str | None]) -> list[str]:
    seen: dict[str, None] = {}
    for node in records_nodes:
        if node and not node.startswith("__"):
            seen[node] = None
    return list(seen)


def diagram(  # noqa: PLR0917 - a command: typer passes its options by name
    ctx: typer.Context,
    graph: Annotated[str, typer.Argument(help="The graph to draw, as MODULE:GRAPH (node, builder or agent).")],
    run: Annotated[str | None, typer.Option("--run", help="Highlight the nodes this run visited.")] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write it to a file: .md (a mermaid block), .mmd (the text), .svg or .png (an image).",
        ),
    ] = None,
    renderer: Annotated[
        str,
        typer.Option(
            "--renderer",
            help="How images are drawn: chromium (here, no network), service (mermaid.ink or RAILYARD_MERMAID_URL), "
            "auto (chromium when Playwright and a Chromium are installed).",
        ),
    ] = "auto",
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Print a graph's mermaid diagram; with `--run`, the nodes a run visited are highlighted.

    Images (`-o FILE.svg` or `.png`) are drawn in a headless Chromium with the mermaid that
    ships with railyard (needs Playwright and Chromium), or by a mermaid rendering service.

    An agent is drawn as the graph its runs run: its prompt, model request and tool call nodes.

    Example:
        railyard diagram myapp.flows:orders --run order-7 -o orders.md
    """

    async def work() -> None:
        loaded = load_graph(graph)
        if loaded.kind is GraphKind.NODE:
            code: str = loaded.graph.mermaid_code()
        elif loaded.kind is GraphKind.BUILDER:
            code = loaded.graph.render(title=loaded.name)
        else:  # an agent's run is a run of its node graph (the agent loop), under the agent's name
            from railyard.agent import UserPromptNode
            from railyard.agent._graph import named_agent_graph

            code = named_agent_graph(loaded.name).mermaid_code(start_node=UserPromptNode, title=loaded.name)
        if run is not None:
            opened = open_cli_store(store)
            try:
                records = await opened.read(run)
            finally:
                await close_store(opened)
            nodes = _visited([r.node_id for r in records if r.kind in ("step_finished", "step_started", "step_failed")])
            if nodes:
                code = (
                    code.rstrip("\n") + "\n\n  classDef visited fill:#fdff32\n  class " + ",".join(nodes) + " visited\n"
                )
        if output is None:
            write_out(code)
            return
        await _write_diagram(output, code, renderer)

    execute(ctx, work)


_IMAGES = ("svg", "png")
_SERVICE_IMAGES = ("svg", "png", "pdf", "jpeg", "webp")


async def _write_diagram(output: Path, code: str, renderer: str) -> None:
    suffix = output.suffix.lower().lstrip(".")
    if renderer not in ("auto", "chromium", "service"):
        raise CliError(f"--renderer {renderer!r}: use auto, chromium or service", EXIT_USAGE)
    if suffix == "md":
        await anyio.Path(output).write_text(f"```mermaid\n{code.rstrip()}\n```\n", encoding="utf-8")
    elif suffix in ("mmd", "mermaid"):
        await anyio.Path(output).write_text(code, encoding="utf-8")
    elif suffix in _SERVICE_IMAGES:
        how = renderer
        if how == "auto":
            how = "chromium" if suffix in _IMAGES and _can_draw_here() else "service"
        if how == "chromium":
            if suffix not in _IMAGES:
                raise CliError(f"-o {output}: Chromium draws .svg and .png; use --renderer service for .{suffix}")
            await anyio.Path(output).write_bytes(await _draw_here(code, suffix))
        else:
            from railyard._mermaid_service import save_image
            from railyard.exceptions import MermaidServiceError

            try:
                await anyio.to_thread.run_sync(lambda: save_image(output, code))
            except MermaidServiceError as err:
                raise CliError(f"-o {output}: {err} (--renderer chromium draws here, with no network)") from None
    else:
        raise CliError(f"-o {output}: write .md, .mmd, .svg, .png, .pdf, .jpeg or .webp", EXIT_USAGE)
    write_out(f"wrote {output}")


def _can_draw_here() -> bool:
    import importlib.util

    from railyard.inspector._render import chromium

    return importlib.util.find_spec("playwright") is not None and chromium() is not None


async def _draw_here(code: str, image_type: str) -> bytes:
    try:
        from railyard.inspector._render import render_image

        return await render_image(code, image_type)
    except ImportError:
        raise CliError("drawing here needs Playwright: pip install playwright (and Debian's chromium)") from None
    except RuntimeError as err:
        raise CliError(str(err)) from None
