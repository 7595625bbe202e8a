"""Run a graph's steps on a Ray cluster while this process keeps the run.

```python
import ray
from railyard.ray import RayExecutor, RayOptions

ray.init()  # or ray.init(address="ray://head:10001")
total = await graph.run(inputs=items, executor=RayExecutor(steps={"crunch": RayOptions(num_cpus=1)}))
```

Every step attempt the executor is given becomes one Ray task; forks, joins, decisions
and the run log stay in the driver, so a durable run killed part-way through a map
resumes with only its unfinished branches. Values cross as JSON through pydantic.
Needs Ray: `pip install 'railyard-graph[ray]'` (importing this module does not import it).
"""

from __future__ import annotations

from railyard._ray_executor import RayExecutor, RayOptions
from railyard._step_codec import StepLost, ValueCannotCross

__all__ = ("RayExecutor", "RayOptions", "StepLost", "ValueCannotCross")

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
