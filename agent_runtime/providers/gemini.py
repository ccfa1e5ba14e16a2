"""Gemini `streamGenerateContent?alt=sse` codec (sans-IO).

Request: `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse` with the key in
`x-goog-api-key`; camelCase body (`contents`, `systemInstruction`, `tools[].functionDeclarations`,
`generationConfig`). Gemini caches implicitly; nothing to mark.

Stream: data-only SSE (CRLF framed), every chunk a whole `GenerateContentResponse`, no terminator:
the message is complete when a chunk carried `finishReason` and the body ended. Function calls come
whole in one part, so `ToolCallStarted`, one `ToolCallArgsDelta` and `ToolCallCompleted` are emitted
together. Canonical usage: `input_tokens = promptTokenCount - cachedContentTokenCount`.

Thinking (`request.thinking_budget`): `generationConfig.thinkingConfig` with the budget and
`includeThoughts` (thought parts stream as `ThinkingDelta`). Thinking models put `thoughtSignature`s
on parts; Gemini 2.5/3 require them back on the same parts when a turn has function calls. The
message keeps them as its `ProviderState` (`{"calls": {call id: signature}, "text": signature}`)
and the Gemini codec (only it) puts each back on its `functionCall` part, and the text one on the
message's text part (the message's text parts are joined into one, so a signature on an earlier
text part, on a thought part or on a text-less empty part moves to the joined text part or, without
text, is dropped: only function-call signatures are validated by the API).

Streamed function-call arguments (`FunctionCall.partialArgs` / `willContinue` in the SDK types) are
neither requested nor decoded: the research note (section 7) could not confirm their wire form, and
a decoder written against a guess would be a stub. Calls arrive whole.
"""

from __future__ import annotations

import uuid
import functools
from collections.abc import Mapping
from typing import Any

import orjson

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
from agent_runtime.providers.retry import gemini_retry_delay
from agent_runtime.providers.wire import FragmentCache, HttpRequest, dumps, http_error, loads_event, stream_cut

FINISH_REASONS: dict[str, StopReason] = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "end_turn",
    "OTHER": "end_turn",
}
# The model produced something unusable: asking again may well work.
RETRY_FINISH = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "MALFORMED_RESPONSE",
                          "MISSING_THOUGHT_SIGNATURE", "TOO_MANY_TOOL_CALLS"})
RETRYABLE_STATUS = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"})


def parts_json(m: Message) -> list[dict[str, Any]]:
    """The parts of one message (a `user` turn for user text and function responses)."""
    if isinstance(m, UserMessage):
        return [{"text": m.text}]
    if isinstance(m, ToolResultMessage):
        r = m.result
        key = "error" if r.is_error else "output"
        return [{"functionResponse": {"id": r.tool_call_id, "name": r.name, "response": {key: r.content}}}]
    state = m.state_for("gemini")
    signatures = state if isinstance(state, dict) else {}
    calls = signatures.get("calls") or {}
    parts: list[dict[str, Any]] = []
    if m.text:
        parts.append({"text": m.text})
        if signatures.get("text"):
            parts[-1]["thoughtSignature"] = signatures["text"]
    for c in m.tool_calls:
        part: dict[str, Any] = {"functionCall": {"id": c.id, "name": c.name, "args": c.arguments}}
        if c.id in calls:
            part["thoughtSignature"] = calls[c.id]
        parts.append(part)
    return parts


def build_body(request: ModelRequest, cache: FragmentCache | None = None) -> dict[str, Any]:
    """The request body; with a `cache`, earlier messages go in as pre-encoded JSON fragments."""
    contents: list[dict[str, Any]] = []
    for m in request.messages:
        role = "model" if isinstance(m, AssistantMessage) else "user"
        entries: list[Any]
        if cache is not None:
            fragment = cache.get_many(m, functools.partial(parts_json, m))
            entries = [fragment] if fragment is not None else []
        else:
            entries = parts_json(m)
        if not entries:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(entries)
        else:
            contents.append({"role": role, "parts": entries})
    generation: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
    if request.thinking_budget:
        generation["thinkingConfig"] = {"thinkingBudget": request.thinking_budget, "includeThoughts": True}
    body: dict[str, Any] = {"contents": contents, "generationConfig": generation}
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [
            {"name": t.name, "description": t.description, "parametersJsonSchema": t.input_schema} for t in request.tools
        ]}]
    return body


def error_of(err: Any, status: int = 200) -> ProviderError:
    err = err if isinstance(err, dict) else {"message": str(err)}
    code = str(err.get("status") or err.get("code") or "INTERNAL")
    retryable = code in RETRYABLE_STATUS or err.get("code") in (429, 500, 503, 504)
    return ProviderError(f"gemini: {code}: {err.get('message', '')}", retryable=retryable, code=code,
                         retry_after_s=gemini_retry_delay({"error": err}), status=status)


class GeminiDecoder:
    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.calls = 0
        self.usage: dict[str, Any] = {}
        self.response_id = ""
        self.call_signatures: dict[str, str] = {}
        self.text_signature: str | None = None

    def feed(self, event: SseEvent) -> list[StreamEvent]:
        chunk = loads_event(event.data, "gemini")
        if not isinstance(chunk, dict):
            raise ProviderError("gemini: chunk is not an object", retryable=True, code="malformed_stream", status=200)
        if "error" in chunk:
            raise error_of(chunk["error"])
        out: list[StreamEvent] = []
        try:
            self.response_id = chunk.get("responseId") or self.response_id
            if chunk.get("usageMetadata") and chunk["usageMetadata"] != self.usage:
                self.usage = chunk["usageMetadata"]
                out.append(UsageReported(self.usage_totals()))
            feedback = chunk.get("promptFeedback") or {}
            if feedback.get("blockReason") and not chunk.get("candidates"):
                self.finish_reason = "SAFETY"
            for cand in chunk.get("candidates") or ():
                if cand.get("index", 0) != 0:
                    continue
                for part in (cand.get("content") or {}).get("parts") or ():
                    if "functionCall" in part:
                        fc = part["functionCall"]
                        slot = self.calls
                        self.calls += 1
                        call_id = fc.get("id") or f"{self.response_id or uuid.uuid4().hex}_{slot}"
                        args = fc.get("args") or {}
                        out.append(ToolCallStarted(slot, call_id, fc["name"]))
                        out.append(ToolCallArgsDelta(slot, orjson.dumps(args).decode()))
                        out.append(ToolCallCompleted(slot, ToolCall(call_id, fc["name"], dict(args))))
                        if part.get("thoughtSignature"):
                            # before the call completes: an interrupt that keeps the call keeps this
                            self.call_signatures[call_id] = str(part["thoughtSignature"])
                            out.insert(-1, ProviderStateUpdated(ProviderState.of("gemini", {"calls": self.call_signatures})))
                        continue
                    if part.get("thoughtSignature"):
                        self.text_signature = str(part["thoughtSignature"])
                    if part.get("text"):
                        out.append(ThinkingDelta(part["text"]) if part.get("thought") else TextDelta(part["text"]))
                if cand.get("finishReason"):
                    self.finish_reason = str(cand["finishReason"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(f"gemini: unexpected chunk: {exc!r}", retryable=True, code="malformed_stream",
                                status=200) from exc
        return out

    def finish(self) -> list[StreamEvent]:
        reason = self.finish_reason
        if reason is None:
            raise stream_cut("gemini")
        if reason in RETRY_FINISH:
            raise ProviderError(f"gemini: finishReason {reason}", retryable=True, code=reason.lower(), status=200)
        stop: StopReason = FINISH_REASONS.get(reason, "end_turn")
        if stop == "end_turn" and self.calls:
            stop = "tool_use"
        return [MessageCompleted(stop, self.usage_totals(), self.provider_state())]

    def usage_totals(self) -> Usage:
        u = self.usage
        cached = int(u.get("cachedContentTokenCount") or 0)
        return Usage(
            input_tokens=max(0, int(u.get("promptTokenCount") or 0) - cached),
            output_tokens=int(u.get("candidatesTokenCount") or 0) + int(u.get("thoughtsTokenCount") or 0),
            cache_read_tokens=cached,
        )

    def provider_state(self) -> ProviderState | None:
        state: dict[str, Any] = {}
        if self.call_signatures:
            state["calls"] = self.call_signatures
        if self.text_signature:
            state["text"] = self.text_signature
        return ProviderState.of("gemini", state) if state else None


class GeminiCodec:
    provider = "gemini"

    def __init__(self, api_version: str = "v1beta") -> None:
        self.api_version = api_version
        self.cache = FragmentCache()

    def encode(self, request: ModelRequest, base_url: str, api_key: str) -> HttpRequest:
        url = f"{base_url.rstrip('/')}/{self.api_version}/models/{request.model}:streamGenerateContent?alt=sse"
        headers = {"x-goog-api-key": api_key, "content-type": "application/json", "accept": "text/event-stream"}
        return HttpRequest(url, headers, dumps(build_body(request, self.cache)))

    def decoder(self) -> GeminiDecoder:
        return GeminiDecoder()

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = error_of(parsed["error"], status)
            if err.retry_after_s is None:
                err.retry_after_s = http_error("gemini", status, headers, b"").retry_after_s
            err.retryable = err.retryable or status in (429, 500, 502, 503, 504)
            return err
        return http_error("gemini", status, headers, body)
