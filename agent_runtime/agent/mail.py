"""What is posted to an actor's mailbox, and the errors its senders get.

`UserMail` / `InterruptMail` carry the future the sender awaits (`reply_of`). `AgentBusy` (the
mailbox is full), `AgentStopped` (the actor stopped before handling it) and `UnknownToolCall` (an
approval for a call that is not waiting) are errors of the one tree (`agent_runtime.errors`):
their codes and statuses are in its table.
"""

from __future__ import annotations

import asyncio
import dataclasses

from agent_runtime import errors


class AgentBusy(errors.Error, code="busy"):
    """The agent's mailbox is full: retry later (backpressure)."""


class AgentStopped(errors.Error, code="unavailable"):
    """The agent stopped (deleted, or the server is shutting down) before handling the request."""


class UnknownToolCall(errors.Error, code="unknown_tool_call"):
    """An approval for a tool call that is not waiting for one (never asked, or already decided)."""


@dataclasses.dataclass(slots=True)
class UserMail:
    client_id: str
    text: str
    reply: asyncio.Future[tuple[int, bool]]


@dataclasses.dataclass(slots=True)
class InterruptMail:
    done: asyncio.Future[bool]


Mail = UserMail | InterruptMail


def reply_of(mail: Mail) -> asyncio.Future[tuple[int, bool]] | asyncio.Future[bool]:
    """The future its sender awaits."""
    return mail.reply if isinstance(mail, UserMail) else mail.done
