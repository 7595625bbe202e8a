"""What `import railyard` loads: the node API, not the stores, drivers, diagrams or HTTP client.

Each check runs in a fresh interpreter, since this one has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import railyard

NOT_LOADED_BY_IMPORT = (
    "httpx",
    "psycopg",
    "psycopg_pool",
    "ray",
    "starlette",
    "uvicorn",
    "jinja2",
    "railyard._mermaid_service",
    "railyard.durable",
    "railyard.mermaid",
    "railyard.persistence.file",
    "railyard.store.file",
    "railyard.store.postgres",
    "railyard.store.sqlite",
    "rich",
    "typer",
)
"""Heavy or optional modules that `import railyard` must leave for first use."""


GRAPH = """
from __future__ import annotations

from dataclasses import dataclass

from railyard import BaseNode, End, Graph, GraphRunContext


@dataclass
class Count(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext[None, None]) -> Count | End[int]:
        return End(self.n) if self.n >= 3 else Count(self.n + 1)


graph = Graph(nodes=[Count])
"""
"""A one-node graph, defined in the fresh interpreter."""


def _fresh(code: str) -> Any:
    """Run `code` in a new interpreter; it prints JSON, returned here."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _loaded_after(code: str) -> set[str]:
    """The modules loaded, of `NOT_LOADED_BY_IMPORT`, once `code` has run in a new interpreter."""
    probe = f"""{code}
import json, sys
print(json.dumps({{"loaded": sorted(m for m in {NOT_LOADED_BY_IMPORT!r} if m in sys.modules)}}))
"""
    return set(_fresh(probe)["loaded"])


def test_import_railyard_leaves_the_heavy_modules_alone() -> None:
    assert _loaded_after("import railyard") == set()


def test_running_a_graph_loads_no_store_driver_or_diagram_code() -> None:
    # a run without a store needs neither a database, nor the durable log, nor mermaid
    assert _loaded_after(GRAPH + "assert graph.run_sync(Count(0)).output == 3") == set()


def test_a_store_loads_only_its_own_backend() -> None:
    assert _loaded_after("import railyard; railyard.SqliteStore") == {"railyard.store.sqlite"}


def test_a_diagram_loads_the_mermaid_code_but_not_the_http_client() -> None:
    assert _loaded_after(GRAPH + "assert 'Count' in graph.mermaid_code()") == {
        "railyard.mermaid",
        "railyard._mermaid_service",
    }


@pytest.mark.parametrize("name", railyard.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(railyard, name)
    assert value is not None
    # the name is what its defining module calls it, not a copy
    module = getattr(value, "__module__", None)
    if isinstance(module, str) and module.startswith("railyard"):
        assert getattr(sys.modules[module], name) is value


def test_public_names_are_listed_once() -> None:
    assert len(set(railyard.__all__)) == len(railyard.__all__)


def test_dir_lists_every_public_name_before_any_is_loaded() -> None:
    probe = """
import json, railyard
print(json.dumps({"dir": dir(railyard), "all": list(railyard.__all__)}))
"""
    names = _fresh(probe)
    assert set(names["all"]) <= set(names["dir"])
    assert names["dir"] == sorted(names["dir"])


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'railyard' has no attribute 'NoSuchThing'"):
        railyard.NoSuchThing  # type: ignore[attr-defined]
    assert not hasattr(railyard, "NoSuchThing")


@pytest.mark.parametrize(
    ("name", "module"),
    [
        pytest.param("SqliteStore", "railyard.store.sqlite", id="sqlite"),
        pytest.param("PostgresStore", "railyard.store.postgres", id="postgres"),
        pytest.param("DurablePersistence", "railyard.durable", id="durable"),
        pytest.param("run_worker", "railyard.worker", id="worker"),
    ],
)
def test_from_import_of_a_lazy_name(name: str, module: str) -> None:
    probe = f"""
import json, sys
from railyard import {name}
print(json.dumps({name} is getattr(sys.modules[{module!r}], {name!r})))
"""
    assert _fresh(probe) is True


def test_the_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import railyard

    assert railyard.__version__ == version("railyard-graph")
