"""Token counts of text and messages, the one formula the loop, the planner and the fold share (sans-IO).

A message is counted once, natively, when it is committed (`agent_runtime.agent.turn`); its count is
stored with its event and reused after that (the state's `message_tokens`, a fold's chunk). What
an assistant message's count covers is `assistant_texts`: its text and each call's arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent_runtime import native
from agent_runtime.messages import Message, ToolCall, ToolResultMessage, UserMessage


def count(text: str) -> int:
    """Exact tokens of `text` (o200k, native)."""
    return native.count_tokens(text) if text else 0


def estimate(text: str) -> int:
    """A quick upper-leaning estimate of a short text's tokens (about 3 characters a token) where an
    exact count is not needed: the archive lines, whose sum only decides when an archive is cut."""
    return len(text) // 3 + 1


def assistant_texts(text: str, calls: Sequence[ToolCall]) -> tuple[str, ...]:
    """What an assistant message's tokens are counted on: its text and each call's arguments (the
    loop's formula, `agent_runtime.agent.turn`, and the planner's)."""
    return (text, *(str(c.arguments) for c in calls))


def message_tokens(m: Message) -> int:
    """Tokens of a message as the loop counts them."""
    if isinstance(m, UserMessage):
        return count(m.text)
    if isinstance(m, ToolResultMessage):
        return count(m.result.content)
    return sum(count(t) for t in assistant_texts(m.text, m.tool_calls))
