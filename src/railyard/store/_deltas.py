"""A run's state stored by change: a patch against the state before it, a whole state now and then.

A record that carries the state (tasks scheduled, a step finished) stores either the
whole state, as JSON, under `state`, or under `state_patch` what changed since the
previous such record of the run:

    [["s", path, value], ["d", path], ["x", path, items]]

`s` sets the value at `path` (a list of object keys; `[]` is the whole state), `d`
deletes an object key, and `x` extends the list at `path` with `items` (a list that
grew at its end: a message history, a log). Storage then grows with what a run does,
not with its steps times its state's size.

A small state (under `_SMALL` bytes of JSON) is stored whole every time: a patch would
save nothing, and the whole state reads best in SQL. Otherwise a whole state is stored
at a run's first state record, at the first one after a driver
takes the run up (it does not trust what another driver may have written since), once
`_MAX_CHAIN` patches follow the last whole state, and once the patches since the last
whole state weigh as much as it did: the bytes stored stay within a small factor of
the bytes changed, and rebuilding any step's state reads at most that much.

Parts are compared with Python's `==` (at C speed: the unchanged prefix of a long list
costs little), so values Python holds equal but JSON tells apart — `1`, `1.0` and
`true` inside a list or object that is otherwise unchanged — keep the earlier spelling.
A state's declared types decide what such a value validates to when it is read back.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

__all__ = ("PatchError", "StateDeltas", "StateRebuild", "apply_patch", "diff")

_MAX_CHAIN = 1000
"""At most this many patches follow a whole state."""
_SMALL = 512
"""A state whose JSON is shorter than this many bytes is stored whole: there is nothing to save."""

Patch = list[list[Any]]


class PatchError(ValueError):
    """A stored patch does not fit the state it is applied to."""


def diff(old: Any, new: Any) -> Patch:
    """The patch that turns JSON value `old` into `new`."""
    ops: Patch = []
    _diff(old, new, [], ops)
    return ops


def _diff(old: Any, new: Any, path: list[Any], ops: Patch) -> None:
    if type(old) is dict and type(new) is dict:
        for key, value in new.items():  # pyright: ignore[reportUnknownVariableType]
            if key not in old:
                ops.append(["s", [*path, key], value])
            else:
                before = old[key]
                if before is not value and (type(before) is not type(value) or before != value):
                    _diff(before, value, [*path, key], ops)
        for key in old:  # pyright: ignore[reportUnknownVariableType]
            if key not in new:
                ops.append(["d", [*path, key]])
        return
    if type(old) is list and type(new) is list:
        size = len(old)  # pyright: ignore[reportUnknownArgumentType]
        if size and len(new) > size and new[size - 1] == old[-1] and new[:size] == old:  # pyright: ignore[reportUnknownArgumentType]
            ops.append(["x", path, new[size:]])
            return
    ops.append(["s", path, new])


def apply_patch(state: Any, patch: Any) -> Any:
    """`state` (a JSON value) with `patch` applied; `state` itself is left unchanged.

    Containers along each changed path are copied; the rest is shared with `state`.

    Raises:
        PatchError: the patch is malformed, or names a path the state does not have.
    """
    if type(patch) is not list:
        raise PatchError(f"a state patch must be a list of operations, not {type(patch).__name__}")
    for number, op in enumerate(patch):
        try:
            state = _apply(state, op)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise PatchError(f"operation {number} ({str(op)[:80]}) does not fit the state: {err!r}") from None
    return state


def _apply(state: Any, op: Any) -> Any:
    kind, path = op[0], op[1]
    if type(path) is not list:
        raise TypeError("the path must be a list of keys")
    if not path:
        if kind == "s":
            return op[2]
        if kind == "x":
            if type(state) is not list:
                raise TypeError("only a list can be extended")
            return [*state, *op[2]]  # pyright: ignore[reportUnknownVariableType]
        raise ValueError(f"unknown operation {kind!r} on the whole state")
    if type(state) is not dict:
        raise TypeError(f"{path[0]!r} is a key, but the value there is not an object")
    copied = dict(state)  # pyright: ignore[reportUnknownArgumentType]
    key = path[0]
    if len(path) == 1 and kind == "s":
        copied[key] = op[2]
    elif len(path) == 1 and kind == "d":
        del copied[key]
    else:
        copied[key] = _apply(state[key], [kind, path[1:], *op[2:]])
    return copied


class StateDeltas:
    """The writing side, for one run: turns each state into a whole state or a patch."""

    __slots__ = ("_chain", "_last", "_since_whole", "_whole_size")

    def __init__(self) -> None:
        self._last: Any = None
        self._chain = -1
        """Patches since the last whole state (-1: no state stored yet by this driver)."""
        self._since_whole = 0
        self._whole_size = 0

    def reset(self) -> None:
        """Store the next state whole (a driver took the run up)."""
        self._chain = -1

    def encode(self, state: Any) -> tuple[str, Any]:
        """(`"state"`, the whole state) or (`"state_patch"`, the patch from the previous state)."""
        if 0 <= self._chain < _MAX_CHAIN and self._whole_size >= _SMALL:
            patch = diff(self._last, state)
            size = len(pydantic_core.to_json(patch))
            if self._since_whole + size < self._whole_size:
                self._last = state
                self._chain += 1
                self._since_whole += size
                return "state_patch", patch
        self._last = state
        self._chain = 0
        self._since_whole = 0
        self._whole_size = len(pydantic_core.to_json(state))
        return "state", state


class StateRebuild:
    """Whole states from a run's stored records, without the graph's types (public as `railyard.store.StateReader`).

    Records keep a state whole (`state`) or as a patch on the one before (`state_patch`):
    give `decode` each record's JSON body, in order, and it returns the state that record
    carries, whole, as JSON values.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: Any = _NONE

    def decode(self, record: dict[str, Any]) -> Any:
        """The state of a record (JSON value) that has `state` or `state_patch`.

        Raises:
            PatchError: a patch comes before any whole state, or does not fit.
        """
        if "state_patch" in record:
            if self._last is _NONE:
                raise PatchError("a state patch comes before any whole state (records before it are missing)")
            self._last = apply_patch(self._last, record["state_patch"])
        else:
            self._last = record["state"]
        return self._last


_NONE: Any = object()
