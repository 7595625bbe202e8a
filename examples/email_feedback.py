"""The email feedback loop: a writer drafts an email, a reviewer sends it back until it is right.

`WriteEmail` → `Feedback` → (`WriteEmail` with the reviewer's note | `End[Email]`). In
pydantic-graph's docs both sides are LLM agents; here they are small rule-based
functions, so the run is deterministic: the reviewer gives one note per round and the
writer adds what it was asked for. The run is recorded with `FullStatePersistence`, and
the rounds are read back from its history.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from railyard import BaseNode, End, EndSnapshot, FullStatePersistence, Graph, GraphRunContext

SIGN_OFF = "The Railyard team"


@dataclass
class User:
    name: str
    email: str
    interests: list[str]


@dataclass
class Email:
    subject: str
    body: str


@dataclass
class State:
    user: User
    notes: list[str] = field(default_factory=list)
    """Every note the reviewer has made so far (what an LLM writer's message history would hold)."""


def write_email(user: User, notes: list[str]) -> Email:
    """The writer: a plain welcome email, plus whatever the reviewer's notes asked for."""
    asked = " ".join(notes)
    greeting = f"Hi {user.name}," if "by name" in asked else "Hi there,"
    lines = [greeting, "", "Welcome to Railyard! Your account is ready."]
    if "interests" in asked:
        lines.append(f"Since you like {' and '.join(user.interests)}, we picked a few guides for you.")
    if "sign off" in asked:
        lines += ["", "Cheers,", SIGN_OFF]
    subject = f"Welcome aboard, {user.name}!" if "subject" in asked else "Welcome"
    return Email(subject=subject, body="\n".join(lines))


def review_email(user: User, email: Email) -> str | None:
    """The reviewer: the first thing wrong with the email, or `None` if it can go out."""
    if user.name not in email.body.splitlines()[0]:
        return f"Greet {user.name} by name."
    missing = [interest for interest in user.interests if interest not in email.body]
    if missing:
        return f"Mention their interests: {', '.join(missing)}."
    if not email.body.endswith(SIGN_OFF):
        return "Please sign off as the team."
    if user.name not in email.subject:
        return "Make the subject personal."
    return None


@dataclass
class WriteEmail(BaseNode[State]):
    email_feedback: str | None = None

    async def run(self, ctx: GraphRunContext[State]) -> Feedback:
        if self.email_feedback is not None:
            ctx.state.notes.append(self.email_feedback)
        return Feedback(write_email(ctx.state.user, ctx.state.notes))


@dataclass
class Feedback(BaseNode[State, None, Email]):
    email: Email

    async def run(self, ctx: GraphRunContext[State]) -> WriteEmail | End[Email]:
        note = review_email(ctx.state.user, self.email)
        if note is None:
            return End(self.email)
        return WriteEmail(email_feedback=note)


feedback_graph: Graph[State, None, Email] = Graph(nodes=[WriteEmail, Feedback])


async def main() -> None:
    user = User(name="Ada", email="ada@example.com", interests=["trains", "state machines"])
    persistence: FullStatePersistence[State, Email] = FullStatePersistence()
    result = await feedback_graph.run(WriteEmail(), state=State(user), persistence=persistence)

    # Each `Feedback` snapshot holds a draft; the snapshot after it says what the reviewer did.
    history = persistence.history
    rounds = 0
    for snapshot, after in itertools.pairwise(history):
        if isinstance(snapshot.node, Feedback):
            rounds += 1
            if isinstance(after, EndSnapshot):
                print(f"Round {rounds}: approved")
            elif isinstance(after.node, WriteEmail):
                print(f"Round {rounds}: sent back: {after.node.email_feedback}")

    email = result.output
    print()
    print(f"To: {user.email}")
    print(f"Subject: {email.subject}")
    print()
    print(email.body)
    print()
    print(f"Rounds: {rounds}")


if __name__ == "__main__":
    asyncio.run(main())
