"""The installed railyard's version, read from its package metadata once."""

from __future__ import annotations

import functools

__all__ = ("railyard_version",)


@functools.cache
def railyard_version() -> str:
    """The version of the installed railyard distribution (`0+unknown` when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("railyard")
    except PackageNotFoundError:
        return "0+unknown"
