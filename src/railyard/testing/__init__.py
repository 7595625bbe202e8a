"""Tools to test stores and graphs against railyard's guarantees.

- `check_store(make_store)`: the conformance suite every `RunStore` passes; run it on
  your own backend.
- `railyard.testing.crash`: kill a durable run at random moments and check that resuming
  it never loses or repeats a finished step.
"""

from railyard.testing._conformance import CHECKS, StoreFactory, check_store

__all__ = ("CHECKS", "StoreFactory", "check_store")
