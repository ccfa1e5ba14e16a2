"""The mock OpenAI Chat Completions and Responses APIs: request parsing and SSE streams (sans-IO).

Responses reasoning (`reasoning` in the request): the answer starts with a `reasoning` output item
(summary streamed as `reasoning_summary_text` events) whose `encrypted_content` is present when the
request includes `reasoning.encrypted_content`. Reasoning items sent back must carry content this
mock issued for that id (else 400), and, with `store: false`, the function calls of the turn being
continued (after the last user message) must be preceded by their reasoning item (else 400) — the
conversation state a stateless client has to keep.
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

FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length", "content_filter": "content_filter"}
CREATED = 1_764_000_000


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _arguments(text: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        raise BadRequest("function arguments must be JSON") from None
    return value if isinstance(value, dict) else {}


def parse_chat(body: Any) -> ParsedRequest:
    if not isinstance(body, dict) or "model" not in body or not isinstance(body.get("messages"), list):
        raise BadRequest("'model' and 'messages' are required")
    blocks: list[Block] = []
    tools: list[ToolSpec] = []
    for t in body.get("tools") or ():
        fn = t["function"]
        tools.append(ToolSpec(fn["name"], fn.get("description", ""), fn.get("parameters") or {}))
        blocks.append(block_of(t))
    system = ""
    messages: list[Message] = []
    names: dict[str, str] = {}
    for m in body["messages"]:
        blocks.append(block_of(m))
        role = m.get("role")
        if role in ("system", "developer"):
            system += _text(m.get("content"))
        elif role == "user":
            messages.append(UserMessage(_text(m.get("content"))))
        elif role == "assistant":
            calls = []
            for tc in m.get("tool_calls") or ():
                names[tc["id"]] = tc["function"]["name"]
                calls.append(ToolCall(tc["id"], tc["function"]["name"], _arguments(tc["function"].get("arguments"))))
            messages.append(AssistantMessage(_text(m.get("content")), tuple(calls), "tool_use" if calls else "end_turn"))
        elif role == "tool":
            call_id = m.get("tool_call_id", "")
            messages.append(ToolResultMessage(ToolResult(call_id, names.get(call_id, ""), _text(m.get("content")))))
        else:
            raise BadRequest(f"messages: unknown role {role!r}")
    opts = body.get("stream_options") or {}
    return ParsedRequest(
        model=str(body["model"]), system=system, messages=messages, tools=tools, blocks=blocks,
        max_tokens=int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096),
        cache_key=str(body.get("prompt_cache_key") or ""), stream=bool(body.get("stream")),
        extra={"include_usage": bool(opts.get("include_usage"))},
    )


REASONING_KIND = "openai-reasoning"


def encrypted_reasoning(item_id: str) -> str:
    """The `encrypted_content` the mock gives (and requires back with) reasoning item `item_id`."""
    return sign(REASONING_KIND, item_id)


def _check_reasoning(items: list[Any], store: bool) -> None:
    last_user = max((i for i, it in enumerate(items) if it.get("type", "message") == "message"
                     and it.get("role") == "user"), default=-1)
    reasoned = False
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "reasoning":
            if verify(REASONING_KIND, item.get("encrypted_content")) != item.get("id"):
                raise BadRequest(f"input[{i}]: The encrypted content for item {item.get('id')} could not be verified.")
            reasoned = True
        elif kind == "function_call_output" or (kind == "message" and item.get("role") == "user"):
            reasoned = False
        elif kind == "function_call" and i > last_user and not store and not reasoned:
            raise BadRequest(f"input[{i}]: Item of type 'function_call' (call_id {item.get('call_id')!r}) was provided "
                             "without its required 'reasoning' item.")


def parse_responses(body: Any) -> ParsedRequest:
    if not isinstance(body, dict) or "model" not in body:
        raise BadRequest("'model' is required")
    items = body.get("input") or []
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    blocks: list[Block] = []
    tools: list[ToolSpec] = []
    for t in body.get("tools") or ():
        if t.get("type") == "function":
            tools.append(ToolSpec(t["name"], t.get("description") or "", t.get("parameters") or {}))
        blocks.append(block_of(t))
    system = str(body.get("instructions") or "")
    if system:
        blocks.append(block_of({"instructions": system}))
    messages: list[Message] = []
    names: dict[str, str] = {}
    pending: list[ToolCall] = []
    pending_text = ""

    def flush() -> None:
        nonlocal pending, pending_text
        if pending or pending_text:
            messages.append(AssistantMessage(pending_text, tuple(pending), "tool_use" if pending else "end_turn"))
        pending, pending_text = [], ""

    for item in items:
        blocks.append(block_of(item))
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "assistant":
            flush()
            pending_text = _text(item.get("content"))
        elif kind == "function_call":
            names[item["call_id"]] = item["name"]
            pending.append(ToolCall(item["call_id"], item["name"], _arguments(item.get("arguments"))))
        elif kind == "function_call_output":
            flush()
            out = item.get("output")
            messages.append(ToolResultMessage(ToolResult(item["call_id"], names.get(item["call_id"], ""), _text(out))))
        elif kind == "message":
            flush()
            messages.append(UserMessage(_text(item.get("content"))))
        elif kind == "reasoning":
            flush()
        else:
            raise BadRequest(f"input: unsupported item type {kind!r}")
    flush()
    thinking = isinstance(body.get("reasoning"), dict)
    if thinking:
        _check_reasoning(items, bool(body.get("store", True)))
    return ParsedRequest(
        model=str(body["model"]), system=system, messages=messages, tools=tools, blocks=blocks,
        max_tokens=int(body.get("max_output_tokens") or 4096), cache_key=str(body.get("prompt_cache_key") or ""),
        stream=bool(body.get("stream")), thinking=thinking,
        extra={"encrypted_reasoning": "reasoning.encrypted_content" in (body.get("include") or ())},
    )


def _usage_chat(answer: Answer) -> dict[str, Any]:
    c = answer.cache
    return {
        "prompt_tokens": c.total_tokens, "completion_tokens": answer.output_tokens,
        "total_tokens": c.total_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": c.read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def stream_chat(req: ParsedRequest, answer: Answer) -> list[bytes]:
    msg = answer.message
    include_usage = bool(req.extra.get("include_usage"))
    head = {"id": f"chatcmpl-{answer.id}", "object": "chat.completion.chunk", "created": CREATED, "model": req.model,
            "system_fingerprint": "fp_mock", "service_tier": "default"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data: dict[str, Any] = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            data["usage"] = None
        return sse(orjson.dumps(data))

    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for p in pieces(msg.text, TEXT_PIECE):
        out.append(chunk({"content": p}))
    for i, call in enumerate(msg.tool_calls):
        out.append(chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                          "function": {"name": call.name, "arguments": ""}}]}))
        for p in pieces(orjson.dumps(call.arguments).decode(), ARGS_PIECE):
            out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}))
    out.append(chunk({}, FINISH.get(msg.stop_reason, "stop")))
    if include_usage:
        out.append(sse(orjson.dumps({**head, "choices": [], "usage": _usage_chat(answer)})))
    out.append(b"data: [DONE]\n\n")
    return out


def stream_responses(req: ParsedRequest, answer: Answer) -> list[bytes]:
    msg = answer.message
    rid = f"resp_{answer.id}"
    seq = 0
    out: list[bytes] = []

    def ev(kind: str, **fields: Any) -> None:
        nonlocal seq
        out.append(sse(orjson.dumps({"type": kind, "sequence_number": seq, **fields}), kind))
        seq += 1

    def response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
        return {"id": rid, "object": "response", "created_at": CREATED, "status": status, "model": req.model,
                "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": [{"type": "function", "name": t.name, "description": t.description, "parameters": t.input_schema,
                           "strict": False} for t in req.tools],
                "error": None, "incomplete_details": None, "instructions": req.system or None, "metadata": {},
                "temperature": 1.0, "top_p": 1.0, "max_output_tokens": req.max_tokens, "usage": usage}

    ev("response.created", response=response("in_progress", [], None))
    ev("response.in_progress", response=response("in_progress", [], None))
    done: list[dict[str, Any]] = []
    index = 0
    if answer.thinking:
        rid_ = f"rs_{answer.id}"
        ev("response.output_item.added", output_index=index,
           item={"id": rid_, "type": "reasoning", "summary": [], "status": "in_progress"})
        ev("response.reasoning_summary_part.added", item_id=rid_, output_index=index, summary_index=0,
           part={"type": "summary_text", "text": ""})
        for p in pieces(answer.thinking, TEXT_PIECE):
            ev("response.reasoning_summary_text.delta", item_id=rid_, output_index=index, summary_index=0, delta=p)
        ev("response.reasoning_summary_text.done", item_id=rid_, output_index=index, summary_index=0,
           text=answer.thinking)
        summary = {"type": "summary_text", "text": answer.thinking}
        ev("response.reasoning_summary_part.done", item_id=rid_, output_index=index, summary_index=0, part=summary)
        item = {"id": rid_, "type": "reasoning", "summary": [summary], "status": "completed"}
        if req.extra.get("encrypted_reasoning"):
            item["encrypted_content"] = encrypted_reasoning(rid_)
        ev("response.output_item.done", output_index=index, item=item)
        done.append(item)
        index += 1
    if msg.text:
        mid = f"msg_{answer.id}"
        ev("response.output_item.added", output_index=index,
           item={"id": mid, "type": "message", "status": "in_progress", "role": "assistant", "content": []})
        ev("response.content_part.added", item_id=mid, output_index=index, content_index=0,
           part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        for p in pieces(msg.text, TEXT_PIECE):
            ev("response.output_text.delta", item_id=mid, output_index=index, content_index=0, delta=p, logprobs=[])
        part = {"type": "output_text", "text": msg.text, "annotations": [], "logprobs": []}
        ev("response.output_text.done", item_id=mid, output_index=index, content_index=0, text=msg.text, logprobs=[])
        ev("response.content_part.done", item_id=mid, output_index=index, content_index=0, part=part)
        item = {"id": mid, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        ev("response.output_item.done", output_index=index, item=item)
        done.append(item)
        index += 1
    for call in msg.tool_calls:
        fid = f"fc_{answer.id}_{index}"
        args = orjson.dumps(call.arguments).decode()
        ev("response.output_item.added", output_index=index, item={
            "id": fid, "type": "function_call", "status": "in_progress", "call_id": call.id, "name": call.name,
            "arguments": ""})
        for p in pieces(args, ARGS_PIECE):
            ev("response.function_call_arguments.delta", item_id=fid, output_index=index, delta=p)
        ev("response.function_call_arguments.done", item_id=fid, output_index=index, arguments=args)
        item = {"id": fid, "type": "function_call", "status": "completed", "call_id": call.id, "name": call.name,
                "arguments": args}
        ev("response.output_item.done", output_index=index, item=item)
        done.append(item)
        index += 1
    c = answer.cache
    usage = {"input_tokens": c.total_tokens,
             "input_tokens_details": {"cached_tokens": c.read_tokens, "cache_write_tokens": c.write_tokens},
             "output_tokens": answer.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": c.total_tokens + answer.output_tokens}
    if msg.stop_reason == "max_tokens":
        final = response("incomplete", done, usage)
        final["incomplete_details"] = {"reason": "max_output_tokens"}
        ev("response.incomplete", response=final)
    else:
        ev("response.completed", response=response("completed", done, usage))
    return out


def error_body(kind: str, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def midstream_error_chat() -> bytes:
    return sse(orjson.dumps(error_body("server_error", "The server had an error while processing your request.")))


def midstream_error_responses(seq: int) -> bytes:
    return sse(orjson.dumps({"type": "error", "code": "server_error", "message": "The server had an error.",
                             "param": None, "sequence_number": seq}), "error")
