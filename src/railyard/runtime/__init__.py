"""The one engine both graph APIs run on.

- `railyard.runtime._tasks`: `Task` and `ForkStackItem`, the unit of work.
- `railyard.runtime.scheduler`: `Scheduler`, which runs tasks and records each step,
  and `Program`, what a front end compiles a graph to.
- `railyard.runtime._recorder`: `Recorder`, what the scheduler tells the run log.
"""
