"""Graphs the terminal tests run in real processes, as `tests.cli_graphs_terminal:NAME`.

Their steps stop at gates the test opens: a gate is a fifo in the directory
`$CLI_TERMINAL_GATES`. A step waits until the fifo holds a byte; the test opens a gate
by writing one and keeping the fifo open, so every later waiter passes at once too
(in this process or the one that resumes the run). Nothing sleeps: a closed gate holds
its steps until the test interrupts the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import anyio

from railyard import BaseNode, End, Graph, GraphRunContext
from railyard.builder import GraphBuilder, StepContext, reduce_sum

__all__ = ("GATES", "TICKS", "TICKS_GATE_AT", "Tick", "TickState", "fan_out", "open_gate", "ticks", "wait_gate")

GATES = "CLI_TERMINAL_GATES"
"""The environment variable naming the directory of the gates."""

TICKS = 200
"""How many steps a `ticks` run takes."""
TICKS_GATE_AT = 120
"""The step of a `ticks` run that waits at the gate `ticks`."""

_opened: dict[str, anyio.Event] = {}
"""The gates this process waits at, by path: one wait on the fifo for all the steps at a gate."""


async def wait_gate(name: str) -> None:
    """Wait until the test opens gate `name`."""
    path = str(Path(os.environ[GATES]) / name)
    opened = _opened.get(path)
    if opened is None:
        opened = _opened[path] = anyio.Event()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            await anyio.wait_readable(fd)
        except BaseException:
            del _opened[path]  # cancelled: the next waiter watches the fifo itself
            raise
        finally:
            os.close(fd)
        opened.set()
    await opened.wait()


def open_gate(directory: Path, name: str) -> int:
    """Open gate `name` (for the test): returns the fifo's descriptor, to keep open while steps may wait."""
    fd = os.open(directory / name, os.O_RDWR)  # O_RDWR never blocks on a fifo, and keeps it open
    os.write(fd, b"!")
    return fd


@dataclass
class TickState:
    ticks: int = 0


@dataclass
class Tick(BaseNode[TickState, None, int]):
    async def run(self, ctx: GraphRunContext[TickState]) -> Tick | End[int]:
        ctx.state.ticks += 1
        if ctx.state.ticks == TICKS_GATE_AT:
            await wait_gate("ticks")
        if ctx.state.ticks >= TICKS:
            return End(ctx.state.ticks)
        return Tick()


ticks = Graph(nodes=[Tick], state_type=TickState, name="ticks")
"""200 steps of `Tick`; step 120 waits at gate `ticks`. Its output: 200."""


_fan = GraphBuilder(input_type=int, output_type=int, name="fan_out")


@_fan.step
async def numbers(ctx: StepContext[None, None, int]) -> list[int]:
    return list(range(ctx.inputs))


@_fan.step
async def double(ctx: StepContext[None, None, int]) -> int:
    if ctx.inputs >= 600:  # the last 400 of the thousand items
        await wait_gate("second")
    elif ctx.inputs >= 300:  # the 300 before them
        await wait_gate("first")
    return ctx.inputs * 2


_total = _fan.join(reduce_sum, initial=0, node_id="total")
_fan.add(
    _fan.edge_from(_fan.start_node).to(numbers),
    _fan.edge_from(numbers).map(downstream_join_id="total", max_concurrency=50).to(double),
    _fan.edge_from(double).to(_total),
    _fan.edge_from(_total).to(_fan.end_node),
)
fan_out = _fan.build()
"""Maps `double` over `range(inputs)`, 50 at a time, and sums: items 0-299 run at once, 300-599 wait at gate
`first`, 600 on at gate `second`. Its output for 1,000: 999,000."""
