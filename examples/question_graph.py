"""A quiz that waits for its answers between processes, kept in a `FileStatePersistence` file.

    python examples/question_graph.py STATE_FILE           start (or show the waiting question)
    python examples/question_graph.py STATE_FILE ANSWER    answer it, and go on

The graph is `Ask` → `Answer` → `Evaluate` → (`Reprimand` → `Ask` | `End`). `Answer`
needs a person, so a run stops when `Answer` is next: its snapshot stays in the file,
waiting. Given an answer, the script claims that snapshot (`persistence.load_next()`),
records the answered `Answer` in its place (`graph.initialize`) and carries on with
`graph.iter_from_persistence`. Questions and marking are fixed, so no LLM is needed.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from railyard import BaseNode, End, EndSnapshot, FileStatePersistence, Graph, GraphRunContext, NodeSnapshot

SUMS = [("7 * 6", "42"), ("2 ** 10", "1024"), ("91 / 7", "13")]
"""The sums asked, in turn, with their answers."""


@dataclass
class QuizState:
    asked: int = 0
    """How many questions have been asked."""
    wrong: int = 0
    """How many wrong answers were given."""

    @property
    def current(self) -> tuple[str, str]:
        """The sum asked last, and its answer."""
        return SUMS[(self.asked - 1) % len(SUMS)]


@dataclass
class Ask(BaseNode[QuizState]):
    async def run(self, ctx: GraphRunContext[QuizState]) -> Answer:
        ctx.state.asked += 1
        expression, _ = ctx.state.current
        return Answer(f"What is {expression}?")


@dataclass
class Answer(BaseNode[QuizState]):
    """Needs the user's answer: a run stops when this node is next, until one is given."""

    question: str
    answer: str | None = None

    async def run(self, ctx: GraphRunContext[QuizState]) -> Evaluate:
        if self.answer is None:
            raise ValueError("Answer needs an answer: fill in `answer` before running it")
        return Evaluate(self.answer)


@dataclass
class Evaluate(BaseNode[QuizState, None, str]):
    answer: str

    async def run(self, ctx: GraphRunContext[QuizState]) -> Reprimand | End[str]:
        expression, expected = ctx.state.current
        answer = self.answer.strip()
        if answer == expected:
            return End(f"Correct: {expression} = {expected}. Wrong answers before this one: {ctx.state.wrong}.")
        ctx.state.wrong += 1
        return Reprimand(f"Wrong: {expression} is {expected}, not {answer}. Try another one.")


@dataclass
class Reprimand(BaseNode[QuizState]):
    comment: str

    async def run(self, ctx: GraphRunContext[QuizState]) -> Ask:
        return Ask()


question_graph: Graph[QuizState, None, str] = Graph(nodes=(Ask, Answer, Evaluate, Reprimand), state_type=QuizState)


class QuizError(Exception):
    """Something the user must fix: printed as an error, exit status 1."""


async def run_until_input(persistence: FileStatePersistence[QuizState, str]) -> None:
    """Run from the next node in the file until an `Answer` is needed or the quiz is over."""
    async with question_graph.iter_from_persistence(persistence) as run:
        node = run.next_node
        while not (isinstance(node, Answer) and node.answer is None):
            node = await run.next()
            if isinstance(node, Reprimand):
                print(node.comment)
            elif isinstance(node, End):
                print(node.data)
                print("The quiz is over.")
                return
        print(f"Question: {node.question}")


async def main(state_file: Path, answer: str | None) -> None:
    persistence: FileStatePersistence[QuizState, str] = FileStatePersistence(state_file)
    persistence.set_graph_types(question_graph)
    snapshots = await persistence.load_all()
    last = snapshots[-1] if snapshots else None
    if isinstance(last, EndSnapshot):
        raise QuizError(f"the quiz in {state_file} is already over ({last.result.data}); use a new state file")
    waiting = last.node if isinstance(last, NodeSnapshot) and last.status == "created" else None

    if answer is None:
        if last is None:
            await question_graph.initialize(Ask(), persistence, state=QuizState())
            await run_until_input(persistence)
        elif isinstance(waiting, Answer):
            print(f"Question (still waiting for an answer): {waiting.question}")
        else:
            raise QuizError(f"{state_file} holds no question waiting for an answer")
        return

    if not isinstance(waiting, Answer):
        raise QuizError(f"no question is waiting in {state_file}: run without an answer to start a quiz")
    snapshot = await persistence.load_next()  # claim the waiting `Answer` ...
    assert snapshot is not None and isinstance(snapshot.node, Answer)
    answered = Answer(snapshot.node.question, answer)  # ... and record the answered one to run instead
    await question_graph.initialize(answered, persistence, state=snapshot.state)
    await run_until_input(persistence)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(f"usage: {sys.argv[0]} STATE_FILE [ANSWER]", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else None))
    except QuizError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
