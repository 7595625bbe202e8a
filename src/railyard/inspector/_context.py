"""What every page and action of one inspector shares: the store, the graphs, the guard, the templates."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from anyio.abc import TaskGroup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from railyard.cli._load import GraphKind, LoadedGraph
from railyard.inspector._forms import FIELD, FORM_TOKEN, WAIT_KEY
from railyard.inspector._guard import Guard
from railyard.store import RunStore

__all__ = ("Inspector", "json_text", "moment", "seconds_text")


def json_text(value: Any, indent: int | None = 2) -> str:
    """A JSON value as text to show (escaped by the template, never here)."""
    import pydantic_core

    return pydantic_core.to_json(value, indent=indent, fallback=repr).decode()


def moment(value: datetime | float | None) -> str:
    """A time as the pages show it: UTC, to the second."""
    if value is None:
        return "-"
    when = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds_text(value: float | None) -> str:
    """A duration as the pages show it."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


@dataclass(slots=True)
class Inspector:
    """One inspector: the store it shows, the graphs whose runs it can resume and fork, its rules."""

    store: RunStore
    """The store the runs live in."""
    store_label: str
    """How the pages name the store (a URL without its password)."""
    graphs: Mapping[str, LoadedGraph]
    """The graphs given to it, by the name their runs are recorded under."""
    guard: Guard
    """The access and cross-site rules."""
    read_only: bool
    """Whether the actions are hidden and refused."""
    poll: float
    """How often live pages look at the store for changes, in seconds."""
    templates: jinja2.Environment = field(init=False)
    """The pages' templates (every value escaped)."""
    tasks: TaskGroup | None = None
    """Where runs it resumes are driven (set while the app runs)."""
    driving: set[str] = field(default_factory=set)
    """The runs it drives right now."""
    closing: bool = False
    """Set when the server shuts down: live streams end at their next look."""
    stopped: dict[str, str] = field(default_factory=dict)
    """Why a run this inspector resumed stopped short of its end (an error it raised), by run id."""

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("railyard.inspector", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["json"] = json_text
        self.templates.filters["moment"] = moment
        self.templates.filters["seconds"] = seconds_text
        self.templates.filters["compact"] = lambda value: _compact(json_text(value, None))
        self.templates.filters["quote"] = lambda value: quote(str(value), safe="")

    def graph_for(self, name: str | None) -> LoadedGraph | None:
        """The graph given for runs recorded under `name`, if any (agents cannot fork)."""
        if name is None:
            return None
        return self.graphs.get(name)

    def can_fork(self, name: str | None) -> bool:
        """Whether runs of this graph can be forked here."""
        loaded = self.graph_for(name)
        return loaded is not None and loaded.kind is not GraphKind.AGENT

    def page(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        """A rendered page (or, with `?partial=1`, just its live parts)."""
        body = self.templates.get_template(template).render(
            request=request,
            inspector=self,
            form_token=self.guard.form_token,
            FORM_TOKEN=FORM_TOKEN,
            WAIT_KEY=WAIT_KEY,
            FIELD=FIELD,
            partial=request.query_params.get("partial") == "1",
            **values,
        )
        return HTMLResponse(body, status_code=status_code, headers={"cache-control": "no-store"})


def _compact(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def event(data: Mapping[str, Any]) -> str:
    """One server-sent event named `change`."""
    return f"event: change\ndata: {json.dumps(data)}\n\n"
