"""The mock Gemini `streamGenerateContent?alt=sse` API: request parsing and CRLF-framed SSE (sans-IO).

Thinking (`generationConfig.thinkingConfig`): the answer starts with a thought part, its first
`functionCall` part (or, without calls, its last text part) carries a `thoughtSignature`, and, as
Gemini 2.5/3 do for function calling with thinking, a request whose current turn (the model turns
after the last user text) has a `functionCall` part without its valid signature (the first call of
each model turn) is refused: 400 `INVALID_ARGUMENT`.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResult, ToolResultMessage, UserMessage
from agent_runtime.tools.base import ToolSpec
from mock_providers.caching import Block, block_of
from mock_providers.common import TEXT_PIECE, Answer, BadRequest, ParsedRequest, pieces, sign, sse, verify

FINISH = {"end_turn": "STOP", "tool_use": "STOP", "max_tokens": "MAX_TOKENS", "content_filter": "SAFETY"}


SIGNATURE_KIND = "gemini-thought"


def thought_signature(name: str) -> str:
    """The `thoughtSignature` the mock gives (and requires back on) a call of function `name`."""
    return sign(SIGNATURE_KIND, name)


def _check_signatures(contents: list[Any]) -> None:
    start = 0
    for i, content in enumerate(contents):
        parts = content.get("parts") or []
        if content.get("role", "user") == "user" and any("text" in p for p in parts):
            start = i + 1
    for i in range(start, len(contents)):
        content = contents[i]
        if content.get("role") != "model":
            continue
        calls = [p for p in content.get("parts") or [] if "functionCall" in p]
        if calls and verify(SIGNATURE_KIND, calls[0].get("thoughtSignature")) != calls[0]["functionCall"].get("name"):
            name = calls[0]["functionCall"].get("name")
            raise BadRequest(
                f"Function call is missing a thought_signature in functionCall parts. This is required for tools to "
                f"work correctly, and missing thought_signature may lead to degraded model performance. Additional "
                f"data, function call `default_api:{name}` , position {i + 1}. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")


def parse(body: Any, model: str) -> ParsedRequest:
    if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
        raise BadRequest("contents: required")
    blocks: list[Block] = []
    tools: list[ToolSpec] = []
    for group in body.get("tools") or ():
        for fd in group.get("functionDeclarations") or ():
            schema = fd.get("parametersJsonSchema") or fd.get("parameters") or {}
            tools.append(ToolSpec(fd["name"], fd.get("description", ""), schema))
        blocks.append(block_of(group))
    system_parts = (body.get("systemInstruction") or {}).get("parts") or []
    system = "".join(p.get("text", "") for p in system_parts)
    if system_parts:
        blocks.append(block_of(body["systemInstruction"]))
    messages: list[Message] = []
    for content in body["contents"]:
        role = content.get("role", "user")
        parts = content.get("parts") or []
        if role not in ("user", "model"):
            raise BadRequest(f"contents.role: {role!r} must be 'user' or 'model'")
        for part in parts:
            blocks.append(block_of(part))
        texts = [p["text"] for p in parts if "text" in p and not p.get("thought")]
        if role == "model":
            calls = tuple(ToolCall(p["functionCall"].get("id") or p["functionCall"]["name"], p["functionCall"]["name"],
                                   p["functionCall"].get("args") or {}) for p in parts if "functionCall" in p)
            messages.append(AssistantMessage("".join(texts), calls, "tool_use" if calls else "end_turn"))
            continue
        for p in parts:
            if "functionResponse" in p:
                fr = p["functionResponse"]
                resp = fr.get("response") or {}
                text = resp.get("output", resp.get("error", ""))
                messages.append(ToolResultMessage(ToolResult(fr.get("id") or fr["name"], fr["name"],
                                                             text if isinstance(text, str) else orjson.dumps(text).decode(),
                                                             "error" in resp)))
        if texts:
            messages.append(UserMessage("\n".join(texts)))
    gen = body.get("generationConfig") or {}
    thinking = isinstance(gen.get("thinkingConfig"), dict)
    if thinking:
        _check_signatures(body["contents"])
    return ParsedRequest(model=model, system=system, messages=messages, tools=tools, blocks=blocks,
                         max_tokens=int(gen.get("maxOutputTokens") or 8192), thinking=thinking)


def _usage(answer: Answer, final: bool) -> dict[str, Any]:
    c = answer.cache
    u: dict[str, Any] = {"promptTokenCount": c.total_tokens, "totalTokenCount": c.total_tokens,
                         "promptTokensDetails": [{"modality": "TEXT", "tokenCount": c.total_tokens}]}
    if c.read_tokens:
        u["cachedContentTokenCount"] = c.read_tokens
        u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": c.read_tokens}]
    if final:
        u["candidatesTokenCount"] = answer.output_tokens
        u["totalTokenCount"] = c.total_tokens + answer.output_tokens
    return u


def stream(req: ParsedRequest, answer: Answer) -> list[bytes]:
    msg = answer.message
    head = {"modelVersion": req.model, "responseId": answer.id}
    out: list[bytes] = []
    text_pieces = pieces(msg.text, TEXT_PIECE)
    final_parts: list[dict[str, Any]] = []
    if msg.tool_calls:
        final_parts = [{"functionCall": {"id": c.id, "name": c.name, "args": c.arguments}} for c in msg.tool_calls]
        if answer.thinking:
            final_parts[0]["thoughtSignature"] = thought_signature(msg.tool_calls[0].name)
    elif text_pieces:
        final_parts = [{"text": text_pieces.pop()}]
        if answer.thinking:
            final_parts[0]["thoughtSignature"] = sign(SIGNATURE_KIND, "text")
    if answer.thinking:
        data = {"candidates": [{"content": {"parts": [{"text": answer.thinking, "thought": True}], "role": "model"},
                                "index": 0}], "usageMetadata": _usage(answer, False), **head}
        out.append(sse(orjson.dumps(data), crlf=True))
    for p in text_pieces:
        data = {"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}],
                "usageMetadata": _usage(answer, False), **head}
        out.append(sse(orjson.dumps(data), crlf=True))
    last = {"candidates": [{"content": {"parts": final_parts, "role": "model"},
                            "finishReason": FINISH.get(msg.stop_reason, "STOP"), "index": 0}],
            "usageMetadata": _usage(answer, True), **head}
    out.append(sse(orjson.dumps(last), crlf=True))
    return out


STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
          503: "UNAVAILABLE"}


def error_body(code: int, message: str, retry_delay_s: float | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": STATUS.get(code, "UNKNOWN")}
    if retry_delay_s is not None:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay_s:g}s"}]
    return {"error": err}


def midstream_error() -> bytes:
    return sse(orjson.dumps(error_body(503, "The model is overloaded. Please try again later.")), crlf=True)
