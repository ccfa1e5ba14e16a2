"""Durable events: the one record type of an agent's log.

Every fact about an agent (a user message, the model's answer, a tool call and its result, usage,
status changes, errors) is an `Event` with a per-agent, gap-free, strictly increasing `seq`. The
event log (`agent_runtime.eventlog`) stores them; the agent state (`agent_runtime.agent.state`) is derived
from them; clients receive them as `event` frames (`agent_runtime.protocol`).

Kinds are stable names (never import paths); `data` is plain JSON. `SCHEMA_VERSION` is stored with
each event so a later runtime can upgrade old logs.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import orjson

SCHEMA_VERSION = 1


class EventKind(enum.StrEnum):
    USER_MESSAGE = "user_message"
    ASSISTANT_MESSAGE = "assistant_message"
    TOOL_CALL = "tool_call"
    APPROVAL_REQUIRED = "approval_required"
    APPROVAL = "approval"
    TOOL_RESULT = "tool_result"
    USAGE = "usage"
    STATUS = "status"
    COMPRESSION = "compression"
    ERROR = "error"


KNOWN_KINDS = frozenset(k.value for k in EventKind)


@dataclasses.dataclass(frozen=True, slots=True)
class NewEvent:
    """An event before the log gives it a `seq`.

    `client_id` is the client-chosen id of a `user_message` (idempotency key); the log refuses a
    second event with the same `client_id`.
    """

    kind: str
    data: dict[str, Any]
    client_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A committed event: durable before anyone sees it."""

    seq: int
    kind: str
    data: dict[str, Any]
    ts: float
    client_id: str | None = None

    def to_frame(self) -> dict[str, Any]:
        """The `event` frame of the client protocol."""
        return {"type": "event", "seq": self.seq, "kind": self.kind, "data": self.data, "ts": self.ts}


def encode_data(data: dict[str, Any]) -> bytes:
    """Stable JSON bytes (sorted keys) for storage and hashing."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def decode_data(raw: bytes | str) -> dict[str, Any]:
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("event data must be a JSON object")
    return value
