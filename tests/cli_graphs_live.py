"""Fan-outs the `railyard` command's live display is tested on, as `tests.cli_graphs_live:NAME`."""

from __future__ import annotations

from railyard.builder import GraphBuilder, ItemFailure, StepContext, reduce_list_append, reduce_sum

__all__ = ("branches", "collected", "one_fails")


_branches = GraphBuilder(output_type=int, name="branches")


@_branches.step
async def source(ctx: StepContext[None, None, None]) -> int:
    return 10


@_branches.step
async def add_one(ctx: StepContext[None, None, int]) -> int:
    return ctx.inputs + 1


@_branches.step
async def add_two(ctx: StepContext[None, None, int]) -> int:
    return ctx.inputs + 2


@_branches.step
async def add_three(ctx: StepContext[None, None, int]) -> int:
    return ctx.inputs + 3


_summed = _branches.join(reduce_sum, initial=0, node_id="summed")
_branches.add(
    _branches.edge_from(_branches.start_node).to(source),
    _branches.edge_from(source).to(add_one, add_two, add_three),
    _branches.edge_from(add_one, add_two, add_three).to(_summed),
    _branches.edge_from(_summed).to(_branches.end_node),
)
branches = _branches.build()
"""Three parallel branches from 10, summed: 36."""


_collected = GraphBuilder(input_type=int, output_type=dict[str, int], name="collected")


@_collected.step
async def items(ctx: StepContext[None, None, int]) -> list[int]:
    return list(range(ctx.inputs))


@_collected.step
async def check(ctx: StepContext[None, None, int]) -> int:
    if ctx.inputs % 10 == 3:
        raise ValueError(f"item {ctx.inputs} ends in 3")
    return ctx.inputs


@_collected.step
async def tally(ctx: StepContext[None, None, list[int | ItemFailure]]) -> dict[str, int]:
    failed = sum(1 for value in ctx.inputs if isinstance(value, ItemFailure))
    return {"ok": len(ctx.inputs) - failed, "failed": failed}


_gathered = _collected.join(reduce_list_append, initial_factory=list[int | ItemFailure], node_id="gathered")
_collected.add(
    _collected.edge_from(_collected.start_node).to(items),
    _collected.edge_from(items).map(downstream_join_id="gathered", on_error="collect").to(check),
    _collected.edge_from(check).to(_gathered),
    _collected.edge_from(_gathered).to(tally),
    _collected.edge_from(tally).to(_collected.end_node),
)
collected = _collected.build()
"""Checks `range(inputs)`; the items ending in 3 fail and are collected: for 100, `{"ok": 90, "failed": 10}`."""


_one_fails = GraphBuilder(input_type=int, output_type=int, name="one_fails")


@_one_fails.step
async def numbers(ctx: StepContext[None, None, int]) -> list[int]:
    return list(range(ctx.inputs))


@_one_fails.step
async def explode_at_7(ctx: StepContext[None, None, int]) -> int:
    if ctx.inputs == 7:  # the item that fails
        raise ValueError("seven is right out")
    return ctx.inputs


_total = _one_fails.join(reduce_sum, initial=0, node_id="total")
_one_fails.add(
    _one_fails.edge_from(_one_fails.start_node).to(numbers),
    _one_fails.edge_from(numbers).map(downstream_join_id="total", max_concurrency=4).to(explode_at_7),
    _one_fails.edge_from(explode_at_7).to(_total),
    _one_fails.edge_from(_total).to(_one_fails.end_node),
)
one_fails = _one_fails.build()
"""Maps over `range(inputs)`, 4 at a time; item 7 raises, so the run fails."""
