"""What every mock API shares: the parsed request, the answer to stream, and the splitting rules."""

from __future__ import annotations

import dataclasses
from typing import Any

from agent_runtime.messages import AssistantMessage, Message
from agent_runtime.mock_providers.caching import Block, CacheUsage
from agent_runtime.tools.base import ToolSpec

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


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse(data: bytes, event: str | None = None, crlf: bool = False) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    head = b"event: " + event.encode() + nl if event else b""
    return head + b"data: " + data + nl + nl
