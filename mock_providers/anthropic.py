"""The mock Anthropic Messages API: request parsing and byte-faithful SSE streams (sans-IO).

Extended thinking as the real API checks it: with `thinking` enabled, when the request ends in
`tool_result`s the assistant turn before them must start with a `thinking` / `redacted_thinking`
block (400 `invalid_request_error` otherwise), and every `thinking` block's `signature` (every
`redacted_thinking` block's `data`) must be one this mock issued for exactly that block.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResult, ToolResultMessage, UserMessage
from agent_runtime.tools.base import ToolSpec
from mock_providers.caching import Block, block_of
from mock_providers.common import (
    ARGS_PIECE,
    TEXT_PIECE,
    Answer,
    BadRequest,
    ParsedRequest,
    pieces,
    sign,
    sse,
    verify,
)

STOP = {"end_turn": "end_turn", "tool_use": "tool_use", "max_tokens": "max_tokens", "content_filter": "refusal"}


def _ttl(block: Any) -> str | None:
    cc = block.get("cache_control") if isinstance(block, dict) else None
    if cc is None:
        return None
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
        raise BadRequest("cache_control.type: only 'ephemeral' is supported")
    ttl = cc.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise BadRequest(f"cache_control.ttl: {ttl!r} is not one of '5m', '1h'")
    return str(ttl)


def _strip(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


THINKING_KIND = "anthropic-thinking"
REDACTED_KIND = "anthropic-redacted"


def thinking_signature(thinking: str) -> str:
    """The `signature` the mock gives (and requires back on) a thinking block with this text."""
    return sign(THINKING_KIND, thinking)


def redacted_data(seed: str) -> str:
    return sign(REDACTED_KIND, seed)


def _check_thinking(messages: list[Any]) -> None:
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        for j, b in enumerate(content if isinstance(content, list) else ()):
            kind = b.get("type") if isinstance(b, dict) else None
            if kind == "thinking" and verify(THINKING_KIND, b.get("signature")) != b.get("thinking"):
                raise BadRequest(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
            if kind == "redacted_thinking" and verify(REDACTED_KIND, b.get("data")) is None:
                raise BadRequest(f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block")
    last = messages[-1] if messages else None
    if not (isinstance(last, dict) and last.get("role") == "user" and isinstance(last.get("content"), list)
            and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"])):
        return
    i = len(messages) - 2
    prev = messages[i] if i >= 0 else None
    if not isinstance(prev, dict) or prev.get("role") != "assistant":
        return
    content = prev.get("content")
    first = content[0] if isinstance(content, list) and content else {}
    found = first.get("type") if isinstance(first, dict) else "text"
    if found not in ("thinking", "redacted_thinking"):
        raise BadRequest(
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When "
            "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the "
            "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
            "previous turns. To avoid this requirement, disable `thinking`.")


def parse(body: Any) -> ParsedRequest:
    if not isinstance(body, dict):
        raise BadRequest("body: expected an object")
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            raise BadRequest(f"{field}: Field required")
    blocks: list[Block] = []
    tools: list[ToolSpec] = []
    for t in body.get("tools") or ():
        tools.append(ToolSpec(t["name"], t.get("description", ""), t.get("input_schema") or {}))
        blocks.append(block_of(_strip(t), _ttl(t)))
    system = body.get("system") or ""
    if isinstance(system, str):
        system_text = system
        if system:
            blocks.append(block_of({"type": "text", "text": system}))
    else:
        system_text = "".join(b.get("text", "") for b in system)
        for b in system:
            blocks.append(block_of(_strip(b), _ttl(b)))
    messages: list[Message] = []
    names: dict[str, str] = {}
    for m in body["messages"]:
        role = m.get("role")
        content = m.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if role not in ("user", "assistant") or not isinstance(content, list):
            raise BadRequest("messages: each message needs role user|assistant and content")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for b in content:
            blocks.append(block_of(_strip(b), _ttl(b)))
            kind = b.get("type")
            if kind == "text":
                texts.append(b["text"])
            elif kind == "tool_use":
                names[b["id"]] = b["name"]
                calls.append(ToolCall(b["id"], b["name"], b.get("input") or {}))
            elif kind == "tool_result":
                raw = b.get("content", "")
                text = raw if isinstance(raw, str) else "".join(x.get("text", "") for x in raw)
                messages.append(ToolResultMessage(ToolResult(b["tool_use_id"], names.get(b["tool_use_id"], ""), text,
                                                             bool(b.get("is_error")))))
        if role == "user" and texts:
            messages.append(UserMessage("\n".join(texts)))
        elif role == "assistant":
            messages.append(AssistantMessage("".join(texts), tuple(calls), "tool_use" if calls else "end_turn"))
    auto = body.get("cache_control")
    thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "enabled"
    if thinking:
        _check_thinking(body["messages"])
    return ParsedRequest(
        model=str(body["model"]), system=system_text, messages=messages, tools=tools, blocks=blocks,
        max_tokens=int(body["max_tokens"]), automatic_ttl=_ttl({"cache_control": auto}) if auto else None,
        thinking=thinking, stream=bool(body.get("stream")),
    )


def _ev(event: str, data: dict[str, Any]) -> bytes:
    return sse(orjson.dumps(data), event)


def stream(req: ParsedRequest, answer: Answer) -> list[bytes]:
    c = answer.cache
    usage = {
        "input_tokens": c.total_tokens - c.read_tokens - c.write_tokens,
        "cache_creation_input_tokens": c.write_tokens,
        "cache_read_input_tokens": c.read_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": c.write_tokens - c.write_1h_tokens,
                           "ephemeral_1h_input_tokens": c.write_1h_tokens},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    msg = answer.message
    out = [_ev("message_start", {"type": "message_start", "message": {
        "id": f"msg_{answer.id}", "type": "message", "role": "assistant", "model": req.model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})]
    index = 0
    if answer.thinking:
        out.append(_ev("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
        for p in pieces(answer.thinking, TEXT_PIECE):
            out.append(_ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "thinking_delta", "thinking": p}}))
        out.append(_ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": "signature_delta",
                                                         "signature": thinking_signature(answer.thinking)}}))
        out.append(_ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    if answer.thinking and answer.redacted_thinking:
        out.append(_ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "redacted_thinking", "data": redacted_data(answer.id)}}))
        out.append(_ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    if msg.text:
        out.append(_ev("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}}))
        out.append(b'event: ping\ndata: {"type": "ping"}\n\n')
        for p in pieces(msg.text, TEXT_PIECE):
            out.append(_ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "text_delta", "text": p}}))
        out.append(_ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    for call in msg.tool_calls:
        out.append(_ev("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": call.id, "name": call.name, "input": {}}}))
        args = orjson.dumps(call.arguments).decode()
        for p in ["", *pieces(args, ARGS_PIECE)]:
            out.append(_ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "input_json_delta", "partial_json": p}}))
        out.append(_ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    out.append(_ev("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": STOP.get(msg.stop_reason, "end_turn"), "stop_sequence": None},
                                     "usage": {"output_tokens": answer.output_tokens}}))
    out.append(_ev("message_stop", {"type": "message_stop"}))
    return out


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}


def midstream_error() -> bytes:
    return _ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
