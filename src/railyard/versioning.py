"""Changing a graph under running runs: shapes compared on resume, and migrations for old runs.

Every stored run records the shape of the graph that created it (`railyard._fingerprint`:
the graph's `version`, its state's JSON schema, its nodes and edges, each node's schema).
When a run is resumed, the shape it was stored with is compared with the resuming
graph's, as far as this run needs it:

- a node (or step) the run has a task for, or whose steps its history holds (node API),
  must still exist; a fork the run's pending branches are inside, and a join holding
  their values, too;
- a field the new code needs and old records lack (added without a default) refuses the
  run; so does a field whose type no longer accepts what was stored;
- everything else resumes: a node or edge added, a node the run never needs again
  removed, a field added with a default, a type widened (`int` to `int | None`).

A refused run raises one `GraphVersionError` listing every difference, and nothing is
stored. To take such runs forward, raise the graph's version and say how to upgrade what
old runs stored:

```python
def add_priority(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "priority": "normal"}


graph = Graph(
    nodes=[Receive, Approve, Ship],
    version=2,
    migrations=[Migration(from_version=1, state=add_priority, renames={"Review": "Approve"})],
)
```

Stored records are never rewritten: a run stored by version 1 is migrated as it is read,
record by record (its state, rebuilt whole where it was stored by change; then each task's
payload; then the node ids renamed), through every migration from its version up to the
graph's. A resume by a new version first appends a `run_created` record saying the run
goes on at that version (see `railyard.store.records.DIALECT`), so what the new code
writes is never migrated again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from time import time
from typing import TYPE_CHECKING, Any

from railyard.exceptions import GraphSetupError, GraphVersionError

if TYPE_CHECKING:
    from railyard.store import RunStatus, RunStore, StoredRecord
    from railyard.store.codec import RecordCodec
    from railyard.store.records import RunCreated, RunRecord

__all__ = ("Migration",)

# JSON values cross this module's boundary (what a run stored, what a migration returns): `Any`.
Json = Any


@dataclass(frozen=True, slots=True)
class Migration:
    """How to upgrade what a run stored under version `from_version` of a graph to the next version.

    Give a graph one per version it has had: `Graph(..., version=3, migrations=[Migration(1, ...),
    Migration(2, ...)])`; a run stored by version 1 goes through both. Each function takes the
    stored JSON (dicts, lists, strings, numbers) and returns the upgraded JSON; it gets a copy,
    and is called every time the run is read (it should not have side effects). A run's result
    (its `End`) and the payloads of signals are kept as stored.

    Raises:
        GraphSetupError: `from_version` is not a whole number of at least 1, or a field is not
            what it should be (a function, a mapping of node ids).
    """

    from_version: int
    """The version whose stored JSON this upgrades (to `from_version + 1`)."""
    state: Callable[[Json], Json] | None = None
    """Upgrades the state's JSON (`None`: the state is kept as stored)."""
    nodes: Mapping[str, Callable[[Json], Json]] = field(default_factory=dict[str, Callable[[Json], Json]])
    """Upgrades a task's payload, by the node id it was stored under: a node-API node's fields
    (without its `node_id`), or a builder step's input."""
    renames: Mapping[str, str] = field(default_factory=dict[str, str])
    """Node ids renamed in the next version: `{"Review": "Approve"}` (applied after `nodes`)."""

    def __post_init__(self) -> None:
        if isinstance(self.from_version, bool) or not isinstance(self.from_version, int) or self.from_version < 1:
            raise GraphSetupError(
                f"Migration(from_version={self.from_version!r}): the version it upgrades from must be a whole "
                f"number of at least 1 (a graph's first version is 1)."
            )
        if self.state is not None and not callable(self.state):
            raise GraphSetupError(
                f"Migration(from_version={self.from_version}, state={self.state!r}): `state` must be a function "
                f"taking the stored state's JSON and returning the upgraded JSON."
            )
        for node_id, upgrade in self.nodes.items():
            if not callable(upgrade):
                raise GraphSetupError(
                    f"Migration(from_version={self.from_version}): `nodes[{node_id!r}]` must be a function taking "
                    f"the stored payload's JSON and returning the upgraded JSON, not {upgrade!r}."
                )
        for old, new in self.renames.items():
            if not isinstance(old, str) or not isinstance(new, str):
                raise GraphSetupError(
                    f"Migration(from_version={self.from_version}): `renames` maps node ids to node ids (strings); "
                    f"got {old!r}: {new!r}."
                )


# -- a graph's version ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphVersion:
    """What a graph says about its version: recorded when a run is created, compared when one is resumed."""

    name: str | None
    """The graph's name."""
    shape: dict[str, Any]
    """The graph's shape (`railyard._fingerprint`)."""
    fingerprint: str
    """The digest of `shape`."""
    migrations: Mapping[int, Migration]
    """The graph's migrations, by the version each upgrades from."""

    @property
    def version(self) -> int:
        """The graph's version."""
        return _version_of(self.shape)

    @property
    def builder(self) -> bool:
        """Whether the graph is a builder graph (else a node-API graph)."""
        return self.shape.get("api") == "builder"

    def created(self, graph: str | None) -> RunCreated:
        """The record saying a run goes on from here by this version of the graph."""
        from railyard._version import railyard_version
        from railyard.store.records import DIALECT, RunCreated

        return RunCreated(graph, self.fingerprint, railyard_version(), DIALECT, time(), shape=self.shape)


def check_migrations(version: Any, migrations: Sequence[Migration], node_ids: Collection[str], where: str) -> None:
    """Refuse a graph's `version` and `migrations` that cannot work (at the graph's construction).

    Raises:
        GraphSetupError: the version is not a whole number of at least 1, a migration is not a
            `Migration`, two upgrade from one version, one upgrades from the graph's version or a
            later one, or a node renamed ends up as no node of the graph.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise GraphSetupError(f"{where}(version={version!r}): a graph's version is a whole number of at least 1.")
    seen: dict[int, Migration] = {}
    for migration in migrations:
        if not isinstance(migration, Migration):
            raise GraphSetupError(
                f"{where}(migrations=[...]) takes `railyard.versioning.Migration` objects, got {migration!r}."
            )
        if migration.from_version in seen:
            raise GraphSetupError(
                f"{where}(migrations=[...]) has two migrations from version {migration.from_version}; "
                f"give one per version."
            )
        if migration.from_version >= version:
            raise GraphSetupError(
                f"{where}(version={version}) has a migration from version {migration.from_version}: a migration "
                f"upgrades an older version. Raise `version=` to {migration.from_version + 1} or more."
            )
        seen[migration.from_version] = migration
    for start, migration in seen.items():
        for old, new in migration.renames.items():
            final = _renamed(new, start + 1, version, seen)
            if final not in node_ids:
                raise GraphSetupError(
                    f"Migration(from_version={start}) renames node `{old}` to `{new}`, which "
                    f"{'is' if final == new else f'becomes `{final}`, which is'} no node of the graph "
                    f"(its nodes: {', '.join(sorted(node_ids))})."
                )


def graph_version(graph: Any) -> GraphVersion:
    """The version of a node-API or builder graph."""
    from railyard._fingerprint import builder_fingerprint, builder_shape, node_fingerprint, node_shape

    if hasattr(graph, "node_defs"):
        shape, fingerprint = node_shape(graph), node_fingerprint(graph)
    else:
        shape, fingerprint = builder_shape(graph), builder_fingerprint(graph)
    migrations: Sequence[Migration] = getattr(graph, "migrations", ())
    return GraphVersion(graph.name, shape, fingerprint, {m.from_version: m for m in migrations})


# -- resuming ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Segment:
    """The records a run stored from one `run_created` on: one version and shape of its graph."""

    start: int
    """The index of the segment's first record."""
    version: int
    shape: dict[str, Any] | None
    fingerprint: str | None


def check_resume(
    current: GraphVersion, store: RunStore, run_id: str, stored: Sequence[StoredRecord], codec: RecordCodec
) -> RunCreated | None:
    """Check that `current` can resume the stored run; return the record to append first, if any.

    The record (a `run_created` of `current`) is due when the run's latest records were
    written by another version or shape of the graph; append it with `stamp` once the
    run is read and about to go on. A run that ended or was cancelled, or that a graph of
    another name created, is not checked (its resume is refused for that).

    Raises:
        GraphVersionError: the graph changed in ways the run needs, or no migration upgrades
            the version it was stored by (nothing was stored).
    """
    from railyard.store import RunStatus

    if not stored or stored[-1].status in (RunStatus.ENDED, RunStatus.CANCELLED):
        return None
    recorded = stored[0].graph
    if recorded is not None and current.name is not None and recorded != current.name:
        return None  # another graph's run: refused as such (`GraphMismatchError`), not compared
    segments = _segments(stored)
    latest = segments[-1]
    if all(segment.fingerprint == current.fingerprint for segment in segments):
        return None  # stored by this very shape: nothing to compare
    version = current.version
    if latest.version > version:
        raise _refuse(
            current,
            store,
            run_id,
            latest.version,
            [f"the run was stored by version {latest.version} of the graph, newer than this one"],
            advice="Resume it with the newer code (a worker running it picks it up).",
        )
    missing = sorted({v for s in segments for v in range(s.version, version) if v not in current.migrations})
    if missing:
        raise _refuse(
            current,
            store,
            run_id,
            latest.version,
            [f"no migration upgrades what version {v} stored" for v in missing],
            advice=f"Add {_spelled(current, missing[0])} for each.",
        )
    uses = _uses(stored, segments, current)
    differences = [] if uses is None else list(dict.fromkeys(_differences(segments, current, uses)))
    if differences:
        raise _refuse(
            current,
            store,
            run_id,
            latest.version,
            differences,
            advice=f"Give each new field a default, or raise the graph's version and add a migration that "
            f"upgrades what the run stored: {_spelled(current, latest.version, bump=True)}.",
            unreadable=_first_unreadable(run_id, store, stored, codec, current),
        )
    return None if latest.fingerprint == current.fingerprint else current.created(stored[0].graph or current.name)


async def stamp(store: RunStore, run_id: str, codec: RecordCodec, record: RunCreated, status: RunStatus) -> None:
    """Append `record` (from `check_resume`) to the run, leaving its status as it was.

    Call it holding the run's lock, before the resumed run writes anything: the records
    after it are the new version's.
    """
    stored = codec.stored(record, node_id=None)
    await store.append(run_id, [replace(stored, status=status)])


def decode_migrated(
    run_id: str, store: RunStore, stored: Sequence[StoredRecord], codec: RecordCodec, current: GraphVersion
) -> list[RunRecord] | None:
    """A run's records, those stored by older versions migrated to `current`; `None` if none needs it.

    Raises:
        CorruptRunError: a record is damaged (not valid JSON, a patch that does not fit).
        GraphVersionError: a migration raised, or a migrated record still does not fit the graph.
    """
    from railyard.exceptions import CorruptRunError
    from railyard.store._deltas import PatchError, StateRebuild
    from railyard.store.codec import RecordDecodeError

    version = current.version
    if not any(s.version < version for s in _segments(stored)):
        return None
    segments = iter(_segments(stored))
    segment = next(segments)
    following = next(segments, None)
    raw = StateRebuild()  # the states as stored (older versions' states are patched against their own)
    records: list[RunRecord] = []
    for index, item in enumerate(stored):
        while following is not None and index >= following.start:
            segment, following = following, next(segments, None)
        try:
            data = json.loads(item.body)
            if not isinstance(data, dict):
                raise RecordDecodeError("a record must be a JSON object with a `kind`")
            if "state" in data or "state_patch" in data:
                data["state"] = raw.decode(data)
                data.pop("state_patch", None)
        except (ValueError, PatchError) as err:
            raise CorruptRunError(run_id, repr(store), index + 1, str(err)) from None
        if segment.version < version:
            chain = [current.migrations[v] for v in range(segment.version, version)]
            try:
                _migrate(data, chain)
            except _MigrationFailed as failed:  # the user's migration: reported with where it ran
                error = failed.error
                raise _refuse(
                    current,
                    store,
                    run_id,
                    segment.version,
                    [f"Migration(from_version={failed.from_version}) raised {type(error).__name__}: {error}"],
                    advice="Fix the migration (it gets the stored JSON and returns the upgraded JSON).",
                    unreadable=(index + 1, f"a migration raised {type(error).__name__}"),
                ) from error
        try:
            records.append(codec.load(data, StateRebuild()))
        except RecordDecodeError as err:
            if segment.version == version:
                raise CorruptRunError(run_id, repr(store), index + 1, str(err)) from None
            raise _refuse(
                current,
                store,
                run_id,
                segment.version,
                [f"what version {segment.version} stored does not fit the graph once migrated"],
                advice="Fix the migrations so they return what this version of the graph reads.",
                unreadable=(index + 1, str(err)),
            ) from None
    return records


def _migrate(data: dict[str, Any], chain: Sequence[Migration]) -> None:
    """Upgrade one stored record (JSON, its state whole) through `chain`, in place."""
    from railyard._copy import deep_copy

    if "state" in data:
        state = deep_copy(data["state"])  # the stored state is the base of later patches: never changed
        for migration in chain:
            if migration.state is not None:
                state = _call(migration, migration.state, state)
        data["state"] = state
    for key in ("tasks", "next_tasks"):
        if isinstance(data.get(key), list):
            data[key] = [_migrate_task(task, chain) for task in data[key]]
    for key in ("node_id", "join_id"):
        if isinstance(data.get(key), str):
            data[key] = _rename(data[key], chain)
    close_id = data.get("close_id")
    if isinstance(close_id, str) and close_id.startswith("join:"):
        join_id, _, fork_run = close_id[len("join:") :].partition(":")
        data["close_id"] = f"join:{_rename(join_id, chain)}:{fork_run}"


def _migrate_task(task: Any, chain: Sequence[Migration]) -> Any:
    from railyard._copy import deep_copy

    if not isinstance(task, dict) or not isinstance(task.get("node_id"), str):
        return task  # not a task as railyard writes them: the codec says what is wrong
    node_id: str = task["node_id"]
    payload: Any = deep_copy(task.get("inputs"))
    tagged = isinstance(payload, dict) and payload.get("node_id") == node_id  # a node-API node
    if tagged:
        del payload["node_id"]
    for migration in chain:
        upgrade = migration.nodes.get(node_id)
        if upgrade is not None:
            payload = _call(migration, upgrade, payload)
        node_id = migration.renames.get(node_id, node_id)
    if tagged and isinstance(payload, dict):
        payload = {**payload, "node_id": node_id}
    migrated = {**task, "node_id": node_id, "inputs": payload}
    stack = task.get("fork_stack")
    if isinstance(stack, list):
        migrated["fork_stack"] = [
            [_rename(item[0], chain), *item[1:]]
            if isinstance(item, list) and item and isinstance(item[0], str)
            else item
            for item in stack
        ]
    return migrated


class _MigrationFailed(Exception):
    """A migration's function raised."""

    def __init__(self, from_version: int, error: Exception) -> None:
        super().__init__(from_version, error)
        self.from_version = from_version
        self.error = error


def _call(migration: Migration, upgrade: Callable[[Json], Json], value: Json) -> Json:
    try:
        return upgrade(value)
    except Exception as error:  # the user's code: reported with the migration it belongs to
        raise _MigrationFailed(migration.from_version, error) from error


def _rename(node_id: str, chain: Sequence[Migration]) -> str:
    for migration in chain:
        node_id = migration.renames.get(node_id, node_id)
    return node_id


def _renamed(node_id: str, start: int, version: int, migrations: Mapping[int, Migration]) -> str:
    """`node_id` of version `start` as the graph's `version` calls it."""
    return _rename(node_id, [migrations[v] for v in range(start, version) if v in migrations])


def _version_of(shape: Mapping[str, Any] | None) -> int:
    version = shape.get("version", 1) if shape is not None else 1
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def _segments(stored: Sequence[StoredRecord]) -> list[_Segment]:
    """The run's segments, one per `run_created` (records before any: version 1, shape unknown)."""
    segments: list[_Segment] = []
    for index, item in enumerate(stored):
        if item.kind != "run_created":
            continue
        try:
            data = json.loads(item.body)
        except ValueError:
            continue  # damaged: decoding the run says so
        shape = data.get("shape") if isinstance(data, dict) else None
        shape = shape if isinstance(shape, dict) else None
        fingerprint = data.get("fingerprint") if isinstance(data, dict) and shape is not None else None
        segments.append(_Segment(index, _version_of(shape), shape, fingerprint))
    if not segments or segments[0].start != 0:
        segments.insert(0, _Segment(0, 1, None, None))
    return segments


def _refuse(
    current: GraphVersion,
    store: RunStore,
    run_id: str,
    stored_version: int,
    differences: list[str],
    *,
    advice: str,
    unreadable: tuple[int, str | None] = (1, None),
) -> GraphVersionError:
    record, problem = unreadable
    return GraphVersionError(
        run_id,
        repr(store),
        current.name,
        differences,
        stored_version=stored_version,
        version=current.version,
        advice=advice,
        record=record,
        problem=problem,
    )


def _first_unreadable(
    run_id: str, store: RunStore, stored: Sequence[StoredRecord], codec: RecordCodec, current: GraphVersion
) -> tuple[int, str | None]:
    """The first record (1-based) `current` cannot read, and why (`(1, None)`: it reads them all)."""
    from railyard.exceptions import CorruptRunError
    from railyard.store._deltas import StateRebuild
    from railyard.store.codec import RecordDecodeError

    try:
        if current.migrations and decode_migrated(run_id, store, stored, codec, current) is not None:
            return 1, None
    except GraphVersionError as err:
        return err.record, err.problem
    except CorruptRunError as err:
        return err.record, None
    states = StateRebuild()
    for index, item in enumerate(stored, start=1):
        try:
            codec.decode(item.body, states)
        except RecordDecodeError as err:
            return index, str(err)
    return 1, None


def _spelled(current: GraphVersion, from_version: int, *, bump: bool = False) -> str:
    """How to declare a migration from `from_version`, in the graph's own API."""
    face = "GraphBuilder" if current.builder else "Graph"
    version = max(current.version, from_version + 1) if bump else current.version
    return f"{face}(..., version={version}, migrations=[Migration(from_version={from_version}, ...)])"


# -- what a run needs of its graph ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Need:
    """A node the stored run needs of the graph that resumes it."""

    stored_id: str
    """The node's id where the run named it."""
    current_id: str
    """Its id in the resuming graph (renamed by the migrations from the version that named it)."""
    segment: int
    """The segment of the record that named it."""
    why: str
    """`task` (a pending task), `fork` (pending branches are inside it), `join` (it holds values of
    open branches) or `history` (a node-API run reads each step's node back)."""


@dataclass(slots=True)
class _Uses:
    """What a stored run needs of the graph that resumes it, read from its records' JSON."""

    needs: list[_Need] = field(default_factory=list[_Need])
    written: dict[int, set[str]] = field(default_factory=dict[int, set[str]])
    """By segment: the ids of the nodes whose tasks its records hold (their payloads are read back)."""
    states: set[int] = field(default_factory=set[int])
    """The segments with a record holding a state."""


def _uses(stored: Sequence[StoredRecord], segments: Sequence[_Segment], current: GraphVersion) -> _Uses | None:
    """What the run needs (`None`: a record is damaged; decoding the run says how)."""
    version = current.version
    chains = [[current.migrations[v] for v in range(s.version, version) if v in current.migrations] for s in segments]
    uses = _Uses()
    scheduled: dict[str, tuple[dict[str, Any], int]] = {}
    done: set[str] = set()
    finished: list[str] = []
    closed: set[str] = set()
    index = 0
    try:
        for position, item in enumerate(stored):
            while index + 1 < len(segments) and position >= segments[index + 1].start:
                index += 1
            data = json.loads(item.body)
            kind = data["kind"]
            if "state" in data or "state_patch" in data:
                uses.states.add(index)
            if kind == "tasks_scheduled":
                tasks = data["tasks"]
                done.update(data.get("replaces", ()))
            elif kind == "step_finished":
                tasks = data["next_tasks"]
                if data.get("task_id"):
                    done.add(data["task_id"])
                    finished.append(data["task_id"])
            elif kind == "join_closed":
                tasks = data["next_tasks"]
                join_id, _, fork_run = str(data["close_id"]).removeprefix("join:").partition(":")
                closed.add(f"{_rename(join_id, chains[index])}:{fork_run}")
            else:
                continue
            for task in tasks:
                scheduled.setdefault(task["task_id"], (task, index))
                uses.written.setdefault(index, set()).add(task["node_id"])

        def need(node_id: str, segment: int, why: str) -> None:
            uses.needs.append(_Need(node_id, _rename(node_id, chains[segment]), segment, why))

        history: list[tuple[str, int]] = []
        for task_id, (task, segment) in scheduled.items():
            if task_id in done:
                history.append((task["node_id"], segment))
                continue
            need(task["node_id"], segment, "task")
            for fork_id, *_ in task["fork_stack"]:
                need(fork_id, segment, "fork")
        for task_id in finished:
            task, segment = scheduled.get(task_id, ({}, 0))
            shape = segments[segment].shape or {}
            if task and ((shape.get("nodes") or {}).get(task["node_id"]) or {}).get("kind") == "join":
                join_id = _rename(task["node_id"], chains[segment])
                if any(f"{join_id}:{item[1]}" not in closed for item in task["fork_stack"]):
                    need(task["node_id"], segment, "join")
        if not current.builder:  # a node-API run reads every step's node back: its history needs them all
            for node_id, segment in history:
                need(node_id, segment, "history")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    return uses


_BECAUSE = {
    "task": "and the run has a task for it",
    "fork": "and the run has branches inside it",
    "join": "and it holds values of the run's open branches",
    "history": "and the run's history has a step of it",
}


def _differences(segments: Sequence[_Segment], current: GraphVersion, uses: _Uses) -> list[str]:
    """What in `current` differs from the shapes the run was stored by, as far as the run needs it."""
    version = current.version
    new_nodes: Mapping[str, Any] = current.shape.get("nodes") or {}
    builder = current.builder
    out: list[str] = []
    named: set[tuple[str, str]] = set()

    def old_node(need: _Need) -> dict[str, Any]:
        entry = ((segments[need.segment].shape or {}).get("nodes") or {}).get(need.stored_id)
        return entry if isinstance(entry, dict) else {}

    for need in sorted(uses.needs, key=lambda n: list(_BECAUSE).index(n.why)):
        if (need.stored_id, need.current_id) in named:
            continue
        migrated = segments[need.segment].version < version
        old, new = old_node(need), new_nodes.get(need.current_id)
        kind = {"map": "fork", "start": "node", "end": "node"}.get(old.get("kind", ""), old.get("kind"))
        word = kind or (
            "fork" if need.why == "fork" else "join" if need.why == "join" else "step" if builder else "node"
        )
        if not isinstance(new, dict):
            named.add((need.stored_id, need.current_id))
            if need.current_id != need.stored_id:
                gone = f"is renamed `{need.current_id}` by a migration, which is no node of the graph,"
            elif migrated:
                gone = "is gone, no migration renames it,"
            else:
                gone = "is gone (renamed?)"
            out.append(f"{word} `{need.stored_id}` {gone} {_BECAUSE[need.why]}")
        elif not migrated and old and need.why != "history":
            if old.get("kind") != new.get("kind"):
                named.add((need.stored_id, need.current_id))
                out.append(
                    f"`{need.stored_id}` was a {old.get('kind')} and is now a {new.get('kind')}, {_BECAUSE[need.why]}"
                )
            elif old.get("kind") == "join" and old.get("fork") != new.get("fork"):
                named.add((need.stored_id, need.current_id))
                out.append(
                    f"join `{need.stored_id}` now waits for fork `{new.get('fork')}`, not `{old.get('fork')}`, "
                    f"{_BECAUSE[need.why]}"
                )
    for index, segment in enumerate(segments):
        stored = segment.shape
        if stored is None or segment.version != version:
            continue  # unknown, or upgraded by the migrations: their JSON is theirs to make fit
        old_nodes: Mapping[str, Any] = stored.get("nodes") or {}
        for node_id in sorted(uses.written.get(index, ())):
            before, after = old_nodes.get(node_id), new_nodes.get(node_id)
            if isinstance(before, dict) and isinstance(after, dict) and before.get("schema") and after.get("schema"):
                step = builder and after.get("kind") == "step"
                where = f"the input of step `{node_id}`" if step else f"node `{node_id}`"
                _compare(_Schema(stored, before["schema"]), _Schema(current.shape, after["schema"]), "", where, out)
        if index in uses.states and stored.get("state") and current.shape.get("state"):
            _compare(
                _Schema(stored, stored["state"]), _Schema(current.shape, current.shape["state"]), "", "the state", out
            )
    return out


# -- comparing JSON schemas -------------------------------------------------------------------

_COSMETIC = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$defs"})
_STRUCTURE = frozenset(
    {"anyOf", "oneOf", "allOf", "discriminator", "properties", "required", "items", "additionalProperties", "type"}
)


class _Schema:
    """A part of a JSON schema, with the root its `$ref`s point into."""

    __slots__ = ("node", "root")

    def __init__(self, root: Mapping[str, Any], node: Any) -> None:
        self.root = root
        """What `$ref`s point into (`#/$defs/...`): a graph's shape."""
        self.node: Any = node

    def at(self, node: Any) -> _Schema:
        return _Schema(self.root, node)

    def resolved(self) -> dict[str, Any]:
        """The part with its `$ref` (or a lone `allOf`) followed: what it says itself."""
        node = self.node
        for _ in range(16):
            if not isinstance(node, dict):
                return {}
            ref = node.get("$ref")
            alone = node.get("allOf")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = (self.root.get("$defs") or {}).get(ref[len("#/$defs/") :]) or {}
                node = {**{k: v for k, v in node.items() if k != "$ref"}, **target}
            elif isinstance(alone, list) and len(alone) == 1 and "type" not in node:
                node = {**{k: v for k, v in node.items() if k != "allOf"}, **(alone[0] or {})}
            else:
                return node
        return {}

    def describe(self) -> str:
        """A short name of the type: `integer`, `list of string`, `Order | null`."""
        node = self.resolved()
        union = node.get("anyOf") or node.get("oneOf")
        if isinstance(union, list):
            return " | ".join(self.at(member).describe() for member in union)
        if "enum" in node:
            return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
        if "const" in node:
            return json.dumps(node["const"])
        kind = node.get("type")
        if kind == "array":
            return f"list of {self.at(node.get('items', {})).describe()}"
        if kind == "object" and node.get("title"):
            return str(node["title"])
        return str(kind) if kind else "any value"


def _compare(
    old: _Schema,
    new: _Schema,
    path: str,
    where: str,
    out: list[str],
    *,
    visiting: frozenset[tuple[int, int]] = frozenset(),
) -> None:
    """Append why values valid under `old` may not validate under `new`, one line each (conservatively)."""
    if _accepts(old, new, {}):
        return
    a, b = old.resolved(), new.resolved()
    pair = (id(a), id(b))
    if pair in visiting:
        return  # a recursive type, reported where it was first met
    visiting = visiting | {pair}
    before = len(out)
    if a.get("type") == b.get("type") == "object" and not _union(a) and not _union(b):
        for problem, name, old_part, new_part in _field_problems(old, new, a, b, {}):
            if problem == "added":
                out.append(f"{_field(path, name, where)} added without a default")
            elif problem == "removed":
                out.append(f"{_field(path, name, where)} removed, and unknown fields are refused")
            else:
                _compare(old.at(old_part), new.at(new_part), _join(path, name), where, out, visiting=visiting)
    elif a.get("type") == b.get("type") == "array" and "items" in a and "items" in b:
        _compare(old.at(a["items"]), new.at(b["items"]), f"{path}[]", where, out, visiting=visiting)
    if len(out) == before:
        what = _field(path, None, where) if path else where
        out.append(f"{what} changed type (was {old.describe()}, now {new.describe()})")


def _accepts(old: _Schema, new: _Schema, memo: dict[tuple[int, int], bool]) -> bool:
    """Whether every value `old` describes validates under `new` (`False` when unsure)."""
    a, b = old.resolved(), new.resolved()
    pair = (id(a), id(b))
    if pair in memo:
        return memo[pair]
    memo[pair] = True  # a recursive type is taken to accept itself while it is compared
    result = _accepts_resolved(old, new, a, b, memo)
    memo[pair] = result
    return result


def _accepts_resolved(
    old: _Schema, new: _Schema, a: dict[str, Any], b: dict[str, Any], memo: dict[tuple[int, int], bool]
) -> bool:
    if not any(key not in _COSMETIC for key in b):
        return True  # any value
    old_union, new_union = _union(a), _union(b)
    if old_union is not None:
        return all(_accepts(old.at(member), new, memo) for member in old_union)
    if new_union is not None:
        return any(_accepts(old, new.at(member), memo) for member in new_union)
    old_constraints, new_constraints = _constraints(a), _constraints(b)
    if isinstance(new_constraints.get("enum"), list):  # a choice may gain values
        allowed = new_constraints.pop("enum")
        was = old_constraints.pop("enum", [old_constraints.pop("const")] if "const" in old_constraints else None)
        if not isinstance(was, list) or any(value not in allowed for value in was):
            return False
    if old_constraints != new_constraints:
        return False  # formats, bounds: compared as they are
    kind_a, kind_b = a.get("type"), b.get("type")
    if kind_a != kind_b:
        return kind_a == "integer" and kind_b == "number"
    if kind_a == "object":
        return not _field_problems(old, new, a, b, memo)
    if kind_a == "array":
        if "items" in a and "items" in b:
            return _accepts(old.at(a["items"]), new.at(b["items"]), memo)
        return "items" not in b
    return True


def _field_problems(
    old: _Schema, new: _Schema, a: dict[str, Any], b: dict[str, Any], memo: dict[tuple[int, int], bool]
) -> list[tuple[str, str, Any, Any]]:
    """What of object `a`'s values object `b` refuses: (`added`/`changed`/`removed`, field, old, new)."""
    problems: list[tuple[str, str, Any, Any]] = []
    old_fields: Mapping[str, Any] = a.get("properties") or {}
    new_fields: Mapping[str, Any] = b.get("properties") or {}
    for name in b.get("required") or ():
        if name not in old_fields:
            problems.append(("added", name, None, None))
    for name, schema in new_fields.items():
        if name in old_fields and not _accepts(old.at(old_fields[name]), new.at(schema), memo):
            problems.append(("changed", name, old_fields[name], schema))
    extra_a, extra_b = a.get("additionalProperties"), b.get("additionalProperties")
    if extra_b is False:
        problems.extend(("removed", name, None, None) for name in old_fields if name not in new_fields)
    if isinstance(extra_a, dict) and isinstance(extra_b, dict) and not _accepts(old.at(extra_a), new.at(extra_b), memo):
        problems.append(("changed", "*", extra_a, extra_b))  # a mapping's values
    return problems


def _union(schema: Mapping[str, Any]) -> list[Any] | None:
    members = schema.get("anyOf", schema.get("oneOf"))
    return members if isinstance(members, list) else None


def _constraints(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key not in _COSMETIC and key not in _STRUCTURE}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _field(path: str, name: str | None, where: str) -> str:
    full = _join(path, name) if name is not None else path
    if where == "the state":
        return f"state field `{full}`"
    return f"field `{full}` of {where}"
