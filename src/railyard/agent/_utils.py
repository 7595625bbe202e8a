"""Small helpers pydantic-ai code and tests import from `_utils`: a sentinel, a peekable stream, debouncing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeGuard, TypeVar

from railyard.agent.exceptions import UserError

__all__ = (
    "UNSET",
    "PeekableAsyncStream",
    "Unset",
    "check_object_json_schema",
    "group_by_temporal",
    "is_set",
    "now_utc",
    "sync_anext",
)

T = TypeVar("T")


class Unset:
    """The type of `UNSET`: a value that was not given (where None is a real value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()
"""A value that was not given."""


def is_set(value: T | Unset) -> TypeGuard[T]:
    """Whether `value` was given (is not `UNSET`)."""
    return not isinstance(value, Unset)


def sync_anext(iterator: Iterator[T]) -> T:
    """The next item of a sync iterator, raising `StopAsyncIteration` (not `StopIteration`) at its end.

    Raises:
        StopAsyncIteration: the iterator is exhausted.
    """
    try:
        return next(iterator)
    except StopIteration as exc:
        raise StopAsyncIteration from exc


def now_utc() -> datetime:
    """The time now, in UTC."""
    return datetime.now(UTC)


def check_object_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` if it describes an object, or the object definition its top-level `$ref` points to.

    Raises:
        UserError: the schema is not an object's.
    """
    if schema.get("type") == "object":
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        if isinstance(target, dict) and target.get("type") == "object":
            return target
    raise UserError("Schema must be an object")


class PeekableAsyncStream(Generic[T]):
    """An async iterable whose next item can be looked at (`peek`) without taking it."""

    def __init__(self, source: AsyncIterable[T]) -> None:
        self._iterator = aiter(source)
        self._buffered: T | Unset = UNSET
        self._exhausted = False

    async def peek(self) -> T | Unset:
        """The next item, left in place; `UNSET` once the stream has ended."""
        if isinstance(self._buffered, Unset) and not self._exhausted:
            try:
                self._buffered = await anext(self._iterator)
            except StopAsyncIteration:
                self._exhausted = True
        return self._buffered

    async def is_exhausted(self) -> bool:
        """Whether the stream has no more items."""
        return isinstance(await self.peek(), Unset)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        item = await self.peek()
        if isinstance(item, Unset):
            raise StopAsyncIteration
        self._buffered = UNSET
        return item


@asynccontextmanager
async def group_by_temporal(
    source: AsyncIterable[T], soft_max_interval: float | None, *, open_window: bool = False
) -> AsyncIterator[AsyncIterator[list[T]]]:
    """Give `source`'s items in groups: each alone (`soft_max_interval` None), or per window of that many seconds.

    A window opens with the first item after the last group and closes on time, even
    when no new item comes, so what arrived is not held back by a slow next item.
    `open_window` starts with a window open (an empty group may then come first). A
    read in flight when the block exits is finished, not cancelled, so the source can
    still be read to its end.
    """
    iterator = aiter(source)
    pending: asyncio.Future[T] | None = None

    async def groups() -> AsyncIterator[list[T]]:
        nonlocal pending
        if soft_max_interval is None:
            async for item in iterator:
                yield [item]
            return
        window_ends = time.monotonic() + soft_max_interval if open_window else None
        group: list[T] = []
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            timeout = None if window_ends is None else max(0.0, window_ends - time.monotonic())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:  # the window closed first
                window_ends = None
                yield group
                group = []
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                pending = None
                if group or window_ends is not None:
                    yield group
                return
            pending = None
            group.append(item)
            if window_ends is None:
                window_ends = time.monotonic() + soft_max_interval

    try:
        yield groups()
    finally:
        if pending is not None and not pending.done():
            await asyncio.wait({pending})
