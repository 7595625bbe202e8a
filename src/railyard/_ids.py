"""Unique ids for snapshots and runs, cheap enough for the per-step path.

An id is 32 hex digits, like a UUID's hex form: 64 random bits drawn once per process
(and again in a forked child) followed by a 64-bit counter. Ids are unique across
processes and sort by creation order within one.
"""

from __future__ import annotations

import itertools
import os

__all__ = ("new_hex_id", "new_snapshot_id")

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


def new_snapshot_id(node_id: str) -> str:
    """A new snapshot id in pydantic-graph's shape: `'<node id>:<32 hex digits>'`."""
    return f"{node_id}:{_prefix}{next(_counter):016x}"
