"""`RayExecutor`: a run's steps (or the ones you name) as Ray tasks, while the driver keeps the run.

The loop hands each step attempt to the executor (`railyard.runtime._executor`); this one
sends it to Ray as one task and waits for its answer on the run's event loop, so the
loop records each branch's result as it returns, exactly as in process. The step's code
goes by Ray's own means; its values go as JSON through pydantic (`railyard._step_codec`).
Ray never retries a task (`max_retries=0`): a step whose worker died fails its attempt
with `StepLost`, and the step's retry policy decides.

Ray is imported when an executor is made, never by `import railyard`. Ray has no complete
type stubs: every call into it goes through the untyped module object `_ray()` returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic_core

from railyard._step_codec import (
    StepCode,
    StepLost,
    ValueCannotCross,
    apply_state,
    bind_elsewhere,
    code_of,
    dump,
    load,
    load_result,
    run_step,
    wait_future,
)
from railyard.runtime._executor import StepCall

if TYPE_CHECKING:
    from railyard.runtime._executor import StepFunction

__all__ = ("RayExecutor", "RayOptions", "StepLost", "ValueCannotCross")

INSTALL_HINT = "pip install 'railyard-graph[ray]'"

_LOST = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError", "OutOfMemoryError")
"""Ray's errors for a task whose worker, node or result went away: a lost attempt (`StepLost`)."""


def _ray() -> Any:
    """The `ray` module, untyped (Ray's stubs are incomplete); a clear error if it is not installed.

    Raises:
        ImportError: Ray is not installed (naming the extra to install).
    """
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise ImportError(f"RayExecutor needs Ray, which is not installed: {INSTALL_HINT}") from err


@dataclass(frozen=True, slots=True)
class RayOptions:
    """How one step's Ray tasks are scheduled (Ray's `.options(...)`); `None` leaves Ray's default.

    Retries are railyard's (the step's `RetryPolicy`): Ray never retries a step's task.
    """

    num_cpus: float | None = None
    """CPUs each task reserves (Ray's default: 1)."""
    num_gpus: float | None = None
    """GPUs each task reserves."""
    memory: int | None = None
    """Bytes of memory each task reserves."""
    resources: Mapping[str, float] | None = None
    """Custom resources each task reserves, e.g. `{"big_box": 1}`."""
    scheduling_strategy: Any = None
    """Where tasks go: `"SPREAD"`, `"DEFAULT"`, or a Ray scheduling strategy object."""
    runtime_env: Mapping[str, Any] | None = None
    """The Ray runtime environment the tasks run in (`pip`, `env_vars`, `working_dir`, ...)."""

    def ray_options(self) -> dict[str, Any]:
        """These options as keyword arguments of Ray's `.options(...)`, with `max_retries=0`."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        for name in ("resources", "runtime_env"):
            if name in given:
                given[name] = dict(given[name])
        return {**given, "max_retries": 0}


@dataclass(slots=True)
class _Bound:
    """What one run of an executor holds: each step's code and remote function."""

    codes: dict[tuple[Any, ...], tuple[StepCode, Any]] = field(
        default_factory=dict[tuple[Any, ...], tuple[StepCode, Any]]
    )
    """By node id, function or node class, state and deps types: the step's code, and its Ray object ref."""
    base: Any = None
    """The Ray remote function that runs a step (`railyard._step_codec.run_step`), made at the first step."""
    remotes: dict[str, Any] = field(default_factory=dict[str, Any])
    """By node id: the Ray remote function with the step's options."""


class RayExecutor:
    """Runs a run's steps as Ray tasks; the driver keeps the run (its log, joins, retries).

    Connect to a cluster first (`ray.init(address=...)`, or `ray.init()` for a local one);
    without it, Ray starts a local instance at the first step. Each step attempt is one
    Ray task; the awaitable the loop waits on resolves when the task answers:

    - Inputs, the result, the state and the dependencies cross as JSON through pydantic,
      by the step's annotated types (a builder step's `StepContext[S, D, In]` and return
      annotation; a node's fields and `run` annotation). A value that cannot cross fails
      the step with `ValueCannotCross` naming it, never retried.
    - State: the worker gets a copy; if the step changed it, the changed fields (a
      dataclass's or model's; a dict's or list's contents) are set on the run's state
      before the awaitable resolves. Branches running at once that change the same field:
      the last to return wins; return values to a join instead.
    - A Ray worker or node dying under a step fails the attempt with `StepLost`, which the
      step's retry policy retries like any error; Ray itself never retries (`max_retries=0`).
    - Cancelling the wait cancels the Ray task (`ray.cancel`: a `KeyboardInterrupt` in the
      step) and its result is never delivered.
    - At most `max_concurrency` tasks of a run are in flight at once (one limit per run).

    Streaming steps and anything the loop runs itself (forks, joins, decisions) stay in the
    driver, and so do steps not in `steps` when it is given.
    """

    __slots__ = ("_ray", "max_concurrency", "options", "steps")

    def __init__(
        self,
        steps: Mapping[str, RayOptions] | Collection[str] | None = None,
        *,
        options: RayOptions | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        """Send every step to Ray (`steps=None`), or only those named.

        Args:
            steps: The node ids of the steps that run on Ray, each with its own options (a
                mapping) or with `options` (a collection); `None`: every step.
            options: The options of every step not given its own (default: Ray's defaults).
            max_concurrency: At most this many Ray tasks of a run in flight (`None`: no limit
                beyond the run's own and its maps').

        Raises:
            ImportError: Ray is not installed.
            ValueError: `max_concurrency` is not a whole number of at least 1.
        """
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(
                f"RayExecutor(max_concurrency=...) must be a whole number of at least 1 or None, "
                f"got {max_concurrency!r}"
            )
        self._ray: Any = _ray()
        self.options: RayOptions = options if options is not None else RayOptions()
        """The options of the steps not given their own."""
        self.steps: dict[str, RayOptions] | None = (
            None
            if steps is None
            else dict(steps)
            if isinstance(steps, Mapping)
            else dict.fromkeys(_names(steps), self.options)
        )
        """The steps that run on Ray with their options, by node id (`None`: every step, with `options`)."""
        self.max_concurrency = max_concurrency
        """At most this many of a run's steps on Ray at once (`None`: no limit of the executor's own)."""

    def bind(self, run: StepFunction) -> StepFunction:
        """The function the loop calls per step attempt: it sends the chosen steps to Ray, runs the rest here."""
        bound = _Bound()
        steps = self.steps
        return bind_elsewhere(
            run,
            lambda node_id: steps is None or node_id in steps,
            self.max_concurrency,
            lambda c: self._remote(c, bound),
        )

    async def _remote(self, call: StepCall, bound: _Bound) -> Any:
        """Run one attempt on Ray: send its values, wait for its answer, apply its state, give its result."""
        ray = self._ray
        code, code_ref = self._code(call, bound)
        state_json = None if code.state_type is None else dump(call.node_id, "state", code.state_type, call.state)
        payload = pydantic_core.to_json(
            {
                "inputs": dump(call.node_id, "inputs", code.input_type, call.inputs),
                "state": state_json,
                "deps": None if code.deps_type is None else dump(call.node_id, "deps", code.deps_type, call.deps),
                "step_id": call.step_id,
                "run_id": call.run_id,
                "attempt": call.attempt,
            }
        )
        remote = bound.remotes.get(call.node_id)
        if remote is None:
            chosen = self.steps.get(call.node_id, self.options) if self.steps is not None else self.options
            if bound.base is None:
                bound.base = ray.remote(max_retries=0)(run_step)
            remote = bound.remotes[call.node_id] = bound.base.options(**chosen.ray_options())
        ref = remote.remote(code_ref, payload)
        try:
            await wait_future(ref.future())
        except BaseException:  # cancelled (or failed) while it runs: stop the task; its answer is never read
            with contextlib.suppress(Exception):
                ray.cancel(ref, recursive=True)
            raise
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause
            if isinstance(cause, Exception):
                cause.add_note(f"raised on a Ray worker (pid {getattr(err, 'pid', '?')}) by step `{call.node_id}`")
                raise cause from None
            raise
        except tuple(getattr(ray.exceptions, name) for name in _LOST) as err:
            raise StepLost(call.node_id, call.step_id, f"{type(err).__name__}: {err}") from err
        except ray.exceptions.TaskCancelledError as err:  # cancelled by someone else (ray.cancel, `ray job stop`)
            raise StepLost(call.node_id, call.step_id, f"its task was cancelled ({err})") from err
        reply = pydantic_core.from_json(answer)
        result = load_result(code, reply["result"])
        if "state" in reply:
            apply_state(call, state_json, load(call.node_id, "state", code.state_type, reply["state"]), reply["state"])
        return result

    def _code(self, call: StepCall, bound: _Bound) -> tuple[StepCode, Any]:
        """The step's code and its Ray object ref, made once per run and step."""
        state_type = None if call.state is None else call.state_type
        deps_type = None if call.deps is None else type(call.deps)
        what: Any = call.function if call.function is not None else type(call.inputs)
        key = (call.node_id, what, state_type, deps_type)
        made = bound.codes.get(key)
        if made is not None:
            return made
        code = code_of(call)
        try:
            code_ref = self._ray.put(code)
        except Exception as err:
            raise ValueCannotCross(call.node_id, "code", f"Ray cannot send it ({type(err).__name__}: {err})") from err
        made = bound.codes[key] = (code, code_ref)
        return made

    def __repr__(self) -> str:
        parts = [] if self.steps is None else [f"steps={sorted(self.steps)!r}"]
        if self.options != RayOptions():
            parts.append(f"options={self.options!r}")
        if self.max_concurrency is not None:
            parts.append(f"max_concurrency={self.max_concurrency}")
        return f"RayExecutor({', '.join(parts)})"


def _names(steps: Collection[str]) -> list[str]:
    if isinstance(steps, str):
        raise TypeError(f"RayExecutor(steps=...) takes node ids, not one string: write steps=[{steps!r}]")
    return list(steps)
