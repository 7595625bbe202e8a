"""Unique ids for snapshots and runs, cheap enough for the per-step path.

An id is 32 hex digits, like a UUID's hex form: 64 random bits drawn once per process
(and again in a forked child) followed by a 64-bit counter. Ids are unique across
processes and sort by creation order within one.
"""

from __future__ import annotations

import itertools
import os
from types import ModuleType

__all__ = ("default_snapshot_id", "new_hex_id", "new_snapshot_id", "register_nodes")

_prefix = os.urandom(8).hex()
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter  # noqa: PLW0603 - per-process state, reset in a forked child
    _prefix = os.urandom(8).hex()
    _counter = itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_hex_id() -> str:
    """A new process-unique, globally unique id of 32 hex digits."""
    return f"{_prefix}{next(_counter):016x}"


_nodes_modules: list[ModuleType] = []
"""The modules whose `generate_snapshot_id` may be patched (`railyard.nodes`, `railyard.v0.nodes`)."""


def register_nodes(module: ModuleType) -> None:
    """Make ids with `module.generate_snapshot_id` when it is patched (called by the nodes modules)."""
    if module not in _nodes_modules:
        _nodes_modules.append(module)


def default_snapshot_id(node_id: str) -> str:
    """A new snapshot id in pydantic-graph's shape: `'<node id>:<32 hex digits>'`."""
    return f"{node_id}:{_prefix}{next(_counter):016x}"


def new_snapshot_id(node_id: str) -> str:
    """A new snapshot id, made by `generate_snapshot_id` of the nodes modules as it is now.

    Looked up at each call, as pydantic-graph does, so that patching
    `railyard.nodes.generate_snapshot_id` or `railyard.v0.nodes.generate_snapshot_id` (tests
    do, for ids like `Node:1`) takes effect everywhere ids are made.
    """
    for module in _nodes_modules:
        generate = module.generate_snapshot_id
        if generate is not default_snapshot_id:
            return str(generate(node_id))
    return f"{node_id}:{_prefix}{next(_counter):016x}"
