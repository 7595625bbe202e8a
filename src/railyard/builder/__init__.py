"""The builder API: graphs of async steps with broadcasts, maps, decisions and joins.

Code written for pydantic-graph's builder API runs with `pydantic_graph.beta` (1.x) or
`pydantic_graph` (2.x) replaced by `railyard.builder`.

```python
g = GraphBuilder(output_type=list[int])

@g.step
async def double(ctx: StepContext[None, None, int]) -> int:
    return ctx.inputs * 2

collect = g.join(reduce_list_append, initial_factory=list[int])
g.add(
    g.edge_from(g.start_node).map().to(double),
    g.edge_from(double).to(collect),
    g.edge_from(collect).to(g.end_node),
)
print(await g.build().run(inputs=[1, 2, 3]))  # [2, 4, 6]
```
"""

from railyard.builder.decision import Decision, DecisionBranch, DecisionBranchBuilder
from railyard.builder.graph import EndMarker, ErrorMarker, Graph, GraphRun, GraphTask, GraphTaskRequest, JoinItem
from railyard.builder.graph_builder import GraphBuilder
from railyard.builder.join import (
    ItemFailure,
    Join,
    JoinState,
    ReduceFirstValue,
    ReducerContext,
    ReducerFunction,
    reduce_dict_update,
    reduce_list_append,
    reduce_list_extend,
    reduce_null,
    reduce_sum,
)
from railyard.builder.node import EndNode, Fork, StartNode
from railyard.builder.step import NodeStep, Step, StepContext, StepNode
from railyard.builder.util import TypeExpression
from railyard.exceptions import GraphBuildingError, GraphRuntimeError, GraphSetupError, GraphValidationError
from railyard.nodes import BaseNode, Edge, End, GraphRunContext

__all__ = (
    "BaseNode",
    "Decision",
    "DecisionBranch",
    "DecisionBranchBuilder",
    "Edge",
    "End",
    "EndMarker",
    "EndNode",
    "ErrorMarker",
    "Fork",
    "Graph",
    "GraphBuildingError",
    "GraphBuilder",
    "GraphRun",
    "GraphRunContext",
    "GraphRuntimeError",
    "GraphSetupError",
    "GraphTask",
    "GraphTaskRequest",
    "GraphValidationError",
    "ItemFailure",
    "Join",
    "JoinItem",
    "JoinState",
    "NodeStep",
    "ReduceFirstValue",
    "ReducerContext",
    "ReducerFunction",
    "StartNode",
    "Step",
    "StepContext",
    "StepNode",
    "TypeExpression",
    "reduce_dict_update",
    "reduce_list_append",
    "reduce_list_extend",
    "reduce_null",
    "reduce_sum",
)
