"""One diagram model for every graph API, and its mermaid `stateDiagram-v2` writer.

Each front end turns its graph into a `Diagram` (the node API in `railyard.mermaid`,
the builder in `railyard.builder.mermaid`); `write_mermaid` is the only code that
spells mermaid syntax. The model holds no graph objects and imports nothing of
railyard but its defaults, so drawing a diagram never needs a graph module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum
from typing import Literal

from railyard._mermaid_defaults import DEFAULT_HIGHLIGHT_CSS

__all__ = (
    "DEFAULT_HIGHLIGHT_CSS",
    "END",
    "START",
    "Diagram",
    "Edge",
    "Layout",
    "State",
    "StateDiagramDirection",
    "StateKind",
    "nested",
    "write_mermaid",
)

StateDiagramDirection = Literal["TB", "LR", "RL", "BT"]
"""The direction a diagram flows in."""


class StateKind(Enum):
    """What a state is; mermaid draws each kind differently."""

    PLAIN = "plain"
    """A box: a node or a step."""
    FORK = "fork"
    """A bar that splits one path into branches."""
    JOIN = "join"
    """A bar where branches meet again."""
    CHOICE = "choice"
    """A diamond: exactly one of its edges is taken."""
    START = "start"
    """Where a run begins, drawn as `[*]`."""
    END = "end"
    """Where a run ends, drawn as `[*]`."""


@dataclass(frozen=True)
class State:
    """One state of a diagram."""

    id: str
    """The id the diagram refers to the state by (ignored for the start and the end)."""
    kind: StateKind = StateKind.PLAIN
    """What the state is."""
    label: str | None = None
    """Text shown in place of the id."""
    note: str | None = None
    """A note beside the state, one diagram line per line of text."""
    regions: tuple[Diagram, ...] = ()
    """Diagrams drawn inside the state, making it a composite state (a node running child graphs).

    Their state ids must not be used elsewhere in the diagram (see `nested`); several
    regions are drawn side by side, separated by `--`."""


START = State("[*]", StateKind.START)
"""The start of a run; edges from it are the ways a run may begin."""
END = State("[*]", StateKind.END)
"""The end of a run; edges into it are the ways a run may end."""


@dataclass(frozen=True)
class Edge:
    """An arrow from one state to another."""

    source: State
    """Where the arrow starts."""
    target: State
    """Where the arrow points."""
    label: str | None = None
    """Text on the arrow."""


class Layout(Enum):
    """How a diagram's statements are ordered; both layouts draw the same picture."""

    BY_STATE = "by_state"
    """State by state: the edges into it from the start, its own edges, then its note.

    Only states that need a declaration (a kind other than plain, or a label) get one.
    pydantic-graph's node API writes this layout.
    """
    DECLARED = "declared"
    """Every state declared first, each followed by its note; then a blank line and every edge.

    pydantic-graph's builder API writes this layout.
    """


@dataclass(frozen=True)
class Diagram:
    """A state diagram: its states and edges, in the order they are written."""

    states: tuple[State, ...]
    """The states, in order; the start and the end need not be listed."""
    edges: tuple[Edge, ...]
    """The edges, in order; an edge may name a state that `states` does not list."""
    layout: Layout = Layout.BY_STATE
    """How the statements are ordered."""
    title: str | None = None
    """Shown above the diagram when not empty."""
    direction: str | None = None
    """The direction the diagram flows in (a `StateDiagramDirection`); `None` leaves it to mermaid."""
    highlighted: tuple[State, ...] = ()
    """States drawn with `highlight_css`, in the order their class lines are written."""
    highlight_css: str = DEFAULT_HIGHLIGHT_CSS
    """The CSS of highlighted states."""


def write_mermaid(diagram: Diagram) -> str:
    """The mermaid `stateDiagram-v2` text of `diagram`, without a trailing newline."""
    lines: list[str] = []
    if diagram.title:
        lines += ["---", f"title: {diagram.title}", "---"]
    lines.append("stateDiagram-v2")
    if diagram.direction is not None:
        lines.append(f"  direction {diagram.direction}")
    lines += _statements(diagram)
    if diagram.highlighted:
        lines += ["", f"classDef highlighted {diagram.highlight_css}"]
        lines += [f"class {_ref(state)} highlighted" for state in diagram.highlighted]
    return "\n".join(lines)


def _statements(diagram: Diagram, *, inside: bool = False) -> Iterator[str]:
    if diagram.layout is Layout.DECLARED:
        return _declared(diagram, inside=inside)
    return _by_state(diagram)


def _declared(diagram: Diagram, *, inside: bool = False) -> Iterator[str]:
    for state in _drawn(diagram.states):
        yield from _declaration(state, always=True)
        yield from _note(state)
    if not inside:  # inside a composite state, the edges follow the declarations directly
        yield ""
    for edge in diagram.edges:
        yield _edge(edge)


def _by_state(diagram: Diagram) -> Iterator[str]:
    written: set[int] = set()
    for state in _drawn(diagram.states):
        yield from _declaration(state, always=False)
        for index, edge in enumerate(diagram.edges):
            if edge.source == state or (edge.source.kind is StateKind.START and edge.target == state):
                written.add(index)
                yield _edge(edge)
        yield from _note(state)
    # edges between states that are not listed (from the start straight to the end, say)
    yield from (_edge(edge) for index, edge in enumerate(diagram.edges) if index not in written)


def _drawn(states: tuple[State, ...]) -> Iterator[State]:
    return (state for state in states if state.kind not in (StateKind.START, StateKind.END))


def _declaration(state: State, *, always: bool) -> Iterator[str]:
    if state.regions:
        yield from _composite(state)
    elif state.kind is not StateKind.PLAIN:
        yield f"  state {state.id} <<{state.kind.value}>>"
    if state.label:
        yield f"  {state.id}: {state.label}"
    elif always and state.kind is StateKind.PLAIN and not state.regions:
        yield f"  {state.id}"


def _composite(state: State) -> Iterator[str]:
    """`state Id { ... }`: the state's regions inside it, one level deeper, `--` between two."""
    yield f"  state {state.id} {{"
    for index, region in enumerate(state.regions):
        if index:
            yield "    --"
        yield from (f"  {line}" if line else line for line in _statements(region, inside=True))
    yield "  }"


def _note(state: State) -> Iterator[str]:
    if state.note is None:
        return
    yield f"  note right of {state.id}"
    if state.note:
        yield from (f"    {line}" for line in state.note.splitlines())
    else:
        yield ""  # a note needs a body: an empty one is one empty line
    yield "  end note"


def _edge(edge: Edge) -> str:
    label = f": {edge.label}" if edge.label else ""
    return f"  {_ref(edge.source)} --> {_ref(edge.target)}{label}"


def _ref(state: State) -> str:
    return "[*]" if state.kind in (StateKind.START, StateKind.END) else state.id


def nested(diagram: Diagram, prefix: str) -> Diagram:
    """`diagram` made ready to draw inside another diagram's state `prefix` (as one of its `regions`).

    State ids are global to a mermaid diagram, so each state's id becomes `<prefix>_<id>`
    (its regions' states too), and a state shows its own id as its label unless it has one.
    The start and end stay (inside a composite state they are its own); the title,
    direction and highlights are the outer diagram's business and are dropped.
    """
    renamed: dict[str, State] = {}

    def rename(state: State) -> State:
        if state.kind in (StateKind.START, StateKind.END):
            return state
        done = renamed.get(state.id)
        if done is None:
            done = renamed[state.id] = replace(
                state,
                id=f"{prefix}_{state.id}",
                label=state.label or state.id,
                regions=tuple(nested(region, prefix) for region in state.regions),
            )
        return done

    return Diagram(
        states=tuple(rename(state) for state in diagram.states),
        edges=tuple(Edge(rename(edge.source), rename(edge.target), edge.label) for edge in diagram.edges),
        layout=diagram.layout,
    )
