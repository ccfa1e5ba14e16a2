"""OpenAI Responses API codec (sans-IO): `POST {base}/responses` with `"stream": true`.

Request: `instructions` is the system prompt, the conversation is a list of input items (messages,
`function_call` and `function_call_output` items), `prompt_cache_key` is the agent key, `store` is
off (the runtime keeps the conversation).

Stream: decoded by `data.type` (the `event:` line is ignored, as the SDK does). A function call is
complete at `response.function_call_arguments.done` (or its `output_item.done`), which is when
`ToolCallCompleted` is emitted. The stream ends at `response.completed` / `response.incomplete`;
`response.failed` and an `error` event are `ProviderError`s.

Reasoning (`request.thinking_budget`): `reasoning.effort` (budget ≤ 4096 tokens: low, ≤ 16384:
medium, else high) with `summary: auto` (summaries stream as `ThinkingDelta`), and, since `store` is
off, `include: ["reasoning.encrypted_content"]`. The `reasoning` output items (id, summary,
`encrypted_content`) are the message's `ProviderState` (`{"items": [...]}`) and go back, unchanged,
as input items before the message's own items (its function calls) on the next call; only this
codec sends them. Items without `encrypted_content` are not kept (with `store: false` an id alone
refers to nothing).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import orjson

from agent_runtime.messages import Message, ProviderState, StopReason, ToolCall, ToolResultMessage, UserMessage
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
)
from agent_runtime.providers.openai_chat import RETRYABLE_ERRORS, error_event, usage_of
from agent_runtime.providers.wire import FragmentCache, HttpRequest, dumps, http_error, loads_event, parse_tool_arguments, stream_cut

INCOMPLETE_REASONS: dict[str, StopReason] = {"max_output_tokens": "max_tokens", "content_filter": "content_filter"}


def items_json(m: Message) -> list[dict[str, Any]]:
    """The input items of one message (an assistant message may be text plus calls)."""
    if isinstance(m, UserMessage):
        return [{"type": "message", "role": "user", "content": m.text}]
    if isinstance(m, ToolResultMessage):
        return [{"type": "function_call_output", "call_id": m.result.tool_call_id, "output": m.result.content}]
    items: list[dict[str, Any]] = []
    state = m.state_for("openai-responses")
    if isinstance(state, dict):
        items.extend(dict(item) for item in state.get("items") or ())
    if m.text:
        items.append({"type": "message", "role": "assistant", "content": m.text})
    for c in m.tool_calls:
        items.append({"type": "function_call", "call_id": c.id, "name": c.name,
                      "arguments": orjson.dumps(c.arguments).decode()})
    return items


def reasoning_effort(budget: int) -> str:
    return "low" if budget <= 4096 else "medium" if budget <= 16384 else "high"


def build_body(request: ModelRequest, cache: FragmentCache | None = None) -> dict[str, Any]:
    """The request body; with a `cache`, earlier messages go in as pre-encoded JSON fragments."""
    items: list[Any] = []
    for m in request.messages:
        if cache is None:
            items.extend(items_json(m))
        else:
            fragment = cache.get_many(m, functools.partial(items_json, m))
            if fragment is not None:
                items.append(fragment)
    body: dict[str, Any] = {
        "model": request.model,
        "input": items,
        "stream": True,
        "store": False,
        "max_output_tokens": request.max_tokens,
        "prompt_cache_key": request.agent_key,
    }
    if request.system:
        body["instructions"] = request.system
    if request.thinking_budget:
        body["reasoning"] = {"effort": reasoning_effort(request.thinking_budget), "summary": "auto"}
        body["include"] = ["reasoning.encrypted_content"]
    if request.tools:
        body["tools"] = [
            {"type": "function", "name": t.name, "description": t.description, "parameters": t.input_schema,
             "strict": False}
            for t in request.tools
        ]
    return body


class OpenAIResponsesDecoder:
    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}  # output_index -> function call state
        self.slots = 0
        self.done = False
        self.reasoning: list[dict[str, Any]] = []  # reasoning items to send back, in output order
        # A call whose arguments are not JSON: cut by the output limit (dropped at
        # `response.incomplete`) or malformed (raised at `response.completed`).
        self.cut: ProviderError | None = None

    def feed(self, event: SseEvent) -> list[StreamEvent]:
        data = loads_event(event.data, "openai-responses")
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ProviderError("openai-responses: event without a type", retryable=True, code="malformed_stream", status=200)
        try:
            return self._handle(data["type"], data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(f"openai-responses: unexpected {data['type']}: {exc!r}", retryable=True,
                                code="malformed_stream", status=200) from exc

    def _complete_call(self, index: int, arguments: str | None) -> list[StreamEvent]:
        call = self.items.get(index)
        if call is None or call["done"]:
            return []
        call["done"] = True
        text = arguments if arguments is not None else "".join(call["args"])
        try:
            args = parse_tool_arguments(text, "openai-responses")
        except ProviderError as exc:
            self.cut = self.cut or exc
            return []
        return [ToolCallCompleted(call["slot"], ToolCall(call["call_id"], call["name"], args))]

    def _handle(self, kind: str, data: dict[str, Any]) -> list[StreamEvent]:
        if kind == "response.output_text.delta":
            return [TextDelta(data["delta"])] if data["delta"] else []
        if kind == "response.function_call_arguments.delta":
            call = self.items[int(data["output_index"])]
            call["args"].append(data["delta"])
            return [ToolCallArgsDelta(call["slot"], data["delta"])] if data["delta"] else []
        if kind == "response.output_item.added":
            item = data["item"]
            if item.get("type") == "function_call":
                slot = self.slots
                self.slots += 1
                self.items[int(data["output_index"])] = {"call_id": item["call_id"], "name": item["name"], "args": [],
                                                         "slot": slot, "done": False}
                out: list[StreamEvent] = [ToolCallStarted(slot, item["call_id"], item["name"])]
                if item.get("arguments"):
                    self.items[int(data["output_index"])]["args"].append(item["arguments"])
                    out.append(ToolCallArgsDelta(slot, item["arguments"]))
                return out
            return []
        if kind == "response.function_call_arguments.done":
            return self._complete_call(int(data["output_index"]), data.get("arguments"))
        if kind == "response.output_item.done":
            item = data["item"]
            if item.get("type") == "function_call":
                return self._complete_call(int(data["output_index"]), item.get("arguments"))
            if item.get("type") == "reasoning" and item.get("encrypted_content"):
                self.reasoning.append({"type": "reasoning", "id": item["id"], "summary": item.get("summary") or [],
                                       "encrypted_content": item["encrypted_content"]})
                return [ProviderStateUpdated(ProviderState.of("openai-responses", {"items": self.reasoning}))]
            return []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [ThinkingDelta(data["delta"])] if data.get("delta") else []
        if kind in ("response.completed", "response.incomplete"):
            if kind == "response.completed" and self.cut is not None:
                raise self.cut
            response = data["response"]
            self.done = True
            usage = usage_of(response.get("usage") or {}, "input_tokens_details", "input_tokens", "output_tokens")
            if kind == "response.incomplete":
                reason = str((response.get("incomplete_details") or {}).get("reason", ""))
                stop: StopReason = INCOMPLETE_REASONS.get(reason, "max_tokens")
            else:
                stop = "tool_use" if self.items else "end_turn"
            state = ProviderState.of("openai-responses", {"items": self.reasoning}) if self.reasoning else None
            return [MessageCompleted(stop, usage, state)]
        if kind == "response.failed":
            err = (data.get("response") or {}).get("error") or {}
            code = str(err.get("code") or "server_error")
            raise ProviderError(f"openai-responses: failed: {code}: {err.get('message', '')}",
                                retryable=code in RETRYABLE_ERRORS, code=code, status=200)
        if kind == "error":
            raise error_event("openai-responses", {"type": data.get("code") or "server_error",
                                                   "message": data.get("message", "")})
        return []

    def finish(self) -> list[StreamEvent]:
        if not self.done:
            raise stream_cut("openai-responses")
        return []


class OpenAIResponsesCodec:
    provider = "openai-responses"

    def __init__(self) -> None:
        self.cache = FragmentCache()

    def encode(self, request: ModelRequest, base_url: str, api_key: str) -> HttpRequest:
        headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json", "accept": "text/event-stream"}
        return HttpRequest(base_url.rstrip("/") + "/responses", headers, dumps(build_body(request, self.cache)))

    def decoder(self) -> OpenAIResponsesDecoder:
        return OpenAIResponsesDecoder()

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return http_error("openai-responses", status, headers, body)
