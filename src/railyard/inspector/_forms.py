"""An answer form made from a waiting step's payload schema, and the payload a filled-in form gives.

A payload whose schema is an object gets one field per property: a checkbox for a
boolean, a number box for a number, a text box for a string, a choice for an enum or a
literal, and a JSON box for anything nested. Any other payload (a list, a union of
models, a plain `bool`) gets one JSON box. The payload a form gives is then validated by
`railyard.suspension.signal` against the step's own type, so the form never has to be
right about every rule: it only has to be a convenient way to write the JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = (
    "FIELD",
    "FORM_TOKEN",
    "JSON_FIELD",
    "WAIT_KEY",
    "FormField",
    "FormProblem",
    "form_fields",
    "payload_of",
    "problems_of",
)

JSON_FIELD = "__json__"
"""The one field of a form whose payload is not an object of simple fields."""
FORM_TOKEN = "__form_token"
"""The form input that carries the form token (no payload field's input is named so: see `FIELD`)."""
WAIT_KEY = "__key"
"""The form input that names the wait an answer is for."""
FIELD = "f."
"""The prefix of a payload field's form input: `f.<field name>`."""


@dataclass(slots=True)
class FormField:
    """One input of an answer form."""

    name: str
    """The payload field it fills (`__json__`: the whole payload as JSON)."""
    kind: str
    """`checkbox`, `integer`, `number`, `text`, `choice` or `json`."""
    label: str
    """What the form calls it."""
    required: bool
    """Whether the payload must have it."""
    default: Any = None
    """The value it starts with (a JSON value), `None` for none."""
    choices: list[Any] = field(default_factory=list)
    """A `choice` field's values."""
    help: str | None = None
    """The field's description, from the payload type."""
    error: str | None = None
    """Why the last answer was refused, for this field."""
    value: str | None = None
    """What the person typed last time (shown again beside the error)."""
    checked: bool | None = None
    """A checkbox as the person left it last time (`None`: as its default)."""
    nullable: bool = False
    """Whether `null` is a valid value (an `X | None` field): an empty box sends it, unless it has a default."""
    has_default: bool = False
    """Whether the payload type gives the field a default (an empty box then leaves it to it)."""

    @property
    def ticked(self) -> bool:
        """Whether a checkbox shows ticked: as left last time, else its default."""
        return bool(self.default) if self.checked is None else self.checked

    @property
    def shown(self) -> str:
        """The text the input shows: what was typed, else the default."""
        if self.value is not None:
            return self.value
        if self.default is None:
            return ""
        if self.kind == "json":
            return json.dumps(self.default)
        return str(self.default)


class FormProblem(ValueError):
    """A form cannot become a payload: the field named `field` holds something unreadable."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        """The field's name."""
        self.message = message
        """What is wrong with what it holds."""


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(defs.get(ref.removeprefix("#/$defs/"), {}), defs)
    return schema


def _simple(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The schema with an `X | None` unwrapped to `X`, and whether `None` was allowed."""
    schema = _resolve(schema, defs)
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [_resolve(option, defs) for option in options if option.get("type") != "null"]
        if len(kept) == 1 and len(kept) < len(options):
            return kept[0], True
    return schema, False


def _field(name: str, schema: Mapping[str, Any], defs: Mapping[str, Any], required: bool) -> FormField:
    plain, nullable = _simple(schema, defs)
    label = str(schema.get("title") or plain.get("title") or name.replace("_", " "))
    default = schema.get("default")
    has_default = "default" in schema
    helped = schema.get("description") or plain.get("description")
    help_text = str(helped) if helped else None
    if "enum" in plain or "const" in plain:
        choices = list(plain["enum"]) if "enum" in plain else [plain["const"]]
        return FormField(
            name, "choice", label, required, default, choices, help_text, nullable=nullable, has_default=has_default
        )
    kind = {"boolean": "checkbox", "integer": "integer", "number": "number", "string": "text"}.get(
        str(plain.get("type")), "json"
    )
    if kind == "checkbox" and nullable:
        kind = "json"  # true, false or null: three answers, more than a checkbox holds
    return FormField(name, kind, label, required, default, help=help_text, nullable=nullable, has_default=has_default)


def form_fields(schema: Mapping[str, Any]) -> list[FormField]:
    """The inputs of the form that answers a wait whose payload has this JSON schema."""
    defs: Mapping[str, Any] = schema.get("$defs") or {}
    top = _resolve(schema, defs)
    properties = top.get("properties")
    if top.get("type") != "object" or not isinstance(properties, dict) or not properties:
        return [FormField(JSON_FIELD, "json", "answer (JSON)", True, help=top.get("description"))]
    required = set(top.get("required") or ())
    return [_field(name, sub, defs, name in required) for name, sub in properties.items()]


def _read(form_field: FormField, text: str) -> Any:
    if form_field.kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise FormProblem(form_field.name, f"{text!r} is not a whole number") from None
    if form_field.kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise FormProblem(form_field.name, f"{text!r} is not a number") from None
        if not math.isfinite(number):
            raise FormProblem(form_field.name, f"{text!r} is not a finite number")
        return number
    if form_field.kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise FormProblem(
                form_field.name, f"bad JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from None
    if form_field.kind == "choice":
        for choice in form_field.choices:  # the choice's own JSON value, not its text
            if str(choice) == text:
                return choice
        raise FormProblem(form_field.name, f"{text!r} is not one of the choices")
    return text


def payload_of(fields: list[FormField], form: Mapping[str, str]) -> Any:
    """The payload a submitted form gives (before the payload type validates it).

    An empty box leaves its field out, so the type's default applies (or it says the
    field is missing), unless the field may be `null` and has no default: then it sends
    `null`. An unticked checkbox is `false`.

    Raises:
        FormProblem: a box holds text that is not what its kind reads (a number, JSON).
    """
    if len(fields) == 1 and fields[0].name == JSON_FIELD:
        return _read(fields[0], form.get(JSON_FIELD, ""))
    payload: dict[str, Any] = {}
    for form_field in fields:
        if form_field.kind == "checkbox":
            payload[form_field.name] = form.get(form_field.name) in ("on", "true", "1")
            continue
        text = form.get(form_field.name, "")
        if text == "" and form_field.nullable and not form_field.has_default:
            payload[form_field.name] = None
            continue
        if text == "" and form_field.kind != "text":
            continue
        if text == "" and not form_field.required:
            continue
        payload[form_field.name] = _read(form_field, text)
    return payload


def problems_of(fields: list[FormField], errors: list[Mapping[str, Any]]) -> str | None:
    """Put pydantic's errors on the fields they are about; return what is about no one field."""
    by_name = {form_field.name: form_field for form_field in fields}
    rest: list[str] = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        target = by_name.get(location[0]) if location else None
        if target is None and JSON_FIELD in by_name:
            target = by_name[JSON_FIELD]
        message = str(error.get("msg", "is not valid"))
        if target is None:
            rest.append(message if not location else f"{'.'.join(location)}: {message}")
            continue
        inner = ".".join(location[1:]) if target.name != JSON_FIELD else ".".join(location)
        text = f"{inner}: {message}" if inner else message
        target.error = text if target.error is None else f"{target.error}; {text}"
    return "; ".join(rest) or None
