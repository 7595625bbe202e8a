"""Bad graphs fail at construction, bad results at run time; every message names the culprit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from railyard import BaseNode, End, Graph, GraphRunContext, GraphRuntimeError, GraphSetupError
from tests.graphs import Check42, CountDown, CountDownState, Increment, MyState, count_down_graph, never_42_graph

pytestmark = pytest.mark.anyio


@dataclass
class Lonely(BaseNode):
    async def run(self, ctx: GraphRunContext) -> Increment:
        return Increment()


@dataclass
class Lonely2(BaseNode):
    async def run(self, ctx: GraphRunContext) -> Increment | Check42:
        return Increment()


@dataclass
class Lonely3(BaseNode):
    async def run(self, ctx: GraphRunContext) -> Increment:
        return Increment()


def test_duplicate_node_ids() -> None:
    def make() -> type[BaseNode[Any, Any, Any]]:
        @dataclass
        class CountDown(BaseNode):
            async def run(self, ctx: GraphRunContext) -> End[int]:
                return End(1)

        return CountDown

    other = make()
    with pytest.raises(GraphSetupError) as info:
        Graph(nodes=[CountDown, other])
    assert str(info.value) == f"Node ID `CountDown` is not unique — found on {CountDown} and {other}"


def test_same_class_twice_is_a_duplicate() -> None:
    with pytest.raises(GraphSetupError, match="Node ID `CountDown` is not unique"):
        Graph(nodes=[CountDown, CountDown])


def test_missing_node_names_it_and_its_referrer() -> None:
    with pytest.raises(GraphSetupError) as info:
        Graph(nodes=[Lonely])
    assert str(info.value) == "`Increment` is referenced by `Lonely` but not included in the graph."


def test_missing_node_with_several_referrers() -> None:
    with pytest.raises(GraphSetupError) as info:
        Graph(nodes=[Lonely, Lonely3, Check42])
    assert (
        str(info.value)
        == "`Increment` is referenced by `Lonely`, `Lonely3`, and `Check42` but not included in the graph."
    )


def test_several_missing_nodes() -> None:
    with pytest.raises(GraphSetupError) as info:
        Graph(nodes=[Lonely, Lonely2, Lonely3])
    assert str(info.value) == (
        "Nodes are referenced in the graph but not included in the graph:\n"
        " `Increment` is referenced by `Lonely`, `Lonely2`, and `Lonely3`\n"
        " `Check42` is referenced by `Lonely2`"
    )


def test_unresolvable_forward_reference_names_node_and_name() -> None:
    @dataclass
    class Dangling(BaseNode):
        async def run(self, ctx: GraphRunContext) -> DoesNotExist | End[int]:  # type: ignore[name-defined]  # noqa: F821
            return End(1)

    with pytest.raises(
        GraphSetupError, match=r"Cannot resolve the return annotation of `Dangling\.run`: .*DoesNotExist"
    ):
        Graph(nodes=[Dangling])


def test_forward_references_between_nodes_defined_in_a_function() -> None:
    @dataclass
    class Ping(BaseNode[None, None, str]):
        count: int = 0

        async def run(self, ctx: GraphRunContext) -> Pong | End[str]:
            return Pong(self.count + 1) if self.count < 3 else End(f"done after {self.count}")

    @dataclass
    class Pong(BaseNode[None, None, str]):
        count: int

        async def run(self, ctx: GraphRunContext) -> Ping:
            return Ping(self.count)

    graph = Graph(nodes=[Ping, Pong])
    assert set(graph.node_defs["Ping"].next_node_edges) == {"Pong"}
    assert graph.run_sync(Ping()).output == "done after 3"


def test_run_must_be_defined() -> None:
    class NoRun(BaseNode):
        pass

    with pytest.raises(GraphSetupError, match=r"Node `NoRun` has no `run` method"):
        Graph(nodes=[NoRun])


def test_run_must_be_async() -> None:
    class SyncRun(BaseNode):
        def run(self, ctx: GraphRunContext) -> End[int]:  # type: ignore[override]
            return End(1)

    with pytest.raises(GraphSetupError, match=r"`SyncRun\.run` must be an `async def` method"):
        Graph(nodes=[SyncRun])


def test_run_must_have_a_return_annotation() -> None:
    class NoHint(BaseNode):
        async def run(self, ctx: GraphRunContext):  # type: ignore[no-untyped-def]
            return End(1)

    with pytest.raises(
        GraphSetupError, match=r"Node <class '.*NoHint'> is missing a return type hint on its `run` method"
    ):
        Graph(nodes=[NoHint])


@pytest.mark.parametrize("hint", [int, None, str], ids=["int", "none", "str"])
def test_return_annotation_must_name_nodes_or_end(hint: Any) -> None:
    class BadHint(BaseNode):
        async def run(self, ctx: GraphRunContext) -> Any:
            return End(1)

    BadHint.run.__annotations__["return"] = Check42 | hint if hint is not None else None
    with pytest.raises(GraphSetupError, match=r"Invalid return type: .* in the return annotation of `BadHint\.run`"):
        Graph(nodes=[BadHint, Check42, Increment])


def test_non_node_in_nodes() -> None:
    with pytest.raises(
        GraphSetupError, match=r"<class 'int'> is not a node: Graph\(nodes=\[\.\.\.\]\) takes `BaseNode` subclasses"
    ):
        Graph(nodes=[CountDown, int])  # type: ignore[list-item]


def test_node_instances_are_accepted_as_their_class() -> None:
    graph = Graph(nodes=[CountDown()])  # type: ignore[list-item]
    assert list(graph.node_defs) == ["CountDown"]


# -- run time -------------------------------------------------------------------------


@dataclass
class Outside(BaseNode[MyState, None, int]):
    async def run(self, ctx: GraphRunContext[MyState]) -> End[int]:
        return End(0)


@dataclass
class ReturnsJunk(BaseNode[MyState, None, int]):
    value: Any = 42

    async def run(self, ctx: GraphRunContext[MyState]) -> End[int]:
        return self.value  # type: ignore[no-any-return]


@dataclass
class ReturnsOutside(BaseNode[MyState, None, int]):
    async def run(self, ctx: GraphRunContext[MyState]) -> End[int]:
        return Outside()  # type: ignore[return-value]


@dataclass
class ReturnsUnannotated(BaseNode[MyState, None, int]):
    async def run(self, ctx: GraphRunContext[MyState]) -> Increment:
        return Check42()  # type: ignore[return-value]


strict_graph = Graph(nodes=[ReturnsJunk, ReturnsOutside, ReturnsUnannotated, Increment, Check42])


@pytest.mark.parametrize("value", [42, None, "text"], ids=["int", "none", "str"])
async def test_node_returning_a_non_node(value: Any) -> None:
    with pytest.raises(GraphRuntimeError) as info:
        await strict_graph.run(ReturnsJunk(value), state=MyState(0))
    # pydantic-graph's message exactly; the node that returned it is named in a note
    assert str(info.value) == f"Invalid node return type: `{type(value).__name__}`. Expected `BaseNode` or `End`."
    assert info.value.__notes__ == [f"`ReturnsJunk.run` returned {value!r}."]


async def test_node_returning_a_node_outside_the_graph() -> None:
    with pytest.raises(GraphRuntimeError, match=r"^Node `Outside\(\)` is not in the graph\.$"):
        await strict_graph.run(ReturnsOutside(), state=MyState(0))


async def test_node_returning_a_node_its_annotation_does_not_allow() -> None:
    with pytest.raises(GraphRuntimeError) as info:
        await strict_graph.run(ReturnsUnannotated(), state=MyState(0))
    assert str(info.value) == (
        "`ReturnsUnannotated.run` returned `Check42()`, but its return annotation does not allow `Check42` "
        "(it allows `Increment`). Add `Check42` to the annotation or return an allowed node."
    )


async def test_start_node_outside_the_graph() -> None:
    with pytest.raises(GraphRuntimeError, match=r"^Node `Outside\(\)` is not in the graph\.$"):
        await never_42_graph.run(Outside(), state=MyState(0))


async def test_next_with_a_node_outside_the_graph() -> None:
    async with count_down_graph.iter(CountDown(), state=CountDownState(1)) as run:
        with pytest.raises(GraphRuntimeError, match=r"^Node `Outside\(\)` is not in the graph\.$"):
            await run.next(Outside())  # type: ignore[arg-type]


async def test_next_with_something_that_is_not_a_node() -> None:
    async with count_down_graph.iter(CountDown(), state=CountDownState(1)) as run:
        with pytest.raises(TypeError, match=r"`next` must be called with a `BaseNode` instance, got 'nope'"):
            await run.next("nope")  # type: ignore[arg-type]


async def test_a_node_may_return_any_node_when_annotated_with_base_node() -> None:
    @dataclass
    class Anything(BaseNode[None, None, int]):
        hops: int = 0

        async def run(self, ctx: GraphRunContext) -> BaseNode | End[int]:
            return Other(self.hops + 1) if self.hops < 2 else End(self.hops)

    @dataclass
    class Other(BaseNode[None, None, int]):
        hops: int

        async def run(self, ctx: GraphRunContext) -> Anything:
            return Anything(self.hops)

    graph = Graph(nodes=[Anything, Other])
    assert (await graph.run(Anything())).output == 2
