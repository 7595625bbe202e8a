"""Streaming an agent run node by node: the model's answer as it arrives, and tools as they run.

The event lists and usage figures are what pydantic-ai 0.0.40 gives for the same runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from railyard.agent import Agent, AgentRunError, ModelRequestNode, UsageLimitExceeded, UserError
from railyard.agent.events import (
    FinalResultEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    PartDeltaEvent,
    PartsBuilder,
    PartStartEvent,
    TextPartDelta,
    ToolCallPartDelta,
)
from railyard.agent.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import DeltaToolCall, DeltaToolCalls, FunctionModel
from railyard.agent.usage import Usage, UsageLimits
from railyard.durable import DurablePersistence
from railyard.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


class Streamer:
    """A stream function: two tool calls in pieces, then text in pieces; it counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.__name__ = "streamer"

    async def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        self.calls += 1
        if len(messages) == 1:
            yield {0: DeltaToolCall(name="ge", json_args='{"x":', tool_call_id="c1")}
            yield {1: DeltaToolCall(json_args='{"x": 2}')}  # no name yet: held back
            yield {0: DeltaToolCall(name="t", json_args=" 1}")}
            yield {1: DeltaToolCall(name="get", tool_call_id="c2")}
        else:
            yield "Paris "
            yield "is nice"


def make_agent(streamer: Streamer) -> tuple[Agent, list[int]]:
    agent = Agent(FunctionModel(stream_function=streamer))
    ran: list[int] = []

    @agent.tool_plain
    async def get(x: int) -> int:
        ran.append(x)
        return x * 10

    return agent, ran


def without_timestamps(events: list[object]) -> list[object]:
    return [
        ("result", e.result.tool_name, e.result.content, e.result.tool_call_id, e.tool_call_id)
        if isinstance(e, FunctionToolResultEvent) and isinstance(e.result, ToolReturnPart)
        else e
        for e in events
    ]


async def test_streaming_every_node_gives_the_events_and_the_same_run() -> None:
    streamer = Streamer()
    agent, ran = make_agent(streamer)
    seen: list[tuple[str, list[object]]] = []
    async with agent.iter("q") as run:
        async for node in run:
            if Agent.is_model_request_node(node) or Agent.is_call_tools_node(node):
                async with node.stream(run.ctx) as events:
                    seen.append((type(node).__name__, [event async for event in events]))
    assert [(name, without_timestamps(events)) for name, events in seen] == [
        (
            "ModelRequestNode",
            [
                PartStartEvent(0, ToolCallPart("ge", '{"x":', "c1")),
                PartDeltaEvent(0, ToolCallPartDelta("t", " 1}", None)),
                PartStartEvent(1, ToolCallPart("get", '{"x": 2}', "c2")),
            ],
        ),
        (
            "CallToolsNode",
            [
                FunctionToolCallEvent(ToolCallPart("get", '{"x": 1}', "c1")),
                FunctionToolCallEvent(ToolCallPart("get", '{"x": 2}', "c2")),
                ("result", "get", 10, "c1", "c1"),
                ("result", "get", 20, "c2", "c2"),
            ],
        ),
        (
            "ModelRequestNode",
            [
                PartStartEvent(0, TextPart("Paris ")),
                FinalResultEvent(None, None),
                PartDeltaEvent(0, TextPartDelta("is nice")),
            ],
        ),
        ("CallToolsNode", []),
    ]
    assert run.result is not None and run.result.data == "Paris is nice"
    assert (streamer.calls, sorted(ran)) == (2, [1, 2])  # each request and tool ran once
    assert run.usage() == Usage(requests=2, request_tokens=100, response_tokens=10, total_tokens=110)
    response = run.result.all_messages()[1]
    assert isinstance(response, ModelResponse) and response.model_name == "function::streamer"
    assert response.parts == [ToolCallPart("get", '{"x": 1}', "c1"), ToolCallPart("get", '{"x": 2}', "c2")]


async def test_what_the_block_does_not_read_is_read_when_it_exits() -> None:
    streamer = Streamer()
    agent, ran = make_agent(streamer)
    async with agent.iter("q") as run:
        node = await run.next()
        assert isinstance(node, ModelRequestNode)
        async with node.stream(run.ctx) as events:
            async for _event in events:
                break
        call_tools = await run.next()
        assert Agent.is_call_tools_node(call_tools)
        assert len(call_tools.model_response.parts) == 2  # the whole answer, not the first piece
        async with call_tools.stream(run.ctx):
            pass  # no events read: the tools still run, once
        assert sorted(ran) == [1, 2]
        async for _ in run:
            pass
    assert run.result is not None and run.result.data == "Paris is nice"
    assert sorted(ran) == [1, 2]
    with pytest.raises(AgentRunError, match="stream\\(\\) can only be called once per ModelRequestNode"):
        async with node.stream(run.ctx):
            pass


async def test_a_model_without_streaming_replays_its_answer_and_a_result_tool_is_final() -> None:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("thinking"), ToolCallPart("final_result", {"response": 3}, "r")])

    agent = Agent(FunctionModel(answer), result_type=int)
    async with agent.iter("q") as run:
        node = await run.next()
        assert isinstance(node, ModelRequestNode)
        async with node.stream(run.ctx) as events:
            got = [event async for event in events]
        async for _ in run:
            pass
    assert got == [
        PartStartEvent(0, TextPart("thinking")),
        PartStartEvent(1, ToolCallPart("final_result", {"response": 3}, "r")),
        FinalResultEvent("final_result", "r"),
    ]
    assert run.result is not None and run.result.data == 3


async def test_a_tool_error_while_streaming_comes_out_of_the_block_as_itself() -> None:
    def two_calls(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("ok", {}), ToolCallPart("boom", {})])

    agent = Agent(FunctionModel(two_calls))

    @agent.tool_plain
    async def ok() -> str:
        return "fine"

    @agent.tool_plain
    async def boom() -> str:
        raise ValueError("kaboom")

    async with agent.iter("q") as run:
        await run.next()
        node = await run.next()
        assert Agent.is_call_tools_node(node)
        with pytest.raises(ValueError, match=r"^kaboom$"):
            async with node.stream(run.ctx) as events:
                async for _ in events:
                    pass


async def test_a_streamed_durable_run_is_stored_like_any_other(tmp_path: Path) -> None:
    streamer = Streamer()
    agent, _ = make_agent(streamer)
    store = SqliteStore(tmp_path / "runs.db")
    async with agent.iter("q", persistence=DurablePersistence(store, "s-1")) as run:
        async for node in run:
            if Agent.is_model_request_node(node):
                async with node.stream(run.ctx) as events:
                    async for _ in events:
                        pass
    assert run.result is not None
    stored = DurablePersistence(SqliteStore(tmp_path / "runs.db"), "s-1")
    from railyard.agent._graph import agent_graph

    stored.set_graph_types(agent_graph)
    snapshots = await stored.load_all()
    assert snapshots[-1].state.message_history == run.result.all_messages()


def test_parts_builder_holds_back_a_call_until_it_has_a_name() -> None:
    parts = PartsBuilder()
    assert parts.tool_call_delta(7, args='{"a": ') is None
    assert parts.text_delta("Hi") == PartStartEvent(0, TextPart("Hi"))
    assert parts.text_delta(" there") == PartDeltaEvent(0, TextPartDelta(" there"))
    assert parts.tool_call_delta(7, tool_name="f", args="1}", tool_call_id="x") == PartStartEvent(
        1, ToolCallPart("f", '{"a": 1}', "x")
    )
    assert parts.text_delta("!") == PartStartEvent(2, TextPart("!"))  # after a call, text is a new part
    assert parts.parts == [TextPart("Hi there"), ToolCallPart("f", '{"a": 1}', "x"), TextPart("!")]
    with pytest.raises(ValueError, match="Cannot add to a tool call at part 3, which is a TextPart"):
        parts.add_part(TextPart("x"), key="k")
        parts.tool_call_delta("k", args="y")


class Town(BaseModel):
    name: str
    country: str


async def planner(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    """Calls `get` first; then streams a Town through the result tool, or text."""
    if len(messages) == 1:
        yield {0: DeltaToolCall(name="get", json_args='{"x": 1}', tool_call_id="c1")}
    elif info.result_tools:
        yield {0: DeltaToolCall(name="final_result", json_args='{"name": "Pa', tool_call_id="r")}
        yield {0: DeltaToolCall(json_args='ris", "coun')}
        yield {0: DeltaToolCall(json_args='try": "France"}')}
    else:
        for piece in ("Paris ", "is ", "nice"):
            yield piece


def planner_agent(result_type: type = str) -> tuple[Agent[None, Any], list[int]]:
    agent: Agent[None, Any] = Agent(FunctionModel(stream_function=planner), result_type=result_type)
    ran: list[int] = []

    @agent.tool_plain
    def get(x: int) -> int:
        ran.append(x)
        return x

    return agent, ran


async def test_run_stream_gives_the_text_as_it_arrives() -> None:
    agent, ran = planner_agent()
    async with agent.run_stream("q") as result:
        assert not result.is_complete
        assert [text async for text in result.stream_text(debounce_by=None)] == ["Paris ", "Paris is ", "Paris is nice"]
        assert result.is_complete
        assert await result.get_data() == "Paris is nice"
        assert result.usage() == Usage(requests=2, request_tokens=100, response_tokens=6, total_tokens=106)
        assert [type(m).__name__ for m in result.all_messages()] == [
            "ModelRequest",
            "ModelResponse",
            "ModelRequest",
            "ModelResponse",
        ]
    assert ran == [1]  # the tool round before the answer ran once
    assert result.usage() == Usage(requests=2, request_tokens=100, response_tokens=6, total_tokens=106)
    assert len(result.new_messages()) == 4
    async with agent.run_stream("q") as result:
        assert [piece async for piece in result.stream_text(delta=True, debounce_by=None)] == ["Paris ", "is ", "nice"]
    async with agent.run_stream("q") as result:
        assert [text async for text in result.stream(debounce_by=None)] == [
            "Paris ",
            "Paris is ",
            "Paris is nice",
            "Paris is nice",  # the last one, validated
        ]
    async with agent.run_stream("q") as result:
        everything = [text async for text in result.stream_text(debounce_by=60)]
    assert everything == ["Paris is nice"]  # it all arrived within one window


async def test_run_stream_gives_a_structured_result_as_it_validates() -> None:
    agent, _ = planner_agent(Town)
    async with agent.run_stream("q") as result:
        # '{"name": "Pa' lacks a country, so the first snapshot is not a Town yet
        assert [town async for town in result.stream(debounce_by=None)] == [
            Town(name="Paris", country="France"),
            Town(name="Paris", country="France"),
        ]
        with pytest.raises(UserError, match="stream_text\\(\\) can only be used with text responses"):
            async for _ in result.stream_text():
                pass
    assert await result.get_data() == Town(name="Paris", country="France")
    last = result.all_messages()[-1]
    assert isinstance(last, ModelRequest)
    assert [(p.tool_name, p.content) for p in last.parts if isinstance(p, ToolReturnPart)] == [
        ("final_result", "Final result processed.")
    ]


async def test_run_stream_applies_result_validators_and_works_with_test_model() -> None:
    agent: Agent[None, str] = Agent("test")

    @agent.result_validator
    def shout(text: str) -> str:
        return text.upper()

    async with agent.run_stream("q") as result:
        assert await result.get_data() == "SUCCESS (NO TOOL CALLS)"
    assert result.is_complete


async def test_run_stream_validates_once_and_records_the_answer_once() -> None:
    agent, _ = planner_agent(Town)
    seen: list[Town] = []

    @agent.result_validator
    def check(town: Town) -> Town:
        seen.append(town)
        return town

    async with agent.run_stream("q") as result:
        assert await result.get_data() == Town(name="Paris", country="France")
    assert seen == [Town(name="Paris", country="France")]  # not again when the run ends
    assert [type(m).__name__ for m in result.all_messages()] == ["ModelRequest", "ModelResponse"] * 2 + ["ModelRequest"]
    assert result.usage().requests == 2


async def test_run_stream_keeps_the_returns_of_tools_called_beside_a_text_answer() -> None:
    async def text_then_tool(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        yield "Let me check. "
        yield {0: DeltaToolCall(name="get", json_args='{"x": 1}', tool_call_id="g")}

    agent = Agent(FunctionModel(stream_function=text_then_tool))
    ran: list[int] = []

    @agent.tool_plain
    def get(x: int) -> int:
        ran.append(x)
        return x

    async with agent.run_stream("q") as result:
        assert await result.get_data() == "Let me check. "
    assert ran == [1]
    last = result.all_messages()[-1]
    assert isinstance(last, ModelRequest) and [type(p).__name__ for p in last.parts] == ["ToolReturnPart"]


async def test_token_limits_stop_a_stream_as_it_arrives() -> None:
    async def chatty(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        for index in range(20):
            yield f"w{index} "

    agent = Agent(FunctionModel(stream_function=chatty))
    with pytest.raises(UsageLimitExceeded, match=r"^Exceeded the response_tokens_limit of 5 \(response_tokens=6\)$"):
        async with agent.run_stream("q", usage_limits=UsageLimits(response_tokens_limit=5)) as result:
            await result.get_data()
    assert result.usage() == Usage(requests=1, request_tokens=50, response_tokens=6, total_tokens=56)


async def test_running_a_node_while_it_streams_is_refused() -> None:
    agent, _ = make_agent(Streamer())
    async with agent.iter("q") as run:
        node = await run.next()
        assert isinstance(node, ModelRequestNode)
        async with node.stream(run.ctx):
            with pytest.raises(AgentRunError, match=r"^You must finish streaming before calling run\(\)$"):
                await run.next(node)


async def test_debouncing_sends_a_window_when_it_closes() -> None:
    import anyio

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        yield "a "
        await anyio.sleep(0.02)
        yield "b "
        await anyio.sleep(0.6)
        yield "c"

    agent = Agent(FunctionModel(stream_function=slow))
    async with agent.run_stream("q") as result:
        pieces = [piece async for piece in result.stream_text(delta=True, debounce_by=0.2)]
    assert pieces == ["a b ", "c"]  # 'a b ' is sent when its window closes, not held until 'c'
