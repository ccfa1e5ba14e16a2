"""OpenAI Chat Completions codec (sans-IO): `POST {base}/chat/completions` with `"stream": true`.

Request: `prompt_cache_key` is the agent key (OpenAI caches prefixes automatically; the key keeps one
agent's calls on the same cache), `stream_options.include_usage` asks for the final usage chunk.

Stream: data-only SSE ending with `data: [DONE]`. Tool calls arrive as fragments keyed by `index`;
a call is complete when a later call starts or the choice finishes, and `ToolCallCompleted` is emitted
then. Canonical usage: `input_tokens = prompt_tokens - cached_tokens - cache_write_tokens` (OpenAI's
prompt count includes them), so input + cache read + cache write is the whole prompt for every provider.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import orjson

from agent_runtime.messages import AssistantMessage, Message, StopReason, ToolCall, ToolResultMessage, Usage, UserMessage
from agent_runtime.native import SseEvent
from agent_runtime.providers.base import (
    MessageCompleted,
    ModelRequest,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallCompleted,
    ToolCallStarted,
    UsageReported,
)
from agent_runtime.providers.wire import FragmentCache, HttpRequest, dumps, http_error, loads_event, parse_tool_arguments, stream_cut

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "content_filter",
}
RETRYABLE_ERRORS = frozenset({"server_error", "rate_limit_exceeded", "overloaded", "timeout"})


def message_json(m: Message) -> dict[str, Any]:
    if isinstance(m, UserMessage):
        return {"role": "user", "content": m.text}
    if isinstance(m, ToolResultMessage):
        return {"role": "tool", "tool_call_id": m.result.tool_call_id, "content": m.result.content}
    msg: dict[str, Any] = {"role": "assistant", "content": m.text or None}
    if m.tool_calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": orjson.dumps(c.arguments).decode()}}
            for c in m.tool_calls
        ]
    return msg


def build_body(request: ModelRequest, cache: FragmentCache | None = None) -> dict[str, Any]:
    """The request body; with a `cache`, earlier messages go in as pre-encoded JSON fragments."""
    messages: list[Any] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for m in request.messages:
        if isinstance(m, AssistantMessage) and not m.text and not m.tool_calls:
            continue  # an empty message (interrupted before any output): the API refuses it
        messages.append(cache.get(m, functools.partial(message_json, m)) if cache is not None else message_json(m))
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": request.max_tokens,
        "prompt_cache_key": request.agent_key,
    }
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}
            for t in request.tools
        ]
    return body


def usage_of(u: dict[str, Any], details_key: str, prompt_key: str, completion_key: str) -> Usage:
    details = u.get(details_key) or {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return Usage(
        input_tokens=max(0, int(u.get(prompt_key) or 0) - cached - written),
        output_tokens=int(u.get(completion_key) or 0),
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )


def error_event(provider: str, err: Any) -> ProviderError:
    err = err if isinstance(err, dict) else {"message": str(err)}
    kind = str(err.get("type") or err.get("code") or "server_error")
    return ProviderError(f"{provider}: {kind}: {err.get('message', '')}", retryable=kind in RETRYABLE_ERRORS,
                         code=kind, status=200)


class OpenAIChatDecoder:
    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}  # wire index -> {"id", "name", "args": [...], "done"}
        self.open: int | None = None
        self.finish_reason: StopReason | None = None
        self.usage: Usage | None = None
        self.done = False

    def _close_open(self, cut: bool = False) -> list[StreamEvent]:
        """Complete the open call. `cut`: the choice finished with `length` or `content_filter`, so
        a call whose arguments are not JSON was cut short and is dropped (an unfinished message)."""
        if self.open is None:
            return []
        call = self.calls[self.open]
        self.open = None
        try:
            args = parse_tool_arguments("".join(call["args"]), "openai")
        except ProviderError:
            if cut:
                return []
            raise
        return [ToolCallCompleted(call["slot"], ToolCall(call["id"], call["name"], args))]

    def feed(self, event: SseEvent) -> list[StreamEvent]:
        data = event.data
        if data.startswith("[DONE]"):
            self.done = True
            return self._complete()
        chunk = loads_event(data, "openai")
        if not isinstance(chunk, dict):
            raise ProviderError("openai: chunk is not an object", retryable=True, code="malformed_stream", status=200)
        if "error" in chunk and chunk["error"] is not None:
            raise error_event("openai", chunk["error"])
        out: list[StreamEvent] = []
        try:
            if chunk.get("usage"):
                self.usage = usage_of(chunk["usage"], "prompt_tokens_details", "prompt_tokens", "completion_tokens")
                out.append(UsageReported(self.usage))
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    out.append(TextDelta(text))
                for tc in delta.get("tool_calls") or ():
                    index = int(tc["index"])
                    fn = tc.get("function") or {}
                    if index not in self.calls:
                        out.extend(self._close_open())
                        slot = len(self.calls)
                        self.calls[index] = {"id": tc["id"], "name": fn["name"], "args": [], "slot": slot}
                        self.open = index
                        out.append(ToolCallStarted(slot, tc["id"], fn["name"]))
                    fragment = fn.get("arguments")
                    if fragment:
                        self.calls[index]["args"].append(fragment)
                        out.append(ToolCallArgsDelta(self.calls[index]["slot"], fragment))
                reason = choice.get("finish_reason")
                if reason:
                    out.extend(self._close_open(cut=reason in ("length", "content_filter")))
                    self.finish_reason = FINISH_REASONS.get(reason, "end_turn")
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"openai: unexpected chunk: {exc!r}", retryable=True, code="malformed_stream",
                                status=200) from exc
        return out

    def _complete(self) -> list[StreamEvent]:
        if self.finish_reason is None:
            raise stream_cut("openai")
        return [MessageCompleted(self.finish_reason, self.usage or Usage())]

    def finish(self) -> list[StreamEvent]:
        if self.done:
            return []
        # A missing `[DONE]` is accepted (the SDK does too) once the choice has finished and the
        # usage chunk we asked for has arrived; anything less is a cut stream.
        if self.usage is None:
            raise stream_cut("openai")
        self.done = True
        return self._complete()


class OpenAIChatCodec:
    provider = "openai"

    def __init__(self) -> None:
        self.cache = FragmentCache()

    def encode(self, request: ModelRequest, base_url: str, api_key: str) -> HttpRequest:
        headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json", "accept": "text/event-stream"}
        return HttpRequest(base_url.rstrip("/") + "/chat/completions", headers, dumps(build_body(request, self.cache)))

    def decoder(self) -> OpenAIChatDecoder:
        return OpenAIChatDecoder()

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return http_error("openai", status, headers, body)
