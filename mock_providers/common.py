"""What every mock API shares: the parsed request, the answer to stream, and the splitting rules."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

from agent_runtime.messages import AssistantMessage, Message
from agent_runtime.tools.base import ToolSpec
from mock_providers.caching import Block, CacheUsage

TEXT_PIECE = 16  # characters per streamed text delta (about 4 tokens)
ARGS_PIECE = 12  # characters per tool-argument fragment (fragments split keys and strings anywhere)


class BadRequest(ValueError):
    """The request is malformed for this API (the mock answers 400 with the provider's error body)."""


@dataclasses.dataclass(slots=True)
class ParsedRequest:
    model: str
    system: str
    messages: list[Message]
    tools: list[ToolSpec]
    blocks: list[Block]
    max_tokens: int
    cache_key: str = ""
    automatic_ttl: str | None = None
    thinking: bool = False
    stream: bool = True
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """The simulated model's message plus what the mock reports about it."""

    message: AssistantMessage
    cache: CacheUsage
    output_tokens: int
    thinking: str = ""
    id: str = "0"
    redacted_thinking: bool = False  # Anthropic: also a `redacted_thinking` block


MOCK_SIGNING_KEY = b"agent-runtime mock provider signing key"


def sign(kind: str, payload: str) -> str:
    """An opaque, verifiable token (plain base64, as the real ones are) standing in for a provider's
    signature or encrypted reasoning. `verify` recovers the payload or says it was tampered with."""
    raw = payload.encode()
    digest = hashlib.sha256(MOCK_SIGNING_KEY + kind.encode() + b"\0" + raw).digest()[:18]
    return base64.b64encode(raw + b"\0" + digest).decode()


def verify(kind: str, token: Any) -> str | None:
    """The payload `sign(kind, ...)` put in `token`, or None if it is not a valid token of `kind`."""
    if not isinstance(token, str):
        return None
    try:  # standard or URL-safe alphabet: proto-JSON bytes accept both (google-genai sends URL-safe)
        decoded = base64.b64decode(token.replace("-", "+").replace("_", "/"), validate=True)
        raw = decoded[:-19].decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return raw if base64.b64decode(sign(kind, raw)) == decoded else None


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse(data: bytes, event: str | None = None, crlf: bool = False) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    head = b"event: " + event.encode() + nl if event else b""
    return head + b"data: " + data + nl + nl
