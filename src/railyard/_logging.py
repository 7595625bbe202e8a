"""railyard's loggers (`railyard.run`, `railyard.worker`, `railyard.store`): silent until configured.

The library adds no handler but a `logging.NullHandler` on the `railyard` logger (so
Python's last-resort handler never prints railyard's warnings on its own). Every record
about a run carries `railyard_run_id` and `railyard_step_id` (`None` when it is about
the run as a whole) as `extra` fields, for a formatter or a JSON handler to pick up.
"""

from __future__ import annotations

import logging

__all__ = ("extra",)

_root = logging.getLogger("railyard")
if not any(isinstance(handler, logging.NullHandler) for handler in _root.handlers):
    _root.addHandler(logging.NullHandler())


def extra(run_id: str, step_id: str | None = None) -> dict[str, str | None]:
    """The `extra` fields of a log record about a run (and one of its steps)."""
    return {"railyard_run_id": run_id, "railyard_step_id": step_id}
