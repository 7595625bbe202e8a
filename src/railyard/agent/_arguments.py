"""Checking and combining the arguments of an agent's calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from railyard.agent._graph import AgentState
from railyard.agent.content import UserContent
from railyard.agent.exceptions import UserError
from railyard.agent.messages import ModelMessage
from railyard.agent.usage import Usage
from railyard.persistence import BaseStatePersistence
from railyard.store import RunStore

__all__ = ("check_durable", "new_state", "pick")


def check_durable(
    persistence: BaseStatePersistence[Any, Any] | None, store: RunStore | None, run_id: str | None, where: str
) -> None:
    """Refuse a run given both spellings of where to record it, or a run id and no store."""
    if persistence is not None and store is not None:
        raise TypeError(f"{where} takes persistence= or store=, not both: pass store= (and run_id=) alone.")
    if store is None and run_id is not None:
        raise TypeError(f"{where} was given run_id={run_id!r} but no store: pass store= to record the run.")


def new_state(
    user_prompt: str | Sequence[UserContent],
    history: list[ModelMessage],
    message_history: list[ModelMessage] | None,
    usage: Usage | None,
) -> AgentState:
    """The state a run starts with: `history` (captured messages, say), then `message_history`."""
    history.extend(message_history or [])
    return AgentState(
        history, usage if usage is not None else Usage(), prompt=user_prompt, new_message_index=len(history)
    )


def pick(old: Any, new: Any, old_name: str, new_name: str, default: Any) -> Any:
    """One of a pair of old/new parameter names (`result_type`/`output_type`, ...)."""
    if new is not None and old is not None and old is not default:
        raise UserError(f"`{old_name}` and `{new_name}` cannot be set at the same time.")
    return new if new is not None else old
