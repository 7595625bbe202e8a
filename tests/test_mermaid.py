"""Mermaid diagrams: exact text, and images from a rendering service on a real local socket."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from railyard import BaseNode, Edge, End, Graph, GraphRunContext
from railyard.builder import Graph as BuilderGraph
from railyard.builder import GraphBuilder, StepContext, reduce_sum
from railyard.exceptions import MermaidServiceError
from railyard.mermaid import generate_code
from tests.graphs import Check42, CountDown, Increment, count_down_graph, never_42_graph


@dataclass
class Ask(BaseNode):
    """Generate a question."""

    docstring_notes = True

    async def run(self, ctx: GraphRunContext) -> Annotated[Answer, Edge(label="Ask the question")]:
        return Answer()


@dataclass
class Answer(BaseNode):
    async def run(self, ctx: GraphRunContext) -> Evaluate:
        return Evaluate()


@dataclass
class Evaluate(BaseNode[None, None, str]):
    """Evaluate the answer.

    Second paragraph of the note.
    """

    docstring_notes = True

    async def run(
        self, ctx: GraphRunContext
    ) -> Annotated[End[str], Edge(label="success")] | Annotated[Reprimand, Edge(label="failure")]:
        return End("ok")


@dataclass
class Reprimand(BaseNode):
    """Has a docstring, but notes are off for this node."""

    async def run(self, ctx: GraphRunContext) -> Annotated[Ask, Edge(label="try again")]:
        return Ask()


question_graph = Graph(nodes=(Ask, Answer, Evaluate, Reprimand))

QUESTION_DIAGRAM = """\
---
title: question_graph
---
stateDiagram-v2
  [*] --> Ask
  Ask --> Answer: Ask the question
  note right of Ask
    Generate a question.
  end note
  Answer --> Evaluate
  Evaluate --> Reprimand: failure
  Evaluate --> [*]: success
  note right of Evaluate
    Evaluate the answer.
    Second paragraph of the note.
  end note
  Reprimand --> Ask: try again"""


def test_count_down_diagram() -> None:
    assert count_down_graph.mermaid_code() == (
        "---\ntitle: count_down_graph\n---\nstateDiagram-v2\n  CountDown --> CountDown\n  CountDown --> [*]"
    )


def test_start_nodes_by_class_instance_or_id() -> None:
    expected = (
        "---\ntitle: never_42_graph\n---\nstateDiagram-v2\n"
        "  [*] --> Increment\n  Increment --> Check42\n  Check42 --> Increment: is 42\n  Check42 --> [*]"
    )
    assert never_42_graph.mermaid_code(start_node=Increment) == expected
    assert never_42_graph.mermaid_code(start_node=Increment()) == expected
    assert never_42_graph.mermaid_code(start_node="Increment") == expected
    both = never_42_graph.mermaid_code(start_node=[Increment, Check42])
    assert "  [*] --> Increment\n  Increment --> Check42\n  [*] --> Check42\n" in both


def test_notes_labels_and_options() -> None:
    assert question_graph.mermaid_code(start_node=Ask) == QUESTION_DIAGRAM
    no_labels = question_graph.mermaid_code(edge_labels=False)
    assert "Ask --> Answer\n" in no_labels and ": " not in no_labels.split("---")[-1].replace("title: ", "")
    no_notes = question_graph.mermaid_code(notes=False)
    assert "note" not in no_notes
    assert question_graph.mermaid_code(title="Q", direction="LR", notes=False, edge_labels=False) == (
        "---\ntitle: Q\n---\nstateDiagram-v2\n  direction LR\n  Ask --> Answer\n  Answer --> Evaluate\n"
        "  Evaluate --> Reprimand\n  Evaluate --> [*]\n  Reprimand --> Ask"
    )


def test_highlighting() -> None:
    code = never_42_graph.mermaid_code(highlighted_nodes=[Increment, Check42], highlight_css="fill:#f00")
    assert code.endswith("\n\nclassDef highlighted fill:#f00\nclass Increment highlighted\nclass Check42 highlighted")
    default = never_42_graph.mermaid_code(highlighted_nodes=Check42)
    assert default.endswith("\n\nclassDef highlighted fill:#fdff32\nclass Check42 highlighted")
    assert "classDef" not in never_42_graph.mermaid_code(highlighted_nodes=[])


def test_unknown_nodes_are_lookup_errors() -> None:
    with pytest.raises(LookupError, match=r'^Start node "Nope" is not in the graph\.$'):
        never_42_graph.mermaid_code(start_node="Nope")
    with pytest.raises(LookupError, match=r'^Highlighted node "Nope" is not in the graph\.$'):
        never_42_graph.mermaid_code(highlighted_nodes="Nope")


def test_title_can_be_turned_off_and_unnamed_graphs_have_none() -> None:
    assert question_graph.mermaid_code(title=False).startswith("stateDiagram-v2")
    assert question_graph.mermaid_code(title="").startswith("stateDiagram-v2")
    graphs = [Graph(nodes=[CountDown])]
    code = graphs[0].mermaid_code()
    assert code == "stateDiagram-v2\n  CountDown --> CountDown\n  CountDown --> [*]"


def test_any_node_edges_when_annotated_with_base_node() -> None:
    @dataclass
    class Anything(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> BaseNode | End[int]:
            return End(1)

    @dataclass
    class Other(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> Anything:
            return Anything()

    any_graph = Graph(nodes=[Anything, Other])
    assert any_graph.mermaid_code() == (
        "---\ntitle: any_graph\n---\nstateDiagram-v2\n"
        "  Anything --> Anything\n  Anything --> Other\n  Anything --> [*]\n  Other --> Anything"
    )


def test_get_note_can_be_overridden() -> None:
    @dataclass
    class Custom(BaseNode[None, None, int]):
        @classmethod
        def get_note(cls) -> str | None:
            return "custom note\n\nwith two lines"

        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(1)

    custom_graph = Graph(nodes=[Custom])
    assert custom_graph.mermaid_code().endswith(
        "  Custom --> [*]\n  note right of Custom\n    custom note\n    with two lines\n  end note"
    )


def test_docstring_notes_skip_generated_dataclass_docs() -> None:
    @dataclass
    class Plain(BaseNode[None, None, int]):
        docstring_notes = True
        value: int = 0

        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(1)

    assert Plain.get_note() is None
    assert Reprimand.get_note() is None
    assert Evaluate.get_note() == "Evaluate the answer.\n\nSecond paragraph of the note."


def test_code_needs_only_what_a_diagram_shows_of_a_graph() -> None:
    @dataclass
    class Shown:
        note: str | None
        next_node_edges: dict[str, Edge]
        end_edge: Edge | None = None
        returns_base_node: bool = False

    @dataclass
    class NotAGraph:
        node_defs: dict[str, Shown]

    graph = NotAGraph({"Ask": Shown("Ask it.", {"Check": Edge("why")}), "Check": Shown(None, {}, end_edge=Edge(None))})
    assert generate_code(graph, start_node="Ask", highlighted_nodes="Check") == (
        "stateDiagram-v2\n  [*] --> Ask\n  Ask --> Check: why\n  note right of Ask\n    Ask it.\n  end note\n"
        "  Check --> [*]\n\nclassDef highlighted fill:#fdff32\nclass Check highlighted"
    )


# -- images through a rendering service -----------------------------------------------


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict[str, str])


class FakeMermaidService:
    """A mermaid rendering service on 127.0.0.1 that records requests and answers with bytes."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[Request] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                service.requests.append(Request(parts.path, query, dict(self.headers.items())))
                body = b"rendered:" + parts.path.split("/")[1].encode() if status == 200 else b"bad diagram"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self) -> FakeMermaidService:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def decoded(self, index: int = -1) -> str:
        return base64.b64decode(self.requests[index].path.split("/")[2]).decode()


@pytest.fixture
def service() -> Iterator[FakeMermaidService]:
    with FakeMermaidService() as fake:
        yield fake


def test_image_request_sends_the_diagram_and_options(service: FakeMermaidService) -> None:
    image = never_42_graph.mermaid_image(base_url=service.url, image_type="png", theme="dark", width=100, scale=2)
    assert image == b"rendered:img"
    (request,) = service.requests
    assert request.path.startswith("/img/")
    assert request.query == {"type": ["png"], "theme": ["dark"], "width": ["100"], "scale": ["2"]}
    assert service.decoded() == never_42_graph.mermaid_code()


def test_pdf_and_svg_endpoints(service: FakeMermaidService) -> None:
    never_42_graph.mermaid_image(base_url=service.url, image_type="pdf", pdf_fit=True, pdf_paper="a4")
    never_42_graph.mermaid_image(base_url=service.url, image_type="svg", background_color="!white")
    assert service.requests[0].path.startswith("/pdf/")
    assert service.requests[0].query == {"fit": [""], "paper": ["a4"]}
    assert service.requests[1].path.startswith("/svg/")
    assert service.requests[1].query == {"bgColor": ["!white"]}


def test_base_url_from_the_environment(service: FakeMermaidService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAILYARD_MERMAID_URL", service.url)
    assert never_42_graph.mermaid_image(start_node=Increment, title="T", direction="LR") == b"rendered:img"
    assert service.decoded().startswith("---\ntitle: T\n---\nstateDiagram-v2\n  direction LR\n  [*] --> Increment")


@pytest.mark.parametrize(
    ("name", "endpoint", "query"),
    [
        ("g.png", "/img/", {"type": ["png"]}),
        ("g.webp", "/img/", {"type": ["webp"]}),
        ("g.svg", "/svg/", {}),
        ("g.pdf", "/pdf/", {}),
        ("g.jpg", "/img/", {}),
    ],
)
def test_save_picks_the_format_from_the_suffix(
    service: FakeMermaidService, tmp_path: Path, name: str, endpoint: str, query: dict[str, list[str]]
) -> None:
    path = tmp_path / name
    never_42_graph.mermaid_save(path, base_url=service.url)
    assert path.read_bytes() == b"rendered:" + endpoint.strip("/").encode()
    assert service.requests[-1].path.startswith(endpoint)
    assert service.requests[-1].query == query


def test_save_mermaid_text_needs_no_service(tmp_path: Path) -> None:
    path = tmp_path / "graph.mmd"
    never_42_graph.mermaid_save(path, start_node=Increment)
    assert path.read_text() == never_42_graph.mermaid_code(start_node=Increment)


def test_service_error_status_is_a_clear_error() -> None:
    with FakeMermaidService(status=400) as failing, pytest.raises(MermaidServiceError) as info:
        never_42_graph.mermaid_image(base_url=failing.url)
    assert str(info.value) == "400 error generating image:\nbad diagram"
    # code written for pydantic-graph catches httpx's error and reads the response
    assert isinstance(info.value, httpx.HTTPStatusError)
    assert info.value.response.status_code == 400
    assert info.value.response.content == b"bad diagram"


def test_unreachable_service_is_a_clear_error() -> None:
    with FakeMermaidService() as gone:
        url = gone.url
    with pytest.raises(MermaidServiceError, match=rf"Could not reach the mermaid rendering service at {url}"):
        never_42_graph.mermaid_image(base_url=url)


# -- builder graphs: the same service, the same options ---------------------------------


def fan_graph() -> BuilderGraph:
    g = GraphBuilder(input_type=int, output_type=int)

    @g.step(label="Double it")
    async def double(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs * 2

    @g.step
    async def square(ctx: StepContext[None, None, int]) -> int:
        return ctx.inputs**2

    total = g.join(reduce_sum, initial=0)
    g.add(
        g.edge_from(g.start_node).to(double, square),
        g.edge_from(double, square).to(total),
        g.edge_from(total).label("sum").to(g.end_node),
    )
    return g.build()


FAN_DIAGRAM = """\
stateDiagram-v2
  state broadcast <<fork>>
  double: Double it
  square
  state reduce_sum <<join>>

  [*] --> broadcast
  broadcast --> double
  broadcast --> square
  double --> reduce_sum
  square --> reduce_sum
  reduce_sum --> [*]: sum"""


def test_builder_diagram() -> None:
    graph = fan_graph()
    assert str(graph) == graph.render() == FAN_DIAGRAM
    assert graph.render(title="fan", direction="LR") == FAN_DIAGRAM.replace(
        "stateDiagram-v2", "---\ntitle: fan\n---\nstateDiagram-v2\n  direction LR"
    )


@pytest.mark.parametrize("name", ["fan.md", "fan.mmd", "fan.mermaid", "FAN.MD"])
def test_builder_save_mermaid_text_needs_no_service(tmp_path: Path, name: str) -> None:
    graph = fan_graph()
    path = tmp_path / name
    graph.mermaid_save(path)
    assert path.read_text() == graph.render() == FAN_DIAGRAM
    graph.mermaid_save(str(path), title="fan", direction="LR")
    assert path.read_text() == graph.render(title="fan", direction="LR")


def test_builder_image_request_sends_the_render_text_and_options(service: FakeMermaidService) -> None:
    graph = fan_graph()
    image = graph.mermaid_image(base_url=service.url, image_type="webp", theme="forest", height=50, scale=3)
    assert image == b"rendered:img"
    (request,) = service.requests
    assert request.path.startswith("/img/")
    assert request.query == {"type": ["webp"], "theme": ["forest"], "height": ["50"], "scale": ["3"]}
    assert service.decoded() == FAN_DIAGRAM
    graph.mermaid_image(base_url=service.url, image_type="pdf", pdf_landscape=True, title="fan", direction="TB")
    assert service.requests[-1].path.startswith("/pdf/")
    assert service.requests[-1].query == {"landscape": [""]}
    assert service.decoded() == graph.render(title="fan", direction="TB")


def test_builder_image_through_a_given_client_and_the_environment(
    service: FakeMermaidService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("RAILYARD_MERMAID_URL", service.url)
    with httpx.Client(headers={"x-from": "test"}) as client:
        assert fan_graph().mermaid_image(httpx_client=client) == b"rendered:img"
    assert service.requests[0].query == {}
    assert service.requests[0].headers["x-from"] == "test"
    assert service.decoded() == FAN_DIAGRAM


@pytest.mark.parametrize(
    ("name", "endpoint", "query"),
    [
        pytest.param("g.png", "/img/", {"type": ["png"]}, id="png"),
        pytest.param("g.svg", "/svg/", {}, id="svg"),
        pytest.param("g.pdf", "/pdf/", {}, id="pdf"),
        pytest.param("g.md", "/img/", {"type": ["jpeg"]}, id="text-suffix-but-image-type"),
    ],
)
def test_builder_save_renders_images_through_the_service(
    service: FakeMermaidService, tmp_path: Path, name: str, endpoint: str, query: dict[str, list[str]]
) -> None:
    path = tmp_path / name
    options = {"image_type": "jpeg"} if name.endswith(".md") else {}
    fan_graph().mermaid_save(path, base_url=service.url, **options)
    assert path.read_bytes() == b"rendered:" + endpoint.strip("/").encode()
    assert service.requests[-1].path.startswith(endpoint)
    assert service.requests[-1].query == query
    assert service.decoded() == FAN_DIAGRAM


def test_builder_service_errors_are_clear_errors(tmp_path: Path) -> None:
    graph = fan_graph()
    with FakeMermaidService(status=400) as failing, pytest.raises(MermaidServiceError) as info:
        graph.mermaid_save(tmp_path / "g.png", base_url=failing.url)
    assert str(info.value) == "400 error generating image:\nbad diagram"
    assert not (tmp_path / "g.png").exists()
    with FakeMermaidService() as gone:
        url = gone.url
    with pytest.raises(MermaidServiceError, match=rf"Could not reach the mermaid rendering service at {url}"):
        graph.mermaid_image(base_url=url)


def test_builder_options_are_checked(tmp_path: Path) -> None:
    graph = fan_graph()
    with pytest.raises(TypeError, match=r"^mermaid_image\(\) got an unexpected keyword argument 'start_node'; "):
        graph.mermaid_image(start_node="double")
    with pytest.raises(TypeError, match=r"^mermaid_save\(\) got an unexpected keyword argument 'them'; the options"):
        graph.mermaid_save(tmp_path / "g.md", them="dark")
    assert not (tmp_path / "g.md").exists()
