"""The frames of the client protocol: validated values at the WebSocket boundary.

Every frame is one UTF-8 JSON object with a `type`. Client→server frames are parsed with one
`TypeAdapter` over a discriminated union (`CLIENT_FRAME`); every model forbids extra keys and is
strict (no `"5"` for `5`, no `true` for `1`). Server→client frames are modelled too, so the docs
and the tests share one definition, but the session builds them as plain dicts on the hot path
(`event`, `delta`) and the shell encodes them with `encode_frame`.

`agent_runtime.protocol.session` turns parsed frames into commands for the IO shell; the full
contract, with examples, is `docs/protocol.md`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

import orjson
import pydantic

from agent_runtime.errors import CODES, error_body
from agent_runtime.errors import ErrorCode as ErrorCode  # the vocabulary of error frames lives with the error tree

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 1024 * 1024
MAX_MESSAGE_CHARS: Final = 256 * 1024
MAX_ID_CHARS: Final = 128

Role: TypeAlias = Literal["viewer", "operator"]
Decision: TypeAlias = Literal["allow", "deny"]
ServerFrame: TypeAlias = dict[str, Any]
"""An outgoing frame, ready for `encode_frame`."""


HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    code: CODES[code.value].status for code in (ErrorCode.UNAUTHENTICATED, ErrorCode.FORBIDDEN, ErrorCode.AGENT_NOT_FOUND)
}
"""The HTTP status of the error codes that refuse the upgrade request itself (from `errors.CODES`)."""


class _Frame(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)


# --- client → server ---------------------------------------------------------------------------


class HelloFrame(_Frame):
    """First frame: `cursor` is the last event `seq` the client has (0 for none)."""

    type: Literal["hello"]
    cursor: Annotated[int, pydantic.Field(ge=0)]


class UserMessageFrame(_Frame):
    """A message to the agent; `id` (client-chosen) makes it idempotent."""

    type: Literal["user_message"]
    id: Annotated[str, pydantic.Field(min_length=1, max_length=MAX_ID_CHARS)]
    text: Annotated[str, pydantic.Field(max_length=MAX_MESSAGE_CHARS)]


class ApprovalFrame(_Frame):
    """The answer to an `approval_required` event."""

    type: Literal["approval"]
    tool_call_id: Annotated[str, pydantic.Field(min_length=1, max_length=MAX_ID_CHARS)]
    decision: Decision


class InterruptFrame(_Frame):
    """Stop the current turn; the agent keeps its history."""

    type: Literal["interrupt"]


ClientFrame: TypeAlias = Annotated[
    HelloFrame | UserMessageFrame | ApprovalFrame | InterruptFrame,
    pydantic.Field(discriminator="type"),
]
CLIENT_FRAME: Final[pydantic.TypeAdapter[ClientFrame]] = pydantic.TypeAdapter(ClientFrame)
CLIENT_FRAME_TYPES: Final = frozenset({"hello", "user_message", "approval", "interrupt"})

# --- server → client ---------------------------------------------------------------------------


class WelcomeFrame(_Frame):
    """The answer to `hello`: replay of `seq > cursor` follows, then the live stream."""

    type: Literal["welcome"]
    protocol: Literal[1]
    head: Annotated[int, pydantic.Field(ge=0)]
    agent: Annotated[str, pydantic.Field(pattern=r"^[^/\s]+/[^/\s]+$")]
    role: Role


class EventFrame(_Frame):
    """A durable event (`agent_runtime.events.Event.to_frame`)."""

    type: Literal["event"]
    seq: Annotated[int, pydantic.Field(ge=1)]
    kind: str
    data: dict[str, Any]
    ts: float


class DeltaFrame(_Frame):
    """Live text of the assistant message in progress: `text` starts at code point `offset`."""

    type: Literal["delta"]
    message_id: str
    text: str
    offset: Annotated[int, pydantic.Field(ge=0)]


class AckFrame(_Frame):
    """`user_message` `id` is committed at `seq`; `duplicate` if it was already committed."""

    type: Literal["ack"]
    id: str
    seq: Annotated[int, pydantic.Field(ge=1)]
    duplicate: bool


class ErrorFrame(_Frame):
    """Something the client sent (or its credentials) was refused; the connection stays usable."""

    type: Literal["error"]
    code: Annotated[ErrorCode, pydantic.Field(strict=False)]
    message: str
    field: str | None = None
    """`bad_frame`: the dotted path of the first offending field."""
    id: str | None = None
    """The `id` of the `user_message` the error refers to, when there is one."""
    max_bytes: int | None = None
    """`frame_too_large`: the limit."""


AnyServerFrame: TypeAlias = Annotated[
    WelcomeFrame | EventFrame | DeltaFrame | AckFrame | ErrorFrame,
    pydantic.Field(discriminator="type"),
]
SERVER_FRAME: Final[pydantic.TypeAdapter[AnyServerFrame]] = pydantic.TypeAdapter(AnyServerFrame)
"""For clients and tests; the server itself does not validate what it sends."""

# --- builders and encoding ---------------------------------------------------------------------


def error_frame(
    code: ErrorCode,
    message: str,
    *,
    field: str | None = None,
    id: str | None = None,  # noqa: A002 - the wire name
    max_bytes: int | None = None,
) -> ServerFrame:
    """An `error` frame; optional keys are present only when set."""
    return error_body(code.value, message, field=field, id=id, max_bytes=max_bytes)


def encode_frame(frame: ServerFrame) -> str:
    """The text of a WebSocket frame (compact JSON)."""
    return orjson.dumps(frame).decode()
