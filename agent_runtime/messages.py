"""Canonical conversation types, provider-neutral, and their one JSON codec.

The loop builds prompts from these; provider adapters translate them to and from each wire format.
Plain frozen dataclasses with slots: they sit on the hot path of every turn.

The JSON codec is here and nowhere else: each type's `to_dict` / `from_dict` is a message's data in
its event (`assistant_message`, `tool_result`, `user_message`, `tool_call`), and `encode_message` /
`decode_message` the role-tagged form a compression chunk stores (the same fields, plus `role`;
a tool result without its `duration_ms`). Event data is stored with sorted keys, so a message
rebuilt from the log equals the live one and encodes to the same bytes.
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

    def to_dict(self, with_duration: bool = True) -> dict[str, Any]:
        """A `tool_result` event's fields (`with_duration=False`: a chunk's, `encode_message`)."""
        out: dict[str, Any] = {"tool_call_id": self.tool_call_id, "name": self.name, "content": self.content,
                               "is_error": self.is_error}
        if with_duration:
            out["duration_ms"] = round(self.duration_ms, 3)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ToolResult:
        """A `tool_result` event's result, or a chunk's (no `duration_ms`: 0)."""
        return cls(str(d["tool_call_id"]), str(d.get("name", "")), str(d.get("content", "")),
                   is_error=bool(d.get("is_error", False)), duration_ms=float(d.get("duration_ms", 0.0)))


@dataclasses.dataclass(frozen=True, slots=True)
class UserMessage:
    text: str
    role: Literal["user"] = "user"

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UserMessage:
        """The message of a `user_message` event (or a chunk's)."""
        return cls(str(d["text"]))


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

    def to_dict(self, **event_fields: Any) -> dict[str, Any]:
        """The message as JSON: text, calls, stop reason, then `event_fields` (an event's own: the
        message id, its tokens), then the provider state if any."""
        out: dict[str, Any] = {"text": self.text, "tool_calls": [c.to_dict() for c in self.tool_calls],
                               "stop_reason": self.stop_reason, **event_fields}
        if self.provider_state is not None:
            out["provider_state"] = self.provider_state.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AssistantMessage:
        """The message of an `assistant_message` event (or a chunk's)."""
        ps = d.get("provider_state")
        return cls(str(d.get("text", "")), tuple(ToolCall.from_dict(c) for c in d.get("tool_calls", ())),
                   d.get("stop_reason", "end_turn"), provider_state=ProviderState.from_dict(ps) if ps else None)


@dataclasses.dataclass(frozen=True, slots=True)
class ToolResultMessage:
    result: ToolResult
    role: Literal["tool"] = "tool"


Message = UserMessage | AssistantMessage | ToolResultMessage


def encode_message(m: Message) -> dict[str, Any]:
    """A message as a compression chunk stores it: `role` and its fields (a tool result's without
    `duration_ms`, which is no part of the conversation)."""
    if isinstance(m, UserMessage):
        return {"role": "user", **m.to_dict()}
    if isinstance(m, ToolResultMessage):
        return {"role": "tool", **m.result.to_dict(with_duration=False)}
    return {"role": "assistant", **m.to_dict()}


def decode_message(d: dict[str, Any]) -> Message:
    """The message `encode_message` made `d` from."""
    role = d.get("role")
    if role == "user":
        return UserMessage.from_dict(d)
    if role == "tool":
        return ToolResultMessage(ToolResult.from_dict(d))
    if role == "assistant":
        return AssistantMessage.from_dict(d)
    raise ValueError(f"unknown message role {role!r} in a compression chunk")


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
