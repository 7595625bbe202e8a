"""`format_as_xml`: a Python value as XML, which models often read more easily than JSON.

```python
print(format_as_xml({"name": "John", "height": 6}, root_tag="user"))
#> <user>
#>   <name>John</name>
#>   <height>6</height>
#> </user>
```
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any
from xml.etree import ElementTree

import pydantic

__all__ = ("format_as_xml",)


def format_as_xml(  # noqa: PLR0917  # pydantic-ai takes these positionally
    obj: Any,
    root_tag: str = "examples",
    item_tag: str = "example",
    include_root_tag: bool = True,
    none_str: str = "null",
    indent: str | None = "  ",
) -> str:
    """`obj` as XML, under `root_tag`.

    Takes `str`, `bytes`, `bytearray`, `bool`, `int`, `float`, `date`, `datetime`,
    mappings (their keys become tags), iterables (each item under `item_tag`),
    dataclasses and pydantic models (their fields become tags; as items of an iterable
    they are tagged with their class name). `None` is written as `none_str`.

    Args:
        obj: The value to write.
        root_tag: The outer tag.
        item_tag: The tag of each item of an iterable that is not a dataclass or model.
        include_root_tag: Whether to write the outer tag; a plain value (text) always has it.
        none_str: The text for `None`.
        indent: The indentation of nested tags; `None` writes everything on one line.

    Raises:
        TypeError: a value or a mapping key is of a type this cannot write.
    """
    builder = _Builder(item_tag, none_str)
    root = builder.element(root_tag, obj)
    if include_root_tag or root.text is not None:
        return _to_string(root, indent)
    separator = "" if indent is None else "\n"
    return separator.join(_to_string(child, indent) for child in root)


def _to_string(element: ElementTree.Element, indent: str | None) -> str:
    element.tail = None
    if indent is not None:
        ElementTree.indent(element, space=indent)
    return ElementTree.tostring(element, encoding="unicode")


@dataclasses.dataclass
class _Builder:
    item_tag: str
    none_str: str

    def element(self, tag: str, value: Any) -> ElementTree.Element:
        element = ElementTree.Element(tag)
        if value is None:
            element.text = self.none_str
        elif isinstance(value, str):
            element.text = value
        elif isinstance(value, bytes | bytearray):
            element.text = bytes(value).decode(errors="replace")
        elif isinstance(value, bool | int | float):
            element.text = str(value)
        elif isinstance(value, date):  # a datetime is a date too
            element.text = value.isoformat()
        elif isinstance(value, Mapping):
            self._children(element, value.items())  # pyright: ignore[reportUnknownArgumentType]
        elif _fields(value) is not None:
            self._children(element, _fields(value).items())  # type: ignore[union-attr]
        elif isinstance(value, Iterable):
            for item in value:  # pyright: ignore[reportUnknownVariableType]
                tag = type(item).__name__ if _fields(item) is not None else self.item_tag
                element.append(self.element(tag, item))
        else:
            raise TypeError(f"Unsupported type for XML formatting: {type(value)}")
        return element

    def _children(self, element: ElementTree.Element, items: Iterable[tuple[Any, Any]]) -> None:
        for key, item in items:
            if not isinstance(key, str | int):
                raise TypeError(f"Unsupported key type for XML formatting: {type(key)}, only str and int are allowed")
            element.append(self.element(str(key), item))


def _fields(value: Any) -> dict[str, Any] | None:
    """The fields of a dataclass instance or pydantic model, by name; None for anything else."""
    if isinstance(value, pydantic.BaseModel):
        return {name: getattr(value, name) for name in type(value).model_fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    return None
