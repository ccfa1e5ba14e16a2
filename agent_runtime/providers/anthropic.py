"""Anthropic Messages API codec (sans-IO): `POST /v1/messages` with `"stream": true`.

Request: the system prompt (or the tools, without one) carries a `cache_control` breakpoint, so do the
ends of the last two frozen chunks (`ModelRequest.frozen_ends`, compression) and the last block of
the conversation (a rolling breakpoint), so each call reads the previous call's prefix from the
cache: at most the 4 allowed breakpoints. Tool results become `tool_result` blocks of a user turn.

Stream: routed by the SSE `event:` name. `content_block_start`/`delta`/`stop` per block; a `tool_use`
block's `input_json_delta` fragments are joined and parsed at its `content_block_stop`, which is
when `ToolCallCompleted` is emitted. `message_delta.usage` is cumulative. `event: error` (an overload
after the 200) is a retryable `ProviderError`. Canonical usage: `input_tokens` is what Anthropic
reports (the uncached tokens after the last breakpoint), plus cache read/write as reported.

Extended thinking: the `thinking` blocks (with their `signature`) and `redacted_thinking` blocks
(with their `data`) of a message are kept, unchanged and in order, as its `ProviderState`
(`{"blocks": [...]}`) and sent back first in that assistant turn, as the API requires before a
`tool_use` when thinking is on. Only the Anthropic codec sends them back; an assistant turn
without text or tool calls is not sent at all (thinking alone is not a turn).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from agent_runtime.messages import (
    AssistantMessage,
    Message,
    ProviderState,
    StopReason,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from agent_runtime.native import SseEvent
from agent_runtime.providers.base import (
    MessageCompleted,
    ModelRequest,
    ProviderError,
    ProviderStateUpdated,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallArgsDelta,
    ToolCallCompleted,
    ToolCallStarted,
    UsageReported,
)
from agent_runtime.providers.wire import FragmentCache, HttpRequest, dumps, http_error, loads_event, parse_tool_arguments, stream_cut

API_VERSION = "2023-06-01"
STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "pause_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "refusal": "content_filter",
}
RETRYABLE_ERRORS = frozenset({"overloaded_error", "rate_limit_error", "api_error", "timeout_error"})
EPHEMERAL = {"type": "ephemeral"}


def blocks_json(m: Message) -> list[dict[str, Any]]:
    """The content blocks of one message (a user turn for user text and tool results)."""
    if isinstance(m, UserMessage):
        return [{"type": "text", "text": m.text or " "}]
    if isinstance(m, ToolResultMessage):
        r = m.result
        return [{"type": "tool_result", "tool_use_id": r.tool_call_id, "content": r.content, "is_error": r.is_error}]
    content: list[dict[str, Any]] = []
    if m.text:
        content.append({"type": "text", "text": m.text})
    for call in m.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    state = m.state_for("anthropic")
    if content and isinstance(state, dict) and state.get("blocks"):
        content[:0] = [dict(b) for b in state["blocks"]]
    return content


def build_body(request: ModelRequest, *, thinking_budget: int | None = None,
               cache: FragmentCache | None = None) -> dict[str, Any]:
    """The request body; with a `cache`, earlier messages go in as pre-encoded JSON fragments. The
    last block of the conversation carries the rolling cache breakpoint, so it is encoded afresh.
    Thinking: `request.thinking_budget` (the manifest's), else the shard's `thinking_budget`; the
    budget is added to `max_tokens` (the API wants `budget_tokens < max_tokens`)."""
    thinking_budget = request.thinking_budget or thinking_budget
    history = request.messages

    def marked_at(end: int) -> int:
        """The last message before `end` that has blocks (one carrying a breakpoint), or -1."""
        i = min(end, len(history)) - 1
        while i >= 0 and isinstance(history[i], AssistantMessage) and not blocks_json(history[i]):
            i -= 1
        return i

    last = marked_at(len(history))
    # Breakpoints: the end of system+tools, the ends of the last two frozen chunks (the older one is
    # what the previous calls stored: a new chunk still reads the chunks before it from the cache),
    # and the end of the conversation (the next call's cached prefix) — 4 at most.
    marked = {last} | {marked_at(end) for end in request.frozen_ends[-2:]}
    marked.discard(-1)
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(history):
        role = "assistant" if isinstance(m, AssistantMessage) else "user"
        entries: list[Any]
        if i in marked:
            entries = blocks_json(m)
            entries[-1] = {**entries[-1], "cache_control": EPHEMERAL}
        elif cache is not None:
            fragment = cache.get_many(m, functools.partial(blocks_json, m))
            entries = [fragment] if fragment is not None else []
        else:
            entries = blocks_json(m)
        if not entries:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(entries)
        else:
            messages.append({"role": role, "content": entries})
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens + (thinking_budget or 0),
        "stream": True,
        "messages": messages,
    }
    if request.system:
        # Tools come before the system prompt in the cached prefix: this breakpoint covers both.
        body["system"] = [{"type": "text", "text": request.system, "cache_control": EPHEMERAL}]
    if request.tools:
        tools = [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in request.tools]
        if not request.system:
            tools[-1]["cache_control"] = EPHEMERAL
        body["tools"] = tools
    if thinking_budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": thinking_budget}
    return body


class AnthropicDecoder:
    """One Messages stream → canonical events."""

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.blocks: dict[int, dict[str, Any]] = {}  # index -> {"type", "id", "name", "args": [..]}
        self.tool_index = 0
        self.stop: StopReason | None = None
        self.usage: dict[str, Any] = {}
        self.reasoning: list[dict[str, Any]] = []  # thinking / redacted_thinking blocks, in order
        # A tool_use block whose arguments are not JSON: cut by max_tokens or a refusal (dropped) or
        # malformed (raised at message_stop, once the stop reason is known).
        self.cut: ProviderError | None = None

    def feed(self, event: SseEvent) -> list[StreamEvent]:
        kind = event.event
        if kind == "ping" or not kind:
            return []  # the SDK drops events without an `event:` line too
        data = loads_event(event.data, "anthropic")
        if not isinstance(data, dict):
            raise ProviderError("anthropic: stream event is not an object", retryable=True, code="malformed_stream", status=200)
        try:
            return self._handle(kind, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"anthropic: unexpected {kind} event: {exc!r}", retryable=True, code="malformed_stream",
                                status=200) from exc

    def _handle(self, kind: str, data: dict[str, Any]) -> list[StreamEvent]:
        if kind == "error":
            err = data.get("error") or {}
            etype = str(err.get("type", "api_error"))
            raise ProviderError(f"anthropic: {etype}: {err.get('message', '')}", retryable=etype in RETRYABLE_ERRORS,
                                code=etype, status=200)
        if kind == "message_start":
            self.started = True
            self.usage.update({k: v for k, v in data["message"].get("usage", {}).items() if v is not None})
            return [UsageReported(self.usage_totals())]
        if not self.started:
            raise ProviderError(f"anthropic: {kind} before message_start", retryable=True, code="malformed_stream", status=200)
        if kind == "content_block_start":
            index = int(data["index"])
            block = data["content_block"]
            btype = block["type"]
            if btype == "tool_use":
                slot = self.tool_index
                self.tool_index += 1
                self.blocks[index] = {"type": btype, "id": block["id"], "name": block["name"], "args": [], "slot": slot}
                return [ToolCallStarted(slot, block["id"], block["name"])]
            self.blocks[index] = {"type": btype}
            if btype == "thinking":
                kept = {"type": "thinking", "thinking": [block.get("thinking") or ""], "signature": [block.get("signature") or ""]}
                self.blocks[index]["kept"] = kept
                self.reasoning.append(kept)
                return [ThinkingDelta(block["thinking"])] if block.get("thinking") else []
            if btype == "redacted_thinking":
                self.reasoning.append({"type": "redacted_thinking", "data": str(block["data"])})
                return self._state_so_far()
            if btype == "text" and block.get("text"):
                return [TextDelta(block["text"])]
            return []
        if kind == "content_block_delta":
            index = int(data["index"])
            delta = data["delta"]
            dtype = delta["type"]
            if dtype == "text_delta":
                return [TextDelta(delta["text"])] if delta["text"] else []
            if dtype == "input_json_delta":
                block = self.blocks[index]
                fragment = delta["partial_json"]
                if not fragment:
                    return []
                block["args"].append(fragment)
                return [ToolCallArgsDelta(block["slot"], fragment)]
            if dtype == "thinking_delta":
                self.blocks[index]["kept"]["thinking"].append(delta["thinking"])
                return [ThinkingDelta(delta["thinking"])] if delta["thinking"] else []
            if dtype == "signature_delta":
                self.blocks[index]["kept"]["signature"].append(delta["signature"])
            return []  # citations_delta: nothing canonical
        if kind == "content_block_stop":
            block = self.blocks[int(data["index"])]
            if block["type"] == "tool_use":
                try:
                    args = parse_tool_arguments("".join(block["args"]), "anthropic")
                except ProviderError as exc:
                    self.cut = self.cut or exc
                    return []
                return [ToolCallCompleted(block["slot"], ToolCall(block["id"], block["name"], args))]
            if block["type"] == "thinking":
                return self._state_so_far()
            return []
        if kind == "message_delta":
            reason = data["delta"].get("stop_reason")
            if reason is not None:
                self.stop = STOP_REASONS.get(reason, "end_turn")
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            return [UsageReported(self.usage_totals())] if data.get("usage") else []
        if kind == "message_stop":
            if self.cut is not None and self.stop not in ("max_tokens", "content_filter"):
                raise self.cut
            self.done = True
            return [MessageCompleted(self.stop or "end_turn", self.usage_totals(), self.provider_state())]
        return []  # new event types are to be ignored gracefully (the docs say so)

    def _state_so_far(self) -> list[StreamEvent]:
        state = self.provider_state()
        return [ProviderStateUpdated(state)] if state is not None else []

    def provider_state(self) -> ProviderState | None:
        if not self.reasoning:
            return None
        blocks = [
            {**b, "thinking": "".join(b["thinking"]), "signature": "".join(b["signature"])} if b["type"] == "thinking" else b
            for b in self.reasoning
        ]
        return ProviderState.of("anthropic", {"blocks": blocks})

    def usage_totals(self) -> Usage:
        u = self.usage
        return Usage(
            input_tokens=int(u.get("input_tokens") or 0),
            output_tokens=int(u.get("output_tokens") or 0),
            cache_read_tokens=int(u.get("cache_read_input_tokens") or 0),
            cache_write_tokens=int(u.get("cache_creation_input_tokens") or 0),
        )

    def finish(self) -> list[StreamEvent]:
        if not self.done:
            raise stream_cut("anthropic")
        return []


class AnthropicCodec:
    provider = "anthropic"

    def __init__(self, *, thinking_budget: int | None = None, api_version: str = API_VERSION) -> None:
        self.thinking_budget = thinking_budget
        self.api_version = api_version
        self.cache = FragmentCache()

    def encode(self, request: ModelRequest, base_url: str, api_key: str) -> HttpRequest:
        headers = {
            "x-api-key": api_key,
            "anthropic-version": self.api_version,
            "content-type": "application/json",
            "accept": "text/event-stream",
        }
        body = build_body(request, thinking_budget=self.thinking_budget, cache=self.cache)
        return HttpRequest(base_url.rstrip("/") + "/v1/messages", headers, dumps(body))

    def decoder(self) -> AnthropicDecoder:
        return AnthropicDecoder()

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return http_error("anthropic", status, headers, body)
