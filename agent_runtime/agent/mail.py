"""What is posted to an actor's mailbox, and the errors its senders get.

`UserMail` / `InterruptMail` carry the future the sender awaits (`reply_of`). `AgentBusy` (the
mailbox is full), `AgentStopped` (the actor stopped before handling it) and `UnknownToolCall` (an
approval for a call that is not waiting) are what the host and the server map to error codes.
"""

from __future__ import annotations

import asyncio
import dataclasses


class AgentBusy(Exception):
    """The agent's mailbox is full: retry later (backpressure)."""


class AgentStopped(Exception):
    """The agent stopped (deleted, or the server is shutting down) before handling the request."""


class UnknownToolCall(Exception):
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
