"""Branch tasks: the steps of a run spread over worker processes on many machines, through PostgreSQL.

```python
from railyard.branches import BranchExecutor

store = PostgresStore("postgresql://...")
with BranchExecutor(store, steps=["summarise"], queue="summaries", concurrency=16) as executor:
    summary = await review.run(inputs=documents, store=store, executor=executor)
```

and on any number of machines sharing the database:

```
railyard worker app:review --store postgresql://... --branches 4
```

The run's driver keeps its log: each chosen step attempt becomes a task row that a
worker with branch slots (`run_worker(..., branches=N)`) claims, runs with its own copy
of the graph and its own `deps`, and answers; the driver records the answer like any
step's. A task is named by its run, step id and attempt, so a driver restarted mid-map
gets the answers of the tasks that finished meanwhile without running them again. A
queue's `concurrency` bounds its tasks running at once over every worker (claims are
serialized per queue in the database); a worker's `branches` bounds its own.
"""

from __future__ import annotations

from railyard._branch_client import NotDurable
from railyard._branch_executor import BranchExecutor
from railyard._branch_worker import UnknownStep
from railyard._step_codec import RemoteStepError, StepLost, ValueCannotCross

__all__ = ("BranchExecutor", "NotDurable", "RemoteStepError", "StepLost", "UnknownStep", "ValueCannotCross")

for _name in ("BranchExecutor", "NotDurable", "RemoteStepError", "UnknownStep"):
    globals()[_name].__module__ = __name__
