r"""The one engine every run goes through: read this first.

A run of any API — a node `Graph`, a builder `Graph`, an `Agent` — is a set of
*tasks*: "run node X on these inputs inside this fork stack". One `Loop` (`_loop.py`)
runs them. A front end only compiles its graph into a `Program` (`_program.py`) that
says what a task is and where its result leads::

    front ends (thin)        node Graph        builder Graph        Agent
                             _NodeProgram      BuilderProgram      (a node Graph)
                                   \                |                /
                                    `--- Program: kinds, runner, route, follow,
                                         join_key / join_initial / reduce ---'
                                                     |
    Loop (one per run)     ready batch --advance()--> start each task
                             |                          |
                             |   STEP  -> Lanes (_lanes.py): tasks of the event loop
                             |            that run waiting steps one after another,
                             |            opened as steps need them; each step goes
                             |            through the Executor (_executor.py)
                             |   INLINE (fork, decision, start, end) and JOIN
                             |         -> run by the driver itself, in order
                             |
                             +-- _step(task): the one path of every step
                             |     recorder.step_started -> span -> run node
                             |     -> program.route -> recorder.step_finished
                             |
                             +-- map sources (pulled lazily, sync or async), live
                             |   counts per fork run, join accumulators keyed by
                             |   (join id, fork run id), first-value cancellation,
                             |   a failure cancelling the rest, max_concurrency

The pieces:

- `Program` (`_program.py`): `kinds[node_id]` says how a task runs (`STEP`: user
  code through the executor; `INLINE`: structure the loop runs itself; `JOIN`: a
  value reduced into its join's accumulator). `runner(loop)` gives the function
  that runs a step's node; `route(task, result, loop)` turns what it returned into
  the next tasks, a `MapItems` fan-out, or the run's `End`; `follow` routes a map's
  items and a join's value; `join_key`, `join_initial` and `reduce` define joins.
  A join instance closes once nothing of its fork run can still reach it: by default
  once no task, map or open join is left in the fork run; a program whose forks also
  lead elsewhere gives `join_blocking(join_id)` (the nodes on the way from the fork to
  the join), and then only tasks at those nodes, and joins among them open for the
  same fork run, keep it open — the loop counts tasks per (fork run, node) for that.
  The node API's program routes to at most one task; the builder's routes through
  forks, maps, decisions and joins.
- `Executor` (`_executor.py`): where a step's node runs. `bind(run)` is called once
  per run and returns the function the loop calls per step: a task in, an awaitable
  of the node's result (or its exception) out; cancelling the wait cancels the step.
  `InProcessExecutor` (the default) returns `run` itself, so it costs nothing;
  `ThreadExecutor` runs each step on a worker thread; a cluster engine plugs in here.
- `Recorder` (`_recorder.py`): hears one event per happening, in order —
  `tasks_created` (the start, `next(node)`, a map's items as they are pulled),
  `step_started` / `steps_started` (the steps one pass of the driver starts, together),
  `structural_started` (a fork, decision or join arrival the loop runs itself),
  `step_finished` (with what the step led to and the state), `step_failed`,
  `join_closed`, and `flush`. The durability rule: a step's start (with everything
  told before it) is durable before the step runs, a failure before it propagates,
  and everything before `flush`, which the loop calls whenever it hands control back
  (`advance` / `run_to_end` returning) and whenever it has nothing to do but wait for
  running steps (so a branch's finish is durable soon after it returns, even in a map
  that starts no more steps). Everything else may be queued and committed with the
  next of those: group commit. `None` (no recorder) costs nothing. Tracing
  is the other hook: a span per step when an OpenTelemetry SDK is set up.
- The driver: `Loop.advance()` starts the ready batch and returns the next one (the
  tasks finished steps led to, or a map's items as they are pulled) or the `End`.
  A lone task with nothing else in flight runs in the driver itself, which keeps the
  node API's per-step cost near a plain loop's. With a recorder, the steps a pass
  starts wait in `_starting` until `_launch` has recorded all their starts in one
  commit; then they go to lanes. Recording and tracing never change which code runs
  a step.
- The durable recorder: every durable run records through one
  `railyard._run_log.StoreRecorder`, which holds the run's lock, queues each event as
  a record (record dialect 2, `railyard.store.records`: `run_created` first, with the
  graph's name and fingerprint; states stored by change, `railyard.store._deltas`) and
  commits what is queued in one transaction at the points above. The node API's
  persistence adds its in-memory task log on top.
- Replay: one function, `railyard._replay.replay(records, program)`, turns a stored
  run's records into its `Position` — state, pending tasks in scheduling order, open
  joins with their values reduced again, closed joins, maps part-way through, the next
  task number, the end, and the graph the run was made by. Builder runs resume from
  the whole position (`railyard.builder._durable.replay`); node runs take the last
  pending task (`DurablePersistence.load_next`, pydantic-graph's `load_next`); either
  refuses a run another graph made (`GraphMismatchError`).

Modules: `_tasks.py` (Task, ForkStackItem), `_end.py` (End), `_program.py`,
`_executor.py`, `_recorder.py`, `_joins.py` (JoinState, closing ids), `_lanes.py`,
`_maps.py` (maps part-way through, and how the loop pulls their items), `_stopping.py`
(cancellation asked from outside, and the run timeout), `_loop.py`.
Nothing here is public API: `railyard` re-exports what users need.
"""
