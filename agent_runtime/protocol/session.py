"""One client connection's protocol state, with no IO (the h11 shape).

`ClientSession` is what the WebSocket handler (the "shell") consults for every frame in or out:

- `receive(text)` parses one client frame and returns what to do: outgoing frames (an `error`
  frame for anything refused; the session stays usable, so the next good frame is processed
  normally) or commands for the shell (`Hello`, `SendUserMessage`, `SendApproval`,
  `SendInterrupt`).
- `welcome(head, agent)`, `event(e)`, `delta(...)`, `ack(...)` build the outgoing frames and keep
  the bookkeeping that makes reconnects exact: `event` drops what this client already has
  (seq ≤ `cursor`) and raises `GapError` when the shell skipped something; `delta` does the same
  for the streaming text of a message, by code-point offset.

Catch-up is the shell's job (read `seq > session.cursor` from the log, subscribe to the live
stream, feed both through `event`; overlap is harmless, gaps raise). The shell encodes frames with
`agent_runtime.protocol.frames.encode_frame`. The contract is in `docs/protocol.md`.

State machine (everything that affects transitions is in this file)::

    AWAIT_HELLO --hello--> AWAIT_WELCOME --welcome()--> LIVE
         ^                      |
         +--- CursorAheadError -+
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import sys
from typing import Any, Final, TypeAlias

import orjson
import pydantic

from agent_runtime import errors
from agent_runtime import events
from agent_runtime.protocol import frames
from agent_runtime.protocol.frames import ErrorCode

MAX_TRACKED_MESSAGES: Final = 8
"""How many streaming messages' delta positions a session remembers (the newest ones)."""
_FINISHED: Final = sys.maxsize
"""The position of a message whose `assistant_message` event was sent: every delta is stale."""

# --- commands for the shell --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """Something the shell must do on behalf of the client."""


@dataclasses.dataclass(frozen=True, slots=True)
class Hello(Command):
    """Read the agent's head, send `session.welcome(head, agent)`, then replay `seq > cursor`."""

    cursor: int


@dataclasses.dataclass(frozen=True, slots=True)
class SendUserMessage(Command):
    """Commit the message (idempotent on `client_id`), then send `session.ack(...)`."""

    client_id: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class SendApproval(Command):
    tool_call_id: str
    decision: frames.Decision


@dataclasses.dataclass(frozen=True, slots=True)
class SendInterrupt(Command):
    pass


Output: TypeAlias = Command | frames.ServerFrame

# --- errors raised to the shell ----------------------------------------------------------------


class ProtocolError(errors.Error, code="protocol_error"):
    """Base of the errors the session raises to the shell (never to the client)."""


class LocalProtocolError(ProtocolError, code="protocol_misuse"):
    """The shell used the session out of order (a bug in the shell; retrying does not help)."""


class GapError(ProtocolError, code="gap"):
    """The shell tried to send past something the client does not have yet.

    For events (`message_id is None`): seqs `have + 1 .. got - 1` are missing; read them from the
    log (`read(after=have)`), feed them through `event`, then retry. For deltas: the client has
    code points `[0, have)` of `message_id` and the chunk starts at `got`; send the text so far
    with `delta(message_id, text_so_far, 0)`, then retry. The session's state is unchanged.
    """

    def __init__(self, have: int, got: int, message_id: str | None = None) -> None:
        what = "event seq" if message_id is None else f"delta offset of {message_id!r}"
        super().__init__(f"gap: client has {what} up to {have}, shell sent {got}")
        self.have = have
        self.got = got
        self.message_id = message_id


class CursorAheadError(ProtocolError, code="cursor_ahead"):
    """The client's cursor is past the agent's head (another agent's log, or a reset log).

    Send `frame` (an `error` frame, `bad_frame` on `cursor`); the session is back to waiting for
    `hello`, so the client may hello again with a cursor it can trust (0).
    """

    def __init__(self, cursor: int, head: int) -> None:
        message = f"cursor {cursor} is ahead of the agent's head {head}"
        super().__init__(message)
        self.cursor = cursor
        self.head = head
        self.frame = frames.error_frame(ErrorCode.BAD_FRAME, message, field="cursor")


# --- the session -------------------------------------------------------------------------------


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_WELCOME = "await_welcome"
    LIVE = "live"


_OPERATOR_ONLY: Final = frozenset({"user_message", "approval", "interrupt"})
_ROLES: Final = frozenset({"viewer", "operator"})


class ClientSession:
    """The protocol state of one WebSocket connection. Pure: no IO, no clock, no asyncio."""

    __slots__ = ("_deltas", "_last_seq", "_state", "max_frame_bytes", "role")

    def __init__(self, role: frames.Role, max_frame_bytes: int = frames.MAX_FRAME_BYTES) -> None:
        if role not in _ROLES:
            raise ValueError(f"role must be 'viewer' or 'operator', not {role!r}")
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be positive")
        self.role: frames.Role = role
        self.max_frame_bytes = max_frame_bytes
        self._state = State.AWAIT_HELLO
        self._last_seq = 0
        self._deltas: collections.OrderedDict[str, int] = collections.OrderedDict()

    @property
    def state(self) -> State:
        return self._state

    @property
    def cursor(self) -> int:
        """The last event seq this client has (the hello cursor, then the max seq sent)."""
        return self._last_seq

    # --- inbound -------------------------------------------------------------------------------

    def receive(self, text: str | bytes) -> list[Output]:
        """Handle one client frame: commands for the shell, or frames to send back."""
        parsed = self._parse(text)
        if isinstance(parsed, dict):
            return [parsed]
        kind = parsed.type
        if self._state is State.AWAIT_HELLO:
            if not isinstance(parsed, frames.HelloFrame):
                return [_refuse(ErrorCode.HELLO_REQUIRED, f"the first frame must be hello, not {kind}", parsed)]
        elif isinstance(parsed, frames.HelloFrame):
            return [_refuse(ErrorCode.HELLO_REPEATED, "hello was already received; reconnect to move the cursor", parsed)]
        if kind in _OPERATOR_ONLY and self.role != "operator":
            return [_refuse(ErrorCode.PERMISSION_DENIED, f"role {self.role} may not send {kind}", parsed)]

        match parsed:
            case frames.HelloFrame(cursor=cursor):
                self._state = State.AWAIT_WELCOME
                self._last_seq = cursor
                return [Hello(cursor)]
            case frames.UserMessageFrame(id=client_id, text=message):
                return [SendUserMessage(client_id, message)]
            case frames.ApprovalFrame(tool_call_id=tool_call_id, decision=decision):
                return [SendApproval(tool_call_id, decision)]
            case frames.InterruptFrame():
                return [SendInterrupt()]
        raise AssertionError(f"unhandled frame {parsed!r}")  # pragma: no cover

    def _parse(self, text: str | bytes) -> frames.ClientFrame | frames.ServerFrame:
        """The validated frame, or the `error` frame that refuses it."""
        limit = self.max_frame_bytes
        n = len(text)
        # A str of n code points is n..4n UTF-8 bytes: encode only when the bound is unclear.
        if n > limit or (isinstance(text, str) and 4 * n > limit and len(text.encode("utf-8", "surrogatepass")) > limit):
            return frames.error_frame(
                ErrorCode.FRAME_TOO_LARGE, f"frame is larger than {limit} bytes", max_bytes=limit
            )
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return frames.error_frame(ErrorCode.BAD_JSON, f"frame is not valid JSON: {exc}")
        if not isinstance(obj, dict):
            return frames.error_frame(ErrorCode.BAD_FRAME, "a frame must be a JSON object")
        kind = obj.get("type")
        if not isinstance(kind, str):
            what = "missing" if kind is None else "not a string"
            return frames.error_frame(ErrorCode.BAD_FRAME, f"type: {what}", field="type")
        if kind not in frames.CLIENT_FRAME_TYPES:
            return frames.error_frame(
                ErrorCode.UNKNOWN_TYPE,
                f"unknown frame type {kind[:64]!r}; expected one of {sorted(frames.CLIENT_FRAME_TYPES)}",
            )
        try:
            return frames.CLIENT_FRAME.validate_python(obj)
        except pydantic.ValidationError as exc:
            return _schema_error(kind, obj, exc)

    # --- outbound ------------------------------------------------------------------------------

    def welcome(self, head: int, agent: str) -> frames.ServerFrame:
        """The `welcome` frame, once the shell has handled `Hello` and read the agent's head.

        Raises `CursorAheadError` if the client's cursor is past `head`.
        """
        if self._state is not State.AWAIT_WELCOME:
            raise LocalProtocolError(f"welcome() in state {self._state.value}; it answers one hello")
        if self._last_seq > head:
            cursor, self._last_seq, self._state = self._last_seq, 0, State.AWAIT_HELLO
            raise CursorAheadError(cursor, head)
        self._state = State.LIVE
        return {"type": "welcome", "protocol": frames.PROTOCOL_VERSION, "head": head, "agent": agent, "role": self.role}

    def event(self, event: events.Event) -> frames.ServerFrame | None:
        """The `event` frame to send, or None if the client already has it.

        Raises `GapError` if events between `cursor` and `event.seq` were never sent.
        """
        if self._state is not State.LIVE:
            raise LocalProtocolError(f"event() in state {self._state.value}; send welcome() first")
        seq = event.seq
        if seq <= self._last_seq:
            return None
        if seq != self._last_seq + 1:
            raise GapError(self._last_seq, seq)
        self._last_seq = seq
        if event.kind == "assistant_message" and isinstance(event.data.get("id"), str):
            self._track(event.data["id"], _FINISHED)  # its deltas still queued are stale: drop them
        return event.to_frame()

    def delta(self, message_id: str, text: str, offset: int) -> frames.ServerFrame | None:
        """The `delta` frame for `text` starting at code point `offset` of message `message_id`.

        Drops what the client already has (returns None, or trims an overlapping chunk); raises
        `GapError` if the chunk starts past the client's text. A client attaching mid-message gets
        the text so far as one delta at offset 0: the shell sends it first.
        """
        if self._state is not State.LIVE:
            raise LocalProtocolError(f"delta() in state {self._state.value}; send welcome() first")
        if offset < 0:
            raise ValueError("offset must be >= 0")
        have = self._deltas.get(message_id, 0)
        if offset > have:
            raise GapError(have, offset, message_id)
        end = offset + len(text)
        if end <= have:
            return None
        if offset < have:
            text, offset = text[have - offset :], have
        self._track(message_id, end)
        return {"type": "delta", "message_id": message_id, "text": text, "offset": offset}

    def _track(self, message_id: str, have: int) -> None:
        self._deltas[message_id] = have
        self._deltas.move_to_end(message_id)
        if len(self._deltas) > MAX_TRACKED_MESSAGES:
            self._deltas.popitem(last=False)

    def ack(self, client_id: str, seq: int, duplicate: bool) -> frames.ServerFrame:
        """The `ack` of a `user_message`: committed at `seq` (already before, if `duplicate`)."""
        if self._state is State.AWAIT_HELLO:
            raise LocalProtocolError("ack() before hello: there is no user_message to acknowledge")
        # Allowed before welcome(): a pipelined user_message may be handled while the shell is
        # still reading the head; the shell's send queue puts the ack after the welcome.
        return {"type": "ack", "id": client_id, "seq": seq, "duplicate": duplicate}


def _refuse(code: ErrorCode, message: str, frame: frames.ClientFrame) -> frames.ServerFrame:
    client_id = frame.id if isinstance(frame, frames.UserMessageFrame) else None
    return frames.error_frame(code, message, id=client_id)


def _schema_error(kind: str, obj: dict[str, Any], exc: pydantic.ValidationError) -> frames.ServerFrame:
    """`bad_frame` naming the first offending field (the union tag is dropped from the path)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    loc = first["loc"][1:] if first["loc"][:1] == (kind,) else first["loc"]
    field = ".".join(str(part) for part in loc) or None
    message = f"bad {kind} frame: {field}: {first['msg']}" if field else f"bad {kind} frame: {first['msg']}"
    client_id = obj.get("id") if kind == "user_message" else None
    if not (isinstance(client_id, str) and 0 < len(client_id) <= frames.MAX_ID_CHARS):
        client_id = None
    return frames.error_frame(ErrorCode.BAD_FRAME, message, field=field, id=client_id)
