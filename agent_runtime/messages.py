"""Canonical conversation types, provider-neutral.

The loop builds prompts from these; provider adapters translate them to and from each wire format.
Plain frozen dataclasses with slots: they sit on the hot path of every turn.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import orjson

StopReason = Literal["end_turn", "tool_use", "max_tokens", "content_filter", "interrupted", "error"]


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool invocation the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ToolCall:
        return cls(id=d["id"], name=d["name"], arguments=d.get("arguments") or {})


@dataclasses.dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call, as the model will see it."""

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "content": self.content,
            "is_error": self.is_error,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class UserMessage:
    text: str
    role: Literal["user"] = "user"


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderState:
    """What a provider needs back, unchanged, on the next call and that nothing else may read:
    Anthropic signed `thinking` / `redacted_thinking` blocks, Gemini `thoughtSignature`s, OpenAI
    Responses `reasoning` items. `provider` names the API that produced it; only that API's codec
    sends it back (another provider's codec drops it). `data` is a small JSON value with its object
    keys sorted (`of`), so the live message and the one rebuilt from the event log (stored with
    sorted keys) encode to the same bytes."""

    provider: str
    data: Any

    @classmethod
    def of(cls, provider: str, data: Any) -> ProviderState:
        return cls(provider, orjson.loads(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)))

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "data": self.data}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProviderState:
        return cls.of(str(d["provider"]), d.get("data"))


@dataclasses.dataclass(frozen=True, slots=True)
class AssistantMessage:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: StopReason = "end_turn"
    role: Literal["assistant"] = "assistant"
    provider_state: ProviderState | None = None

    def state_for(self, provider: str) -> Any:
        """The opaque state `provider` left on this message, or None (none, or another provider's)."""
        ps = self.provider_state
        return ps.data if ps is not None and ps.provider == provider else None


@dataclasses.dataclass(frozen=True, slots=True)
class ToolResultMessage:
    result: ToolResult
    role: Literal["tool"] = "tool"


Message = UserMessage | AssistantMessage | ToolResultMessage


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one model call, as the provider reported it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }
