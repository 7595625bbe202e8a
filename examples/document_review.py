"""Review a folder of documents before they are published: railyard's flagship example.

A builder graph. `read_folder` reads the `.txt` files of a folder; a map fans out over
them, and `review_document` reviews each one, three at a time: its words, a summary
line, the words a person should look at. The `reviews` join collects the reviews in
name order, `tally` adds them up in the run's state, and `approve` asks a person whether
to publish (`ctx.wait_for`, with a typed `Approval`): the run is stored *suspended*
until someone answers, from any process, days later if need be. `report` then says what
was decided.

The summariser that `review_document` calls is flaky: it times out the first time it
sees `board-minutes.txt` (a real service fails at random; this one fails the same way
every run, so the output is always the same). The step's retry policy runs it again,
and the failed attempt stays in the run's log, where `railyard show` lists it.

`./dev demo` drives this graph through the `railyard` command (`examples/demo_tour.sh`):

    railyard run examples.document_review:review --run-id review-1
    railyard signal review-1 approval '{"approved": true, "by": "Dana"}'
    railyard resume review-1 --graph examples.document_review:review

`--inputs '{"folder": "path/to/docs", "flag": ["draft"]}'` reviews another folder, or
flags other words. Run as a script (`python examples/document_review.py`), it does the
same in one process with the library's API, in a SQLite file of its own.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pydantic

from railyard import RetryPolicy, SqliteStore
from railyard.builder import GraphBuilder, StepContext
from railyard.suspension import RunSuspended, signal

DOCUMENTS = Path(__file__).resolve().parent / "documents"
"""The folder reviewed when a run is given no inputs."""
FLAGGED = ("confidential", "guarantee", "todo")
"""Words a person should look at before a document goes out."""
FLAKY_DOCUMENT = "board-minutes.txt"
"""The document the summariser times out on, the first time it sees it."""


class ReviewRequest(pydantic.BaseModel):
    """What to review: the run's inputs (`--inputs JSON`); the defaults need none."""

    folder: str = str(DOCUMENTS)
    """The folder whose `.txt` files are reviewed."""
    flag: list[str] = list(FLAGGED)
    """The words to flag (in any case)."""


class Approval(pydantic.BaseModel):
    """A person's answer to `approve`: the payload of `railyard signal RUN_ID approval JSON`."""

    approved: bool
    """Whether the documents may be published."""
    by: str
    """Who decided."""
    note: str = ""
    """Why, if they want to say."""


@dataclass
class Document:
    """A document to review, as read from the folder."""

    name: str
    text: str
    flag: list[str]
    """The words to flag in it."""


@dataclass
class DocumentReview:
    """What the review of one document found."""

    name: str
    words: int
    summary: str
    """Its first sentence, shortened."""
    flagged: list[str]
    """The flagged words it holds, in order of first appearance."""


@dataclass
class ReviewState:
    """The run's state: what `railyard show` prints after each step, with what the step changed."""

    words: int = 0
    """The words of the documents, all told."""
    summaries: dict[str, str] = field(default_factory=dict[str, str])
    """Each document's summary line, by name."""
    flagged: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    """The flagged words of each document that has any."""
    decided_by: str | None = None
    """Who approved or turned down the batch."""


g: GraphBuilder[ReviewState, None, ReviewRequest | None, str] = GraphBuilder(
    name="document_review",
    state_type=ReviewState,
    input_type=ReviewRequest | None,
    output_type=str,
)


@g.step
async def read_folder(ctx: StepContext[ReviewState, None, ReviewRequest | None]) -> list[Document]:
    """Read the folder's `.txt` files, in name order: the map fans out over them."""
    request = ctx.inputs or ReviewRequest()
    paths = sorted([path async for path in anyio.Path(request.folder).glob("*.txt")])
    if not paths:
        raise FileNotFoundError(f"no .txt documents in {request.folder}: give another folder in --inputs")
    flag = [word.lower() for word in request.flag]
    return [Document(path.name, await path.read_text(encoding="utf-8"), flag) for path in paths]


def summarise(document: Document, attempt: int) -> str:
    """The document's first sentence, at most 60 characters: a stand-in for a summarising service.

    Raises:
        TimeoutError: on the first attempt at `FLAKY_DOCUMENT`, as a busy service would.
    """
    if document.name == FLAKY_DOCUMENT and attempt == 1:
        raise TimeoutError(f"the summariser timed out on {document.name}")
    first = re.split(r"(?<=[.!?])\s", document.text.strip(), maxsplit=1)[0]
    return first if len(first) <= 60 else first[:57].rsplit(" ", 1)[0] + "..."


@g.step(retry_policy=RetryPolicy(attempts=3, initial_interval=0.2, jitter=0))
async def review_document(ctx: StepContext[ReviewState, None, Document]) -> DocumentReview:
    """Count a document's words, find its flagged words and summarise it (retried when the summariser fails)."""
    document = ctx.inputs
    words = re.findall(r"[\w'-]+", document.text.lower())
    flagged = list(dict.fromkeys(word for word in words if word in document.flag))
    summary = summarise(document, ctx.attempt)
    return DocumentReview(document.name, len(words), summary, flagged)


def by_name(reviews: list[DocumentReview], review: DocumentReview) -> list[DocumentReview]:
    """The join's reducer: add one document's review, keeping the reviews in name order."""
    return sorted([*reviews, review], key=lambda r: r.name)


reviews = g.join(by_name, initial_factory=list[DocumentReview], node_id="reviews")


@g.step
async def tally(ctx: StepContext[ReviewState, None, list[DocumentReview]]) -> list[DocumentReview]:
    """Add the reviews up in the state, where the person who approves sees them (`railyard show`)."""
    ctx.state.words = sum(review.words for review in ctx.inputs)
    ctx.state.summaries = {review.name: review.summary for review in ctx.inputs}
    ctx.state.flagged = {review.name: review.flagged for review in ctx.inputs if review.flagged}
    return ctx.inputs


@dataclass
class Verdict:
    """The reviews and the person's answer: what `report` gets."""

    reviews: list[DocumentReview]
    approval: Approval


@g.step
async def approve(ctx: StepContext[ReviewState, None, list[DocumentReview]]) -> Verdict:
    """Wait for a person to approve the batch: the run is suspended here until they answer."""
    prompt = f"Publish {len(ctx.inputs)} documents ({len(ctx.state.flagged)} with flagged words)?"
    approval = await ctx.wait_for("approval", Approval, prompt=prompt)
    ctx.state.decided_by = approval.by
    return Verdict(ctx.inputs, approval)


@g.step
async def report(ctx: StepContext[ReviewState, None, Verdict]) -> str:
    """The run's result: one line saying what was decided, by whom, and what was flagged."""
    verdict = ctx.inputs
    answer = verdict.approval
    decided = "approved" if answer.approved else "turned down"
    note = f" ({answer.note})" if answer.note else ""
    flagged = "; ".join(f"{name}: {', '.join(words)}" for name, words in ctx.state.flagged.items())
    return f"{len(verdict.reviews)} documents, {ctx.state.words} words, {decided} by {answer.by}{note}" + (
        f"; flagged {flagged}" if flagged else ""
    )


g.add(
    g.edge_from(g.start_node).to(read_folder),
    g.edge_from(read_folder).map(max_concurrency=3).label("each document, 3 at a time").to(review_document),
    g.edge_from(review_document).to(reviews),
    g.edge_from(reviews).to(tally),
    g.edge_from(tally).to(approve),
    g.edge_from(approve).label("a person answered").to(report),
    g.edge_from(report).to(g.end_node),
)
review = g.build()
"""The graph: `railyard run examples.document_review:review`."""


async def main() -> None:
    """Review the shipped documents in one process: run until it waits, answer, resume to the end."""
    print(review.render(title="document_review"))
    print()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "reviews.db")
        state = ReviewState()
        try:
            await review.run(state=state, store=store, run_id="review-1")
        except RunSuspended as suspended:
            print(f"review-1 is suspended: it waits for {suspended.waiting.key!r}: {suspended.waiting.prompt}")
        for name, summary in state.summaries.items():  # what the person reads before answering
            flagged = state.flagged.get(name)
            print(f"  {name}: {summary}" + (f" [flagged: {', '.join(flagged)}]" if flagged else ""))
        detail = await store.run("review-1")
        print(f"{detail.info.steps} steps so far; failed attempts run again: {detail.attempts}")
        await signal(store, "review-1", "approval", Approval(approved=True, by="Dana", note="fix the TODO first"))
        print("Dana approves.")
        print(await review.resume(store, "review-1"))
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
