"""Damaged run files: a clear railyard error naming the file and line, and no stored byte changed.

Only a torn last line (the start of a record, cut short by a writer dying mid-append) is
skipped on read and cut off by the next driver; a complete record that lost only its
newline is a record like any other.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from railyard import FileStore
from railyard.durable import DurablePersistence
from railyard.exceptions import CorruptRunError
from railyard.persistence.file import FileStatePersistence
from railyard.store.file import TornRecordWarning, UnreadableRunWarning
from railyard.testing._sample import CountTo, CrashState, Effects, Tick, count_graph, crash_graph

pytestmark = pytest.mark.anyio


def _digest(folder: Path) -> dict[str, str]:
    """The sha256 of every file in `folder`, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


async def _waiting_run(store: FileStore, run_id: str = "r") -> Path:
    """A run of `count_graph` stopped after two of its five steps; its file."""
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, run_id)
    async with count_graph.iter(CountTo(5), state=CrashState(), persistence=persistence) as run:
        await run.next()
        await run.next()
    return store.path(run_id)


async def _every_attempt_fails(store: FileStore, run_id: str, match: str) -> None:
    """Reading, listing, locking (which repairs a torn line) and resuming change nothing and fail clearly."""
    folder = store.directory
    before = _digest(folder)
    with pytest.raises(CorruptRunError, match=match) as info:
        await store.read(run_id)
    assert info.value.run_id == run_id
    assert str(info.value).endswith("Nothing was changed; fix the data or the types, then resume.")
    with pytest.warns(UnreadableRunWarning, match=rf"{run_id}\.jsonl is left out of the run list: .*{match}"):
        assert run_id not in [i.run_id for i in await store.runs()]
    async with store.lock(run_id):
        pass
    with pytest.raises(CorruptRunError, match=match):
        await count_graph.resume(store, run_id)
    with pytest.raises(CorruptRunError, match=match):
        await count_graph.run(CountTo(1), state=CrashState(), persistence=DurablePersistence(store, run_id))
    with pytest.warns(UnreadableRunWarning):
        assert await store.claim() is None
    assert _digest(folder) == before


def _at(path: Path, line: int) -> str:
    return rf"Run 'r' in {re.escape(str(path))} line {line}: record {line} cannot be read: "


# -- 1. a complete last record missing only its newline ------------------------------------------


async def test_a_complete_last_record_without_its_newline_is_kept_and_its_step_never_runs_again(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "runs")
    effects = Effects(str(tmp_path / "effects.log"))
    persistence: DurablePersistence[CrashState, int] = DurablePersistence(store, "r")
    async with crash_graph.iter(Tick(4), state=CrashState(), deps=effects, persistence=persistence) as run:
        await run.next()
        await run.next()
    path = store.path("r")
    whole = path.read_bytes()
    assert json.loads(whole.splitlines()[-1])["kind"] == "step_finished"
    records = await store.read("r")
    path.write_bytes(whole[:-1])  # the record is all there; only its newline is missing
    before = _digest(store.directory)

    assert await store.read("r") == records  # no TornRecordWarning (warnings are errors here)
    assert [info.steps for info in await store.runs()] == [2]
    assert _digest(store.directory) == before

    result = await crash_graph.resume(store, "r", deps=effects)
    assert result.state.count == 4
    steps = (tmp_path / "effects.log").read_text().splitlines()
    assert len(steps) == 4 == len(set(steps)), "a finished step ran again"
    assert path.read_bytes().startswith(whole)  # the newline was added before the next record
    assert sorted(p.name for p in store.directory.iterdir()) == ["r.jsonl", "r.lock"]  # nothing cut off


async def test_file_persistence_keeps_a_complete_last_record_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    persistence: FileStatePersistence[CrashState, int] = FileStatePersistence(path)
    async with count_graph.iter(CountTo(3), state=CrashState(), persistence=persistence) as run:
        await run.next()
    whole = path.read_bytes()
    path.write_bytes(whole[:-1])
    result = await count_graph.resume(FileStatePersistence(path))
    assert result.output == 3
    assert path.read_bytes().startswith(whole)


# -- 2. a zero-byte run file ------------------------------------------------------------------------


async def test_a_zero_byte_run_file_is_corrupt_not_an_empty_run(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    path = await _waiting_run(store)
    path.write_bytes(b"")
    await _every_attempt_fails(store, "r", _at(path, 1) + r"the file is empty, .*Delete it to start the run anew")


async def test_a_run_file_is_never_created_empty(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(ValueError, match=r"cannot write run 'r' without records"):
        await store.create("r", [])
    with pytest.raises(ValueError, match=r"cannot write run 'r' without records"):
        await store.replace("r", [])
    assert _digest(tmp_path) == {}


async def test_file_persistence_on_a_zero_byte_file_names_it_as_pydantic_graph_refuses_it(tmp_path: Path) -> None:
    # pydantic-graph 1.96.1 raises a ValidationError ("EOF while parsing") on every use of an
    # empty file; railyard raises a CorruptRunError naming it, and writes nothing into it.
    path = tmp_path / "run.json"
    path.touch()
    match = rf"Run 'run' in {re.escape(str(path))} line 1: record 1 cannot be read: the file is empty"
    persistence: FileStatePersistence[CrashState, int] = FileStatePersistence(path)
    persistence.set_graph_types(count_graph)
    with pytest.raises(CorruptRunError, match=match):
        await persistence.load_all()
    with pytest.raises(CorruptRunError, match=match):
        await persistence.load_next()
    with pytest.raises(CorruptRunError, match=match):
        await count_graph.run(CountTo(2), state=CrashState(), persistence=FileStatePersistence(path))
    with pytest.raises(CorruptRunError, match=match):
        await count_graph.resume(FileStatePersistence(path))
    assert path.read_bytes() == b""
    assert _digest(tmp_path) == {
        "run.json": hashlib.sha256(b"").hexdigest(),
        "run.json.lock": hashlib.sha256(b"").hexdigest(),  # taken by the run and the resume
    }


async def test_file_persistence_on_an_empty_pydantic_graph_list_starts_a_run(tmp_path: Path) -> None:
    # pydantic-graph reads `[]` as a file with no snapshots yet, in which a run may start.
    path = tmp_path / "run.json"
    path.write_bytes(b"[]")
    persistence: FileStatePersistence[CrashState, int] = FileStatePersistence(path)
    persistence.set_graph_types(count_graph)
    assert await persistence.load_all() == []
    assert await persistence.load_next() is None
    result = await count_graph.run(CountTo(2), state=CrashState(), persistence=FileStatePersistence(path))
    assert result.output == 2
    assert (tmp_path / "run.json.pydantic-graph").read_bytes() == b"[]"
    assert json.loads(path.read_bytes().splitlines()[0])["kind"] == "run_created"


# -- 3. garbage, 4. JSON that is not a record, 5. bytes that are not UTF-8 --------------------------


def _damage(path: Path, line: int, replacement: bytes, *, newline: bool = True) -> None:
    """Put `replacement` in place of line `line` (1-based; one past the end: added); end the file with `newline`."""
    lines = path.read_bytes().splitlines()
    lines[line - 1 : line] = [replacement]
    path.write_bytes(b"\n".join(lines) + (b"\n" if newline else b""))


_WHERE = [
    pytest.param(2, True, id="middle"),
    pytest.param(6, True, id="last"),
    pytest.param(6, False, id="last-without-newline"),
]


@pytest.mark.parametrize(("line", "newline"), _WHERE)
@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xfe\xff\x00\x81\x93garbage\x07\x00", id="not-utf-8"),
        pytest.param(bytes(range(255, 10, -3)), id="high-to-low-bytes"),
        pytest.param(b"not a record", id="text"),
        pytest.param(b"{this is not json}", id="brace"),
    ],
)
async def test_a_garbage_line_is_not_a_run_record(tmp_path: Path, line: int, newline: bool, garbage: bytes) -> None:
    store = FileStore(tmp_path)
    path = await _waiting_run(store)
    _damage(path, line, garbage, newline=newline)
    with pytest.raises(CorruptRunError) as info:
        await store.read("r")
    assert info.value.record == line
    assert "codec" not in str(info.value)
    assert "utf-16" not in str(info.value)
    await _every_attempt_fails(store, "r", _at(path, line) + r"not a run record: ")


def _with(path: Path, line: int, **changes: object) -> bytes:
    """Line `line` of the file with some fields changed (`None`: removed)."""
    item = json.loads(path.read_bytes().splitlines()[line - 1])
    for name, value in changes.items():
        if value is None:
            del item[name]
        else:
            item[name] = value
    return json.dumps(item).encode()


@pytest.mark.parametrize(("line", "newline"), _WHERE)
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(lambda p: _with(p, 2, kind=None), r"the line has no `kind` field", id="no-kind"),
        pytest.param(
            lambda p: _with(p, 2, ts=None, record=None), r"the line has no `ts`, `record` fields", id="no-ts-record"
        ),
        pytest.param(
            lambda p: b'{"foo": 1}', r"the line is a JSON object without a record's fields \(`kind`, ", id="other"
        ),
        pytest.param(lambda p: b"[1, 2]", r"the line is JSON, but not an object: \[1, 2\]", id="list"),
        pytest.param(lambda p: _with(p, 2, status="done"), r"`status` must be one of created, ", id="status"),
        pytest.param(lambda p: _with(p, 2, ts="soon"), r'`ts` must be a number, not "soon"', id="ts"),
        pytest.param(lambda p: _with(p, 2, record=[1]), r"`record` must be a JSON object, not \[1\]", id="record"),
    ],
)
async def test_json_that_is_not_a_record_names_the_missing_or_wrong_field(
    tmp_path: Path, line: int, newline: bool, make: Callable[[Path], bytes], problem: str
) -> None:
    store = FileStore(tmp_path)
    path = await _waiting_run(store)
    _damage(path, line, make(path), newline=newline)
    await _every_attempt_fails(store, "r", _at(path, line) + r"not a run record: " + problem)


@pytest.mark.parametrize(("line", "newline"), _WHERE)
async def test_bytes_that_are_not_utf8_in_a_record_name_the_line_and_byte(
    tmp_path: Path, line: int, newline: bool
) -> None:
    store = FileStore(tmp_path)
    path = await _waiting_run(store)
    record = path.read_bytes().splitlines()[min(line, 5) - 1]
    at = record.index(b'"node_id":"') + len(b'"node_id":"')
    _damage(path, line, record[:at] + b"\xff" + record[at + 1 :], newline=newline)
    await _every_attempt_fails(
        store,
        "r",
        _at(path, line) + rf"the line holds a run record, but byte {at + 1} of the line is 0xff, which is not UTF-8: "
        r"it was damaged after it was written",
    )


async def test_file_persistence_names_the_file_and_line_of_a_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    persistence: FileStatePersistence[CrashState, int] = FileStatePersistence(path)
    async with count_graph.iter(CountTo(3), state=CrashState(), persistence=persistence) as run:
        await run.next()
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"\x80" + lines[1][1:]
    path.write_bytes(b"".join(lines))
    before = _digest(tmp_path)
    with pytest.raises(
        CorruptRunError,
        match=rf"Run 'run' in {re.escape(str(path))} line 2: record 2 cannot be read: not a run record: "
        r"byte 1 of the line is 0x80, which is not UTF-8",
    ):
        await count_graph.resume(FileStatePersistence(path))
    assert _digest(tmp_path) == before


# -- torn last lines: skipped on read, cut off (and kept aside) by the next driver ------------------


def _cuts(line: bytes) -> list[bytes]:
    """Prefixes of a record line a crash mid-append may leave, one inside a UTF-8 character."""
    text = line.decode().replace('"status":"running"', '"status":"rünning"')
    wide = text.encode()
    inside = wide.index("ü".encode()) + 1
    return [line[:1], line[:17], line[: len(line) // 2], line[:-1], wide[:inside]]


@pytest.mark.parametrize("cut", range(5))
async def test_a_torn_last_line_is_skipped_then_cut_off_and_kept(tmp_path: Path, cut: int) -> None:
    store = FileStore(tmp_path)
    path = await _waiting_run(store)
    complete = path.read_bytes()
    lines = complete.splitlines()
    torn = _cuts(lines[2])[cut]  # a step's start (after the run's creation and its first task), cut short
    path.write_bytes(complete + torn)
    before = _digest(tmp_path)

    with pytest.warns(TornRecordWarning, match=r"r\.jsonl: the last line is incomplete"):
        records = await store.read("r")
    assert len(records) == len(lines)
    assert _digest(tmp_path) == before  # reading changes nothing

    with pytest.warns(TornRecordWarning, match=r"cut off an incomplete last line .* kept in r\.jsonl\.torn"):
        result = await count_graph.resume(store, "r")
    assert result.output == 5
    assert path.read_bytes().startswith(complete)
    assert (tmp_path / "r.jsonl.torn").read_bytes() == torn + b"\n"


async def test_a_torn_line_can_only_be_the_last_one_appended_not_the_first(tmp_path: Path) -> None:
    # a run file is created whole with its first record: a first line cut short is damage
    store = FileStore(tmp_path)
    path = await _waiting_run(store)
    path.write_bytes(path.read_bytes()[:40])
    await _every_attempt_fails(store, "r", _at(path, 1) + r"not a run record: the line is not JSON")


async def test_a_torn_last_line_behind_a_damaged_one_is_left_for_the_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    path = await _waiting_run(store)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"garbage\n"
    path.write_bytes(b"".join(lines) + lines[2][:30])
    before = _digest(tmp_path)
    with pytest.raises(CorruptRunError, match=_at(path, 2)):
        await count_graph.resume(store, "r")
    assert _digest(tmp_path) == before
