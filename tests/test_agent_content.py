"""User prompts with images, sounds and documents: media types, JSON, runs and durable runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from railyard.agent import Agent, AudioUrl, BinaryContent, DocumentUrl, ImageUrl, RunContext
from railyard.agent._graph import agent_graph
from railyard.agent.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    UserPromptPart,
)
from railyard.agent.models import AgentInfo
from railyard.agent.models.function import FunctionModel
from railyard.durable import DurablePersistence
from railyard.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n\x00\xff"  # not valid UTF-8, as real image bytes are not


def test_media_types_and_formats_come_from_the_extension_or_the_bytes() -> None:
    assert (ImageUrl("https://x/cat.JPG?size=2").media_type, ImageUrl("https://x/a.webp").format) == (
        "image/jpeg",
        "webp",
    )
    assert (AudioUrl("https://x/a.mp3").media_type, AudioUrl("https://x/a.wav").media_type) == (
        "audio/mpeg",
        "audio/wav",
    )
    doc = DocumentUrl("https://x/report.docx")
    assert doc.format == "docx"
    assert doc.media_type == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    with pytest.raises(ValueError, match=r"^Unknown image file extension: https://x/a\.bmp$"):
        _ = ImageUrl("https://x/a.bmp").media_type
    with pytest.raises(ValueError, match=r"^Unknown audio file extension: https://x/a\.ogg$"):
        _ = AudioUrl("https://x/a.ogg").media_type
    with pytest.raises(ValueError, match=r"^Unknown document file extension: https://x/noext$"):
        _ = DocumentUrl("https://x/noext").media_type
    image, sound, pdf = (
        BinaryContent(PNG, "image/png"),
        BinaryContent(b"", "audio/mpeg"),
        BinaryContent(b"", "application/pdf"),
    )
    assert [(c.is_image, c.is_audio, c.is_document, c.format) for c in (image, sound, pdf)] == [
        (True, False, False, "png"),
        (False, True, False, "mp3"),
        (False, False, True, "pdf"),
    ]
    with pytest.raises(ValueError, match=r"^Unknown media type: application/x-foo$"):
        _ = BinaryContent(b"", "application/x-foo").format


def test_a_prompt_with_content_round_trips_through_json() -> None:
    content = ["Look:", ImageUrl("https://x/a.png"), BinaryContent(PNG, "image/png"), DocumentUrl("https://x/a.pdf")]
    messages: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart(content)])]
    data = ModelMessagesTypeAdapter.dump_json(messages)
    assert b'{"data":"iVBORw0KGgoA/w==","media_type":"image/png","kind":"binary"}' in data
    assert b'{"url":"https://x/a.png","kind":"image-url"}' in data
    back = ModelMessagesTypeAdapter.validate_json(data)
    assert back == messages
    assert ModelMessagesTypeAdapter.dump_json(back) == data


def describe(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    first = messages[0]
    assert isinstance(first, ModelRequest)
    [user] = [part for part in first.parts if isinstance(part, UserPromptPart)]
    kinds = [type(item).__name__ for item in user.content]
    return ModelResponse(parts=[TextPart(" + ".join(kinds))])


async def test_an_agent_run_and_a_durable_run_carry_the_content(tmp_path: Path) -> None:
    agent = Agent(FunctionModel(describe))
    prompts: list[object] = []

    @agent.system_prompt
    def note(ctx: RunContext[None]) -> str:
        prompts.append(ctx.prompt)
        return "Describe."

    prompt = ["What is this?", BinaryContent(PNG, "image/png")]
    assert (await agent.run(prompt)).data == "str + BinaryContent"
    assert prompts == [prompt]

    store = SqliteStore(tmp_path / "runs.db")
    result = await agent.run(prompt, persistence=DurablePersistence(store, "run-1"))
    assert result.data == "str + BinaryContent"
    loaded = DurablePersistence(SqliteStore(tmp_path / "runs.db"), "run-1")
    loaded.set_graph_types(agent_graph)
    snapshots = await loaded.load_all()
    state = snapshots[-1].state
    assert state.prompt == prompt  # the bytes came back from the store as bytes
    assert state.message_history == result.all_messages()
