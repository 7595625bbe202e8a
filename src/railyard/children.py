"""Child runs: a graph run as a step of another graph, with `await ctx.run_child(...)`.

A node, a builder step or an agent's tool runs another graph — a node `Graph`, a
builder `Graph` or an `Agent` — and gets its output back, typed as that graph's output:

```python
@dataclass
class Ship(BaseNode[Order, None, str]):
    child_graphs = (packing,)  # drawn inside `Ship` on the parent's diagram

    async def run(self, ctx: GraphRunContext[Order]) -> End[str]:
        boxes = await ctx.run_child(packing, inputs=ctx.state.items)  # an int: packing's output
        return End(f"{boxes} boxes")
```

The child is a run of its own. In a durable parent it is kept in the parent's store
under a run id made from the parent's run id, the step's id and the call's key
(`child_run_id`), and its first record names the parent (`parent_of`); the parent's
driver drives it, under the child's own lock. In a parent kept in memory, the child runs
in memory too. The key is the call's number in the step attempt (`"0"`, `"1"`, ...; in
an agent's tool, prefixed with the tool's name and call id) unless `key=` names it: give
a key when the number of calls before this one may change between runs of the step.

A step that did not finish runs again from its start (after a crash, on resume, or on a
retry), and `run_child` then finds its child in the store: a child that ended gives its
stored output and nothing runs; a child part-way (or failed) is resumed, so its finished
steps are not run again; a child not there yet is started.

- A child that fails makes the step fail with `ChildRunError`, naming the child's run
  id. The child is stored failed; resuming the parent after a fix runs the step again,
  which resumes the child from its failed step.
- A child that waits for a signal (`ctx.wait_for` in the child) makes the parent's step
  wait too, for the key `child_wait_key(child_run_id, key)` (`'<child run id>/<key>'`),
  with the child's payload type and prompt: the parent is stored `suspended` and raises
  `RunSuspended` naming that key. `signal(store, parent_run_id, that_key, payload)`
  answers it; the parent's next driver or worker passes the answer on to the child (once),
  carries the child on and the step goes on. Answering the child itself
  (`signal(store, child_run_id, key, payload)`) works too, but leaves the parent
  suspended: resume it (`graph.resume(store, parent_run_id)`) to go on.
- A cancelled child (`cancel(store, child_run_id, reason)`) makes the step fail with
  `ChildRunError`.
- Workers: a worker needs only the parent's graph. It never drives a child while the
  parent's driver does (the child's lock is held). A child whose parent's driver died is
  a run like any other: a worker given the child's graph may carry it on to its end; the
  parent, resumed, then takes the stored output. A parent that finds its child held by
  another driver waits until it lets go. A durable child's graph must have a name (its
  runs are recorded, and resumed, under it).
- A step cancelled while its child runs (a timeout, a failing sibling) leaves the child
  where it stopped; the step's next attempt carries it on.

Diagrams: a node class's `child_graphs` and a builder step's `@g.step(child_graphs=...)`
name the graphs it runs, and the parent's mermaid diagram draws the node as a composite
state with each child graph's states inside. They only draw: `run_child` runs any graph.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from time import time
from typing import TYPE_CHECKING, Any, TypeAlias, cast, overload

from typing_extensions import TypeVar

from railyard.exceptions import GraphRuntimeError

if TYPE_CHECKING:
    from railyard._diagram import Diagram
    from railyard.agent.agent import Agent
    from railyard.agent.content import UserContent
    from railyard.builder.graph import Graph as BuilderGraph
    from railyard.graph import Graph
    from railyard.nodes import BaseNode
    from railyard.store import RunStore, StoredRecord
    from railyard.suspension import Waiting, WaitRequested

__all__ = (
    "ChildGraph",
    "ChildLink",
    "ChildRunError",
    "StepActions",
    "child_run_id",
    "child_wait_key",
    "parent_of",
)

ChildGraph: TypeAlias = "Graph[Any, Any, Any] | BuilderGraph[Any, Any, Any, Any] | Agent[Any, Any]"
"""What a step may run as a child: a node `Graph`, a builder `Graph` or an `Agent`."""

ChildStateT = TypeVar("ChildStateT")
"""The child graph's state type."""
ChildDepsT = TypeVar("ChildDepsT")
"""The child graph's dependencies type."""
ChildInputT = TypeVar("ChildInputT")
"""The child builder graph's input type."""
ChildOutputT = TypeVar("ChildOutputT")
"""The child graph's output type: what `run_child` returns."""
PayloadT = TypeVar("PayloadT")
"""The type of a signal's payload (`wait_for`)."""

_LOCKED_POLL = 0.05
"""Seconds between looks at a child another driver holds (it may be another process: no event to wait on)."""


@dataclass(frozen=True, slots=True)
class ChildLink:
    """Where a child run comes from: the parent run, its step that runs the child, and the call's key."""

    run_id: str
    """The parent run's id."""
    step_id: str
    """The id of the parent's step that runs the child."""
    key: str
    """The key of the call in that step (its number, or the `key=` given)."""

    def as_json(self) -> dict[str, str]:
        """The link as recorded in the child's first record (`RunCreated.parent`)."""
        return {"run_id": self.run_id, "step_id": self.step_id, "key": self.key}


class ChildRunError(GraphRuntimeError):
    """A child run failed or was cancelled, so the step that runs it fails."""

    def __init__(self, message: str, *, child_run_id: str | None, parent_run_id: str | None, graph: str | None) -> None:
        super().__init__(message)
        self.child_run_id = child_run_id
        """The child run's id (`None` for a child run in memory)."""
        self.parent_run_id = parent_run_id
        """The parent run's id (`None` for a parent run in memory)."""
        self.graph = graph
        """The child graph's name."""


def child_run_id(parent_run_id: str, step_id: str, key: str) -> str:
    """The run id of the child that call `key` of step `step_id` of run `parent_run_id` runs.

    The same every time the step runs, so a step run again finds its child. It is the
    parent's id, `.child-` and a digest of the step id and key: a valid run id in every
    store the parent's id is valid in.
    """
    digest = hashlib.sha256(f"{step_id}\x1f{key}".encode()).hexdigest()[:20]
    return f"{parent_run_id}.child-{digest}"


def child_wait_key(child_run_id: str, key: str) -> str:
    """The key a parent run waits for while its child `child_run_id` waits for `key`."""
    return f"{child_run_id}/{key}"


async def parent_of(store: RunStore, run_id: str) -> ChildLink | None:
    """The parent of stored run `run_id`, if it is a child run (`None` for a run of its own).

    Raises:
        RunNotFound: the store has no such run.
    """
    records = await store.read(run_id)
    if not records or records[0].kind != "run_created":
        return None
    parent = json.loads(records[0].body).get("parent")
    if not isinstance(parent, dict):
        return None
    return ChildLink(parent["run_id"], parent["step_id"], parent["key"])


@dataclass(frozen=True, slots=True)
class ChildScope:
    """What `run_child` needs of the step it is called in."""

    store: RunStore | None
    """The parent run's store (`None`: the parent is kept in memory)."""
    run_id: str | None
    """The parent run's id (`None`: the parent is kept in memory)."""
    step_id: str
    """The step's id."""
    attempt: int
    """The step's attempt (the calls of each attempt are numbered from 0)."""
    answers: dict[str, tuple[str, Any]] | None
    """The signals delivered to the parent's waiting steps."""
    key_prefix: str = ""
    """Put before a call's number to make its key (an agent's tool call)."""


class StepActions:
    """What a step does through its context: `run_child`, `wait_for`, `sleep_until`.

    The base of the contexts nodes, builder steps and agent tools get; each says where its
    step runs (`_child_scope`).
    """

    __slots__ = ("_child_calls",)

    def _child_scope(self) -> ChildScope:
        """Where this context's step runs (each context says)."""
        raise NotImplementedError

    async def wait_for(
        self,
        key: str,
        payload_type: type[PayloadT],
        *,
        prompt: str | None = None,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 - a durable deadline, stored with the wait
    ) -> PayloadT:
        """Wait for a signal: the payload `signal(store, run_id, key, payload)` sends, as a `payload_type`.

        The first time, the run is stored `suspended` and stops (`RunSuspended`); once
        answered and resumed, the step runs again from its start (for an agent's tool: the
        tool calls of that model answer) and `wait_for` returns the payload. Needs a durable
        run (`store=`). With `timeout` (seconds or a timedelta), the wait ends by itself:
        `WaitTimedOut` once it has passed without an answer. See `railyard.suspension`.
        """
        from railyard.suspension import wait_for

        scope = self._child_scope()
        return wait_for(scope.answers, scope.run_id, scope.step_id, key, payload_type, prompt=prompt, timeout=timeout)

    async def sleep_until(self, when: datetime | float) -> None:
        """Wait until `when` (an aware datetime or a POSIX timestamp), durably.

        In a durable run the step is parked and the run stored `suspended` with its timer,
        so no process waits meanwhile; a worker takes the run up when it is due, and the
        step runs again from its start (this call then returns at once). A run without a
        store sleeps in this process. See `railyard.suspension`.
        """
        from railyard.suspension import sleep_until

        scope = self._child_scope()
        await sleep_until(scope.run_id, scope.step_id, when)

    def _next_call(self, scope: ChildScope) -> int:
        """The number of this `run_child` call in the step's attempt: 0, then 1, ..."""
        mark = (scope.step_id, scope.attempt)
        calls: tuple[tuple[str, int], int] | None = getattr(self, "_child_calls", None)
        number = calls[1] if calls is not None and calls[0] == mark else 0
        self._child_calls = (mark, number + 1)
        return number

    @overload
    async def run_child(
        self,
        graph: Graph[ChildStateT, ChildDepsT, ChildOutputT],
        start: BaseNode[ChildStateT, ChildDepsT, ChildOutputT],
        /,
        *,
        state: ChildStateT = ...,
        deps: ChildDepsT = ...,
        key: str | None = None,
    ) -> ChildOutputT: ...
    @overload
    async def run_child(
        self,
        graph: BuilderGraph[ChildStateT, ChildDepsT, ChildInputT, ChildOutputT],
        /,
        *,
        inputs: ChildInputT = ...,
        state: ChildStateT = ...,
        deps: ChildDepsT = ...,
        key: str | None = None,
    ) -> ChildOutputT: ...
    @overload
    async def run_child(
        self,
        graph: Agent[ChildDepsT, ChildOutputT],
        user_prompt: str | Sequence[UserContent],
        /,
        *,
        deps: ChildDepsT = ...,
        key: str | None = None,
    ) -> ChildOutputT: ...
    async def run_child(
        self,
        graph: Any,
        start: Any = None,
        /,
        *,
        inputs: Any = None,
        state: Any = None,
        deps: Any = None,
        key: str | None = None,
    ) -> Any:
        """Run `graph` as a child run of this step and return its output.

        A node graph starts from `start` (a node) with `state` and `deps`; a builder graph
        with `inputs`, `state` and `deps`; an agent on `user_prompt` with `deps`. In a
        durable run the child is kept in the same store, as run `child_run_id(run_id,
        step_id, key)`; when this step runs again, it finds the child there and takes its
        stored output (it ended) or carries it on (it had not). A child that waits for a
        signal makes this step wait, for `child_wait_key(child_run_id, key)`: the run is
        suspended, and a signal to it with that key is passed on to the child. A step
        cancelled meanwhile leaves the child where it stopped. See `railyard.children`.

        Raises:
            ChildRunError: the child failed (its error is the cause) or was cancelled.
            GraphRuntimeError: the child graph of a durable run has no name, or the run is
                kept where a child cannot be (`FileStatePersistence` keeps one run a file).
            TypeError: the arguments do not fit the kind of graph.
        """
        scope = self._child_scope()
        if key is None:
            key = f"{scope.key_prefix}{self._next_call(scope)}"
        child = _child(graph, start, inputs=inputs, state=state, deps=deps)
        if scope.run_id is None:
            return await _in_memory(child, scope)
        return await _Driver(child, scope, key).drive()


# -- the kinds of child ---------------------------------------------------------------------


class _Child:
    """One child graph and what it starts with; each kind of graph says how it runs and resumes."""

    name: str | None

    async def start(self, store: RunStore | None, run_id: str | None) -> Any:
        """Run the child to its end (in memory without a store) and return its output."""
        raise NotImplementedError

    async def resume(self, store: RunStore, run_id: str) -> Any:
        """Carry stored child run `run_id` on to its end and return its output."""
        raise NotImplementedError

    def stored_output(self, store: RunStore, run_id: str, stored: Sequence[StoredRecord]) -> Any:
        """The output of a stored child run that ended."""
        raise NotImplementedError


def _end_data(store: RunStore, run_id: str, stored: Sequence[StoredRecord], codec: Any) -> Any:
    from railyard._replay import replay
    from railyard.durable import decode_run

    end = replay(decode_run(run_id, store, stored, codec)).end
    if end is None:
        raise GraphRuntimeError(f"Child run {run_id!r} in {store!r} is stored as ended, but records no end.")
    return end.data


class _NodeChild(_Child):
    def __init__(self, graph: Graph[Any, Any, Any], start: Any, state: Any, deps: Any) -> None:
        from railyard.nodes import BaseNode

        if not isinstance(start, BaseNode):
            raise TypeError(
                f"`run_child({graph!r}, ...)` runs a node graph from a node: pass the node to start from, "
                f"`ctx.run_child(graph, StartNode(...), state=..., deps=...)`; got {start!r}."
            )
        self.graph, self.start_node, self.state, self.deps = graph, start, state, deps
        self.name = graph.name

    async def start(self, store: RunStore | None, run_id: str | None) -> Any:
        graph = self.graph
        result = await graph.run(
            self.start_node, state=self.state, deps=self.deps, store=store, run_id=run_id, infer_name=False
        )
        return result.output

    async def resume(self, store: RunStore, run_id: str) -> Any:
        return (await self.graph.resume(store, run_id, deps=self.deps, infer_name=False)).output

    def stored_output(self, store: RunStore, run_id: str, stored: Sequence[StoredRecord]) -> Any:
        from railyard.store.codec import RecordCodec

        state_type, run_end_type = self.graph.inferred_types
        return _end_data(store, run_id, stored, RecordCodec(self.graph.get_nodes(), state_type, run_end_type))


class _BuilderChild(_Child):
    def __init__(self, graph: BuilderGraph[Any, Any, Any, Any], inputs: Any, state: Any, deps: Any) -> None:
        self.graph, self.inputs, self.state, self.deps = graph, inputs, state, deps
        self.name = graph.name

    async def start(self, store: RunStore | None, run_id: str | None) -> Any:
        return await self.graph.run(
            state=self.state, deps=self.deps, inputs=self.inputs, store=store, run_id=run_id, infer_name=False
        )

    async def resume(self, store: RunStore, run_id: str) -> Any:
        return await self.graph.resume(store, run_id, deps=self.deps)

    def stored_output(self, store: RunStore, run_id: str, stored: Sequence[StoredRecord]) -> Any:
        from railyard.builder._durable import builder_codec

        return _end_data(store, run_id, stored, builder_codec(self.graph))


class _AgentChild(_Child):
    def __init__(self, agent: Agent[Any, Any], prompt: Any, deps: Any) -> None:
        from railyard.agent._graph import named_agent_graph

        if prompt is None:
            raise TypeError(f"`run_child({agent!r}, ...)` runs an agent on a prompt: `ctx.run_child(agent, 'prompt')`.")
        self.agent, self.prompt, self.deps = agent, prompt, deps
        self.name = named_agent_graph(agent.name).name

    async def start(self, store: RunStore | None, run_id: str | None) -> Any:
        result = await self.agent.run(self.prompt, deps=self.deps, store=store, run_id=run_id, infer_name=False)
        return result.output

    async def resume(self, store: RunStore, run_id: str) -> Any:
        return (await self.agent.resume(store, run_id, deps=self.deps)).output

    def stored_output(self, store: RunStore, run_id: str, stored: Sequence[StoredRecord]) -> Any:
        import pydantic

        from railyard.agent._graph import named_agent_graph
        from railyard.store.codec import RecordCodec

        graph = named_agent_graph(self.agent.name)
        state_type, run_end_type = graph.inferred_types
        final = _end_data(store, run_id, stored, RecordCodec(graph.get_nodes(), state_type, run_end_type))
        # stored as JSON: read back as the agent's result type
        return pydantic.TypeAdapter(self.agent.result_type).validate_python(final.data)


def _child(graph: Any, start: Any, *, inputs: Any, state: Any, deps: Any) -> _Child:
    """The child for `graph`, checking the arguments fit its kind."""
    from railyard.graph import Graph

    if isinstance(graph, Graph):
        if inputs is not None:
            raise TypeError("`run_child` takes `inputs=` for a builder graph; a node graph starts from a node.")
        return _NodeChild(graph, start, state, deps)
    builder = sys.modules.get("railyard.builder.graph")  # not imported: no builder graph exists
    if builder is not None and isinstance(graph, builder.Graph):
        if start is not None:
            raise TypeError(
                f"`run_child` gives a builder graph its inputs by keyword: `ctx.run_child(graph, inputs={start!r})`."
            )
        return _BuilderChild(graph, inputs, state, deps)
    agents = sys.modules.get("railyard.agent.agent")
    if agents is not None and isinstance(graph, agents.Agent):
        if inputs is not None or state is not None:
            raise TypeError("`run_child` runs an agent on a prompt and deps: it takes no `inputs=` or `state=`.")
        return _AgentChild(graph, start, deps)
    raise TypeError(
        f"`run_child` runs a node `Graph`, a builder `Graph` or an `Agent`; got {type(graph).__name__} {graph!r}."
    )


async def _in_memory(child: _Child, scope: ChildScope) -> Any:
    """Run a child of a parent kept in memory: in memory too."""
    try:
        return await child.start(None, None)
    except Exception as error:
        raise ChildRunError(
            f"A child run of graph `{child.name}`, run in memory by step `{scope.step_id}`, failed: "
            f"{type(error).__name__}: {error}",
            child_run_id=None,
            parent_run_id=None,
            graph=child.name,
        ) from error


# -- a durable child ------------------------------------------------------------------------


class _Driver:
    """Finds, starts or carries on one durable child run, for the step that runs it."""

    def __init__(self, child: _Child, scope: ChildScope, key: str) -> None:
        assert scope.run_id is not None, "a durable parent has a run id"
        store = scope.store
        if isinstance(store, _LinkedStore):
            store = store.wrapped  # a child's own children go in the one store
        self.parent_id = scope.run_id
        self.store = _check_store(store, scope, child)
        if not scope.step_id:
            raise GraphRuntimeError(
                f"`run_child` in run {scope.run_id!r} needs the step it runs in: call it in a node's `run`, a "
                f"builder step or an agent's tool (not a prompt or result validator function)."
            )
        if child.name is None:
            raise GraphRuntimeError(
                f"Step `{scope.step_id}` of run {scope.run_id!r} runs a child graph that has no name: a durable "
                f"child run is recorded, resumed and picked up by workers under its graph's name. Name the graph "
                f"(`Graph(..., name='...')`, `GraphBuilder(name='...')`, `Agent(..., name='...')`)."
            )
        self.child = child
        self.scope = scope
        self.link = ChildLink(scope.run_id, scope.step_id, key)
        self.child_id = child_run_id(scope.run_id, scope.step_id, key)

    async def drive(self) -> Any:
        """The child's output: stored, or from starting or carrying on the child."""
        from railyard.exceptions import RunCancelled, RunEnded, RunExists, RunLocked
        from railyard.store import RunStatus
        from railyard.suspension import RunSuspended

        while True:
            stored = await self._read()
            status = stored[-1].status if stored else None
            if status is RunStatus.ENDED:
                assert stored is not None
                return self.child.stored_output(self.store, self.child_id, stored)
            if status is RunStatus.CANCELLED:
                raise self._cancelled(stored or ())
            try:
                if stored is None:
                    linked = cast("RunStore", _LinkedStore(self.store, self.child_id, self.link))
                    return await self.child.start(linked, self.child_id)
                if status is RunStatus.SUSPENDED and not await self._pass_answers_on():
                    wait = await self._wait_request()
                    if wait is not None:
                        raise wait  # the child still waits: so does this step
                    continue  # answered meanwhile
                return await self.child.resume(self.store, self.child_id)
            except (RunExists, RunEnded, RunCancelled, RunLocked) as race:
                if race.run_id != self.child_id:
                    raise self._failed(race) from race
                # another driver made, finished, cancelled or holds the child: look again
                if isinstance(race, RunLocked):
                    import anyio

                    await anyio.sleep(_LOCKED_POLL)
            except RunSuspended as suspended:
                if suspended.run_id != self.child_id:
                    raise self._failed(suspended) from suspended
                wait = await self._wait_request()
                if wait is not None:
                    raise wait from None
            except Exception as error:
                raise self._failed(error) from error

    async def _read(self) -> Sequence[StoredRecord] | None:
        from railyard.exceptions import RunNotFound

        try:
            return await self.store.read(self.child_id)
        except RunNotFound:
            return None

    # -- errors ---------------------------------------------------------------------------

    def _failed(self, error: BaseException) -> ChildRunError:
        return ChildRunError(
            f"Child run {self.child_id!r} of graph `{self.child.name}`, run by step `{self.scope.step_id}` of run "
            f"{self.parent_id!r}, failed: {type(error).__name__}: {error}. The child is stored where it stopped: "
            f"fix the cause and resume run {self.parent_id!r}; this step runs again and carries the child on.",
            child_run_id=self.child_id,
            parent_run_id=self.parent_id,
            graph=self.child.name,
        )

    def _cancelled(self, stored: Sequence[StoredRecord]) -> ChildRunError:
        reason = next((json.loads(r.body).get("reason") for r in stored if r.kind == "run_cancelled"), None)
        return ChildRunError(
            f"Child run {self.child_id!r} of graph `{self.child.name}`, run by step `{self.scope.step_id}` of run "
            f"{self.parent_id!r}, was cancelled ({reason}): the step cannot have its output.",
            child_run_id=self.child_id,
            parent_run_id=self.parent_id,
            graph=self.child.name,
        )

    # -- a child that waits -----------------------------------------------------------------

    async def _wait_request(self) -> WaitRequested | None:
        """What this step waits for while the child waits: its (first) wait under the parent's key (`None`: none)."""
        from railyard.suspension import WaitRequested, waiting_for

        waits = await waiting_for(self.store, self.child_id)
        if not waits:  # answered meanwhile (a signal to the child itself): it is ready to go on
            return None
        wait = waits[0]
        asked = f"{wait.prompt} " if wait.prompt else ""
        prompt = f"{asked}(child run {self.child_id!r} waits for {wait.key!r})"
        return WaitRequested(child_wait_key(self.child_id, wait.key), _payload_type(wait.payload_type), prompt)

    async def _pass_answers_on(self) -> bool:
        """Give the waiting child the answers the parent got for it; return whether there were any.

        Each answer the parent got is passed on once: the child may wait for the same key
        again later, and the parent's last answer must not answer that wait too.
        """
        from railyard.suspension import waiting_for

        answers = self.scope.answers or {}
        fresh: list[tuple[Waiting, str, Any]] = []
        for wait in await waiting_for(self.store, self.child_id):
            key = child_wait_key(self.child_id, wait.key)
            answer = answers.get(key)
            if answer is not None and answer[0] == self.scope.step_id:
                fresh.append((wait, key, answer[1]))
        if not fresh:
            return False
        got = _signals(await self.store.read(self.parent_id), lambda body: True)
        passed = False
        for wait, key, payload in fresh:
            passed = await self._pass_on(wait, payload, got.get(key, 0)) or passed
        return passed

    async def _pass_on(self, wait: Waiting, payload: Any, answered: int) -> bool:
        """Store the parent's `answered`-th answer to the child's wait, unless it was passed on already."""
        import pydantic
        import pydantic_core

        from railyard.store import RunStatus, StoredRecord
        from railyard.suspension import waiting_of

        async with self.store.lock(self.child_id):
            records = await self.store.read(self.child_id)
            open_waits: dict[str, Waiting] = {}
            for record in records:
                if record.kind in ("step_suspended", "signal_received"):
                    waiting_of(record.kind, json.loads(record.body), open_waits)
            passed = _signals(records, lambda body: body.get("from_parent") == self.parent_id).get(wait.key, 0)
            if wait.key not in open_waits or passed >= answered:
                return False
            payload_type = _payload_type(wait.payload_type)
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(payload_type)
            value = adapter.dump_python(adapter.validate_python(payload), mode="json")
            ts = time()
            # a signal in the codec's JSON shape; `from_parent` tells an answer passed on from one given directly
            body = {
                "kind": "signal_received",
                "key": wait.key,
                "payload": value,
                "ts": ts,
                "from_parent": self.parent_id,
            }
            record = StoredRecord(
                kind="signal_received",
                body=pydantic_core.to_json(body).decode(),
                status=RunStatus.WAITING,
                node_id=None,
                finishes_step=False,
                ts=ts,
            )
            await self.store.append(self.child_id, [record])
        return True


def _signals(records: Sequence[StoredRecord], which: Callable[[dict[str, Any]], bool]) -> dict[str, int]:
    """How many signals each key got among `records`, counting those whose JSON body `which` accepts."""
    counts: dict[str, int] = {}
    for record in records:
        if record.kind == "signal_received":
            body = json.loads(record.body)
            if which(body):
                counts[body["key"]] = counts.get(body["key"], 0) + 1
    return counts


def _payload_type(path: str) -> Any:
    """The type at `module:qualified name` (a wait's payload type), or `Any` if it cannot be imported here."""
    module_name, _, qualname = path.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError):
        return Any
    return value


def _check_store(store: RunStore | None, scope: ChildScope, child: _Child) -> RunStore:
    """The parent's store, if a child run can be kept in it."""
    files = sys.modules.get("railyard.persistence.file")
    if store is None or (files is not None and isinstance(store, files._OneRunFileStore)):  # pyright: ignore[reportPrivateUsage]
        raise GraphRuntimeError(
            f"Step `{scope.step_id}` of run {scope.run_id!r} runs a child graph `{child.name}`, but the run is kept "
            f"where its child cannot be ({store!r} holds one run). Run the parent with `store=` a store of many "
            f"runs (`SqliteStore(...)`, `FileStore(directory)`, `PostgresStore(...)`, `MemoryStore()`)."
        )
    return store


class _LinkedStore:
    """The parent's store, creating child run `run_id` with the link to its parent in its first record.

    Everything else is the parent's store's own (the child's driver locks, appends and
    reads through it).
    """

    def __init__(self, store: RunStore, run_id: str, link: ChildLink) -> None:
        self.wrapped = store
        """The parent's store."""
        self._run_id = run_id
        self._link = link

    async def create(self, run_id: str, records: Sequence[StoredRecord]) -> None:
        """Create a run; the child's first record (`run_created`) gets its parent link."""
        if run_id == self._run_id and records and records[0].kind == "run_created":
            records = [_with_parent(records[0], self._link), *records[1:]]
        await self.wrapped.create(run_id, records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return repr(self.wrapped)


def _with_parent(record: StoredRecord, link: ChildLink) -> StoredRecord:
    """A stored `run_created` record with `parent` set, written by the one codec."""
    import pydantic_core

    from railyard.store.codec import RecordCodec
    from railyard.store.records import RunCreated

    codec = RecordCodec((), None)
    created = codec.decode(record.body)
    assert isinstance(created, RunCreated), "a run's first record is its `run_created`"
    return replace(record, body=pydantic_core.to_json(codec.dump(replace(created, parent=link.as_json()))).decode())


# -- diagrams -------------------------------------------------------------------------------


def child_regions(children: Sequence[ChildGraph], state_id: str, drawing: frozenset[int]) -> tuple[Diagram, ...]:
    """The diagrams of the child graphs a node or step runs, to draw inside its state `state_id`.

    Each child's states are renamed under `state_id` (one child) or `state_id_N` (several),
    keeping their own names as labels. A graph already being drawn (`drawing`: a graph that
    runs itself) is left out.
    """
    from railyard._diagram import nested

    drawn = [child for child in children if id(child) not in drawing]
    return tuple(
        nested(child_diagram(child, drawing), state_id if len(drawn) == 1 else f"{state_id}_{index + 1}")
        for index, child in enumerate(drawn)
    )


def child_diagram(graph: ChildGraph, drawing: frozenset[int] = frozenset()) -> Diagram:
    """The diagram of a child graph, as its own mermaid code draws it (an agent's from its first node).

    Raises:
        TypeError: `graph` is not a node `Graph`, a builder `Graph` or an `Agent`.
    """
    from railyard.graph import Graph

    inside = drawing | {id(graph)}
    if isinstance(graph, Graph):
        from railyard.mermaid import node_diagram

        return node_diagram(graph, drawing=inside)
    builder = sys.modules.get("railyard.builder.graph")
    if builder is not None and isinstance(graph, builder.Graph):
        from railyard.builder.mermaid import builder_diagram

        return builder_diagram(graph, drawing=inside)
    agents = sys.modules.get("railyard.agent.agent")
    if agents is not None and isinstance(graph, agents.Agent):
        from railyard.agent._graph import UserPromptNode, named_agent_graph
        from railyard.mermaid import node_diagram

        return node_diagram(named_agent_graph(graph.name), start_node=UserPromptNode, drawing=inside)
    raise TypeError(f"`child_graphs` names node `Graph`s, builder `Graph`s and `Agent`s; got {graph!r}.")
