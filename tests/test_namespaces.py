"""Every public name of every public module of the upstream versions imports from railyard's counterpart.

The upstream packages are installed, at the exact versions railyard is a drop-in for, in
side environments (`tests/support/side_envs.py`); their names are listed there by
`tests/support/public_names.py` and looked up here in railyard's modules:

- pydantic-graph 0.0.39: `pydantic_graph` → `railyard.v0`
- pydantic-graph 1.96.1: `pydantic_graph.beta` → `railyard.builder`, `pydantic_graph` → `railyard`
- pydantic-ai 0.0.40: `pydantic_ai` → `railyard.agent`

What railyard deliberately lacks is in `ABSENT`, each entry with its reason. An entry that
is no longer absent fails the test too, so the list stays the truth.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.support.side_envs import ensure_side_envs, public_names_in

MAPPINGS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "pydantic-graph-0.0.39": ("pydantic_graph", (("pydantic_graph", "railyard.v0"),)),
    "pydantic-graph-1.96.1": (
        "pydantic_graph",
        (("pydantic_graph.beta", "railyard.builder"), ("pydantic_graph", "railyard")),
    ),
    "pydantic-ai-0.0.40": ("pydantic_ai", (("pydantic_ai", "railyard.agent"),)),
}
"""Each side environment: the upstream package, and its module prefixes with railyard's counterparts."""

WHOLE_MODULE = "*"

_TRACING = "pydantic-graph's logfire tracing helpers; railyard traces through OpenTelemetry (`railyard.tracing`)"
_VENDOR = "a vendor SDK's model or provider; railyard ships OpenAI-compatible HTTP, FunctionModel and TestModel"

ABSENT: dict[str, dict[str, dict[str, str]]] = {
    "pydantic-graph-0.0.39": {
        "pydantic_graph.graph": {"nodes_schema_var": "the serializer's context variable; railyard's is private"},
        "pydantic_graph.state": {"nodes_schema_var": "the serializer's context variable; railyard's is private"},
    },
    "pydantic-graph-1.96.1": {
        "pydantic_graph.graph": {"AbstractSpan": _TRACING, "get_traceparent": _TRACING, "logfire_span": _TRACING},
        "pydantic_graph.beta.graph": {"AbstractSpan": _TRACING, "get_traceparent": _TRACING, "logfire_span": _TRACING},
    },
    "pydantic-ai-0.0.40": {
        module: {WHOLE_MODULE: _VENDOR}
        for module in (
            "pydantic_ai.models.anthropic",
            "pydantic_ai.models.bedrock",
            "pydantic_ai.models.cohere",
            "pydantic_ai.models.gemini",
            "pydantic_ai.models.groq",
            "pydantic_ai.models.mistral",
            "pydantic_ai.models.vertexai",
            "pydantic_ai.providers.azure",
            "pydantic_ai.providers.bedrock",
            "pydantic_ai.providers.deepseek",
            "pydantic_ai.providers.google_gla",
            "pydantic_ai.providers.google_vertex",
            "pydantic_ai.providers.groq",
        )
    },
}
"""Per side environment, per upstream module: the names railyard lacks on purpose (`*`: the whole module)."""


@pytest.fixture(scope="module")
def side_pythons() -> dict[str, Path]:
    return ensure_side_envs()


def _counterpart(module: str, rules: tuple[tuple[str, str], ...]) -> str:
    for upstream, ours in rules:
        if module == upstream or module.startswith(upstream + "."):
            return ours + module[len(upstream) :]
    raise AssertionError(f"no railyard counterpart for {module}")  # pragma: no cover - the rules cover each package


@pytest.mark.parametrize("env", sorted(MAPPINGS))
def test_every_upstream_public_name_imports_from_railyard(env: str, side_pythons: dict[str, Path]) -> None:
    package, rules = MAPPINGS[env]
    upstream = public_names_in(side_pythons[env], package)
    absent = ABSENT[env]
    missing: list[str] = []
    stale: list[str] = []
    for module, names in sorted(upstream.items()):
        allowed = absent.get(module, {})
        target = _counterpart(module, rules)
        try:
            ours = importlib.import_module(target)
        except ImportError as error:
            if WHOLE_MODULE not in allowed:
                missing.append(f"{target} (for {module}): {error}")
            continue
        if WHOLE_MODULE in allowed:
            stale.append(f"{module}: `*` is allowed absent, but {target} exists")
        listed = names if isinstance(names, list) else []  # upstream could not import it: the module is enough
        for name in listed:
            present = hasattr(ours, name)
            if not present and name not in allowed:
                missing.append(f"{target}.{name} (for {module}.{name})")
            elif present and name in allowed:
                stale.append(f"{module}.{name} is allowed absent, but {target}.{name} exists")
    assert not missing, f"{len(missing)} upstream names do not import from railyard:\n" + "\n".join(missing)
    assert not stale, "allow-list entries that are no longer absent:\n" + "\n".join(stale)
