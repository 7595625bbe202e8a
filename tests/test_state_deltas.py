"""States stored by change: patches round-trip, and a growing state costs storage by what changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from railyard import BaseNode, End, Graph, GraphRunContext, SqliteStore
from railyard.durable import DurablePersistence
from railyard.store._deltas import PatchError, StateDeltas, StateRebuild, apply_patch, diff

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@given(json_values, json_values)
def test_a_patch_turns_the_old_value_into_the_new_one(old: Any, new: Any) -> None:
    before = repr(old)
    assert apply_patch(old, diff(old, new)) == new
    assert repr(old) == before  # the old value is not changed


@given(st.lists(json_values, max_size=5), st.lists(json_values, min_size=1, max_size=3))
def test_a_list_that_grew_at_its_end_is_stored_as_what_was_added(head: list[Any], tail: list[Any]) -> None:
    old = {"log": head, "n": 1}
    patch = diff(old, {"log": [*head, *tail], "n": 1})
    assert patch == ([["x", ["log"], tail]] if head else [["s", ["log"], tail]])


def test_the_writer_stores_whole_states_now_and_then_and_the_reader_rebuilds_each() -> None:
    deltas, rebuild = StateDeltas(), StateRebuild()
    states = [{"log": ["x" * 100] * n, "n": n} for n in range(300)]
    kinds = []
    for state in states:
        key, value = deltas.encode(state)
        kinds.append(key)
        assert rebuild.decode({key: value}) == state
    assert kinds[0] == "state"
    assert 2 <= kinds.count("state") <= 20  # small states whole; then whole states grow apart as the state grows
    deltas.reset()
    assert deltas.encode(states[-1])[0] == "state"  # a driver taking the run up stores it whole


def test_a_patch_that_does_not_fit_is_a_clear_error() -> None:
    with pytest.raises(PatchError, match=r"operation 0 .* does not fit the state"):
        apply_patch({"a": 1}, [["s", ["a", "b"], 2]])
    with pytest.raises(PatchError, match="a state patch comes before any whole state"):
        StateRebuild().decode({"state_patch": []})


@dataclass
class Journal:
    lines: list[str] = field(default_factory=list[str])


@dataclass
class Write(BaseNode[Journal, None, int]):
    steps: int

    async def run(self, ctx: GraphRunContext[Journal, None]) -> Write | End[int]:
        if len(ctx.state.lines) >= self.steps:
            return End(len(ctx.state.lines))
        ctx.state.lines.append(f"{len(ctx.state.lines):05d}" + "." * 95)
        return Write(self.steps)


journal_graph = Graph(nodes=(Write,), name="journal_graph")


@pytest.mark.anyio
async def test_a_growing_state_is_stored_by_what_each_step_adds(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    steps = 400
    result = await journal_graph.run(Write(steps), state=Journal(), store=store, run_id="journal")
    assert result.output == steps
    stored = sum(len(record.body) for record in await store.read("journal"))
    whole_every_step = sum(100 * n for n in range(steps))  # what storing the whole state each step would take
    assert stored < whole_every_step / 20

    persistence: DurablePersistence[Journal, int] = DurablePersistence(store, "journal")
    persistence.set_graph_types(journal_graph)
    history = await persistence.load_all()
    assert [len(snapshot.state.lines) for snapshot in history[:-1]] == list(range(steps + 1))

    forked = await journal_graph.fork(store, "journal", at_step=123)
    resumed = await journal_graph.resume(store, forked)
    assert resumed.output == steps
    assert resumed.state.lines == result.state.lines
    await store.aclose()
