"""A deep copy that is cheap for the common case of a state made of plain values.

History and full persistence keep a copy of the state at every step, so the copy is on
the per-step path. `copy.deepcopy` costs microseconds even for a one-field dataclass;
an object whose attributes are all immutable values can be copied by copying its
`__dict__`, which gives the same result for a fraction of the cost. Anything else
falls back to `copy.deepcopy`, so the result is always a faithful deep copy.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import enum
import uuid
from typing import Any, TypeVar

__all__ = ("deep_copy",)

T = TypeVar("T")

_IMMUTABLE: frozenset[type] = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        uuid.UUID,
    }
)


def _is_immutable(value: object) -> bool:
    kind = type(value)
    return kind in _IMMUTABLE or isinstance(value, enum.Enum)


_plain_classes: dict[type, bool] = {}
"""Per class: are its instances copied faithfully by copying their `__dict__`?"""


def _is_plain_class(kind: type) -> bool:
    plain = _plain_classes.get(kind)
    if plain is None:
        klass: Any = kind  # compared as plain attributes, not as the typed methods
        plain = _plain_classes[kind] = (
            klass.__reduce_ex__ is object.__reduce_ex__
            and klass.__reduce__ is object.__reduce__
            and klass.__new__ is object.__new__
            and not hasattr(kind, "__deepcopy__")
            and not hasattr(kind, "__slots__")
        )
    return plain


def deep_copy(value: T) -> T:
    """A deep copy of `value`, fast when it is a plain object holding immutable values."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if _is_plain_class(kind):
        attrs: dict[str, Any] = value.__dict__
        if _IMMUTABLE.issuperset(map(type, attrs.values())) or all(map(_is_immutable, attrs.values())):
            clone = object.__new__(kind)
            clone.__dict__.update(attrs)
            return clone
    return copy.deepcopy(value)
