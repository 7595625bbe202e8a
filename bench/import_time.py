"""How long `import railyard` takes, beside its dependencies and pydantic-graph 1.96.1's.

Each figure is the wall time of a fresh `python -c "import X"` minus that of a fresh
`python -c pass` (the interpreter's own start): the minimum over N subprocesses (15;
`--quick`: 5), taken in rounds that go through every statement once, so that load from
elsewhere on the machine falls on all of them alike. Every statement is timed twice:

- **here**: with this environment as it is. With `PYTHONDONTWRITEBYTECODE=1` and no
  `__pycache__` beside railyard's sources, every import compiles railyard's modules;
  the header line says which case this is.
- **cached**: with a warm bytecode cache for everything (`PYTHONPYCACHEPREFIX` set to a
  temporary directory), as in an installed wheel.

"Its dependencies alone" imports exactly the modules from outside the package (and
asyncio) that importing the package loaded, in the order it loaded them. pydantic-graph
is measured when its side environment, `.bench-venvs/pydantic-graph-1.96.1`, exists
(`bench/run.py` makes it); this script makes none.

    .venv/bin/python bench/import_time.py           # N = 15, about a minute
    .venv/bin/python bench/import_time.py --quick   # N = 5
    .venv/bin/python bench/import_time.py --check   # exit 1 if the target is missed
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _report import interpreter, load_average, table
from _venvs import REPO, VENVS, venv_python

TARGET_MS = 100.0
"""`import railyard` takes at most this long, in milliseconds, in either column."""
PG_VERSION = "1.96.1"
PG_VENV = VENVS / f"pydantic-graph-{PG_VERSION}"

RAILYARD = ("railyard", "railyard.builder", "railyard.agent")
PEER = ("pydantic_graph", "pydantic_graph.beta")
RUN_DEPENDENCIES = ("asyncio", "pydantic", "anyio", "opentelemetry.trace")
"""What a first run of a graph imports from outside railyard (its declared dependencies)."""

_LOADED = """
import json, sys
before = set(sys.modules)
import {module}
import sysconfig
paths = sysconfig.get_paths()
stdlib = (paths["stdlib"], paths["platstdlib"])
purelib = (paths["purelib"], paths["platlib"])

def in_stdlib(name):
    if name.partition(".")[0] in sys.stdlib_module_names:
        return True
    file = getattr(sys.modules[name], "__file__", None) or ""
    return file.startswith(stdlib) and not file.startswith(purelib)

print(json.dumps([[name, in_stdlib(name)] for name in sys.modules if name not in before]))
"""
_IMPORT_ALL = """
from importlib import import_module
for name in {names!r}:
    try:
        import_module(name)
    except Exception:  # a module that only exists inside its parent's import
        pass
"""


@dataclass
class Statement:
    """One statement, timed in fresh subprocesses of one interpreter."""

    label: str
    python: Path
    code: str
    loads: str = ""
    """The packages from outside that the statement loads (shown beside it)."""
    seconds: dict[str, list[float]] = field(default_factory=lambda: {"here": [], "cached": []})


def loaded_by(python: Path, module: str) -> list[tuple[str, bool]]:
    """The modules `import module` loads in a fresh `python`, in order, each with whether it is stdlib."""
    done = subprocess.run(
        [str(python), "-c", _LOADED.format(module=module)], capture_output=True, text=True, check=False, cwd=REPO
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"bench: `import {module}` failed in {python}")
    return [(name, stdlib) for name, stdlib in json.loads(done.stdout)]


def dependencies(loaded: list[tuple[str, bool]], own: str) -> list[str]:
    """The modules of `loaded` from outside the package `own` and the standard library, and asyncio."""
    return [
        name
        for name, stdlib in loaded
        if name.partition(".")[0] != own and (not stdlib or name.partition(".")[0] == "asyncio")
    ]


def packages(modules: list[str]) -> str:
    """The top-level packages of `modules`, for display."""
    return ", ".join(sorted({name.partition(".")[0] for name in modules})) or "-"


def statements(python: Path, modules: tuple[str, ...], own: str, suffix: str = "") -> list[Statement]:
    """Each module's import and the import of its dependencies alone."""
    out: list[Statement] = []
    for module in modules:
        deps = dependencies(loaded_by(python, module), own)
        out.append(Statement(f"{module}{suffix}", python, f"import {module}", packages(deps)))
        out.append(Statement("  its dependencies alone", python, _IMPORT_ALL.format(names=deps)))
    return out


def wall(python: Path, code: str, env: dict[str, str]) -> float:
    """Seconds from starting `python -c code` to its exit."""
    start = time.perf_counter()
    done = subprocess.run([str(python), "-c", code], env=env, cwd=REPO, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode())
        raise SystemExit(f"bench: `{code.strip()}` failed in {python}")
    return elapsed


def bytecode_note(python: Path) -> str:
    """Whether, run as here, railyard's modules come from a bytecode cache or are compiled each time."""
    source = REPO / "src" / "railyard" / "__init__.py"
    cached = Path(importlib.util.cache_from_source(str(source))).exists()
    probe = "import sys; print(int(sys.flags.dont_write_bytecode))"
    no_writes = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    if cached:
        return "here: railyard's bytecode is cached beside its sources"
    if no_writes == "1":
        return "here: no bytecode cache is written (PYTHONDONTWRITEBYTECODE): railyard is compiled at every import"
    return "here: railyard's bytecode is written on the first import and read after"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 subprocesses per figure instead of 15")
    parser.add_argument("-n", type=int, default=None, help="subprocesses per figure (default 15)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    rounds = args.n or (5 if args.quick else 15)

    python = Path(sys.executable)
    cases = statements(python, RAILYARD, "railyard")
    run_deps = "import " + ", ".join(RUN_DEPENDENCIES)
    cases.append(Statement("a first run's dependencies", python, run_deps, ", ".join(RUN_DEPENDENCIES)))
    peer = venv_python(PG_VENV)
    if peer.exists():
        cases += statements(peer, PEER, "pydantic_graph", f" ({PG_VERSION})")
    baselines = {p: Statement("pass", p, "pass") for p in {case.python for case in cases}}

    print(f"python: {interpreter(python)}; load average: {load_average()}")
    print(bytecode_note(python))
    if not peer.exists():
        print(f"pydantic-graph: not measured ({PG_VENV.relative_to(REPO)} does not exist; bench/run.py makes it)")
    with tempfile.TemporaryDirectory(prefix="railyard-bench-pyc-") as prefix:
        here = dict(os.environ)
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = prefix
        everything = [*baselines.values(), *cases]
        for case in everything:  # fill the cache, and load the files into the OS's page cache
            wall(case.python, case.code, cached)
            wall(case.python, case.code, here)
        for _ in range(rounds):
            for case in everything:
                case.seconds["here"].append(wall(case.python, case.code, here))
                case.seconds["cached"].append(wall(case.python, case.code, cached))

    def ms(case: Statement, mode: str) -> float:
        return (min(case.seconds[mode]) - min(baselines[case.python].seconds[mode])) * 1000

    rows = [[case.label, f"{ms(case, 'here'):.1f}", f"{ms(case, 'cached'):.1f}", case.loads] for case in cases]
    print()
    print(f"import time, ms: min of {rounds} fresh processes, minus `python -c pass`")
    print(table(["import", "here", "cached", "loads from outside"], rows, right={1, 2}))
    railyard = cases[0]
    worst = max(ms(railyard, "here"), ms(railyard, "cached"))
    verdict = "PASS" if worst <= TARGET_MS else "FAIL"
    print()
    print(
        f"verdict: import railyard takes {ms(railyard, 'here'):.1f} ms here, {ms(railyard, 'cached'):.1f} ms with "
        f"bytecode cached: target <= {TARGET_MS:.0f} ms: {verdict}"
    )
    return 1 if args.check and verdict == "FAIL" else 0


if __name__ == "__main__":
    raise SystemExit(main())
