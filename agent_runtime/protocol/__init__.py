"""The client protocol, sans-IO: frames (`frames`) and per-connection state (`session`).

No sockets and no asyncio here: the WebSocket handler feeds received text to
`session.ClientSession.receive`, executes the commands it returns, and sends the frames the
session builds, encoded with `frames.encode_frame`. Contract and examples: `docs/protocol.md`.
"""

from agent_runtime.protocol.frames import CLIENT_FRAME, PROTOCOL_VERSION, ErrorCode, encode_frame, error_frame
from agent_runtime.protocol.session import (
    ClientSession,
    Command,
    CursorAheadError,
    GapError,
    Hello,
    LocalProtocolError,
    ProtocolError,
    SendApproval,
    SendInterrupt,
    SendUserMessage,
    State,
)

__all__ = [
    "CLIENT_FRAME",
    "PROTOCOL_VERSION",
    "ClientSession",
    "Command",
    "CursorAheadError",
    "ErrorCode",
    "GapError",
    "Hello",
    "LocalProtocolError",
    "ProtocolError",
    "SendApproval",
    "SendInterrupt",
    "SendUserMessage",
    "State",
    "encode_frame",
    "error_frame",
]
