"""The installed railyard's version, read from its package metadata once."""

from __future__ import annotations

import functools

__all__ = ("DISTRIBUTION", "railyard_version")

DISTRIBUTION = "railyard-graph"
"""The name railyard has on the package index: `pip install railyard-graph`, then `import railyard`."""


@functools.cache
def railyard_version() -> str:
    """The version of the installed railyard distribution (`0+unknown` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
