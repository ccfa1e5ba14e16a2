"""Request bodies built with the fragment cache are byte-for-byte the JSON of the plain build, call
after call as the history grows (cached messages are reused, the moving breakpoint is not)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResult, ToolResultMessage, UserMessage
from agent_runtime.providers import anthropic, gemini, openai_chat, openai_responses
from agent_runtime.providers.base import ModelRequest
from agent_runtime.providers.wire import FragmentCache
from agent_runtime.tools.base import ToolSpec

BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "anthropic": anthropic.build_body, "openai": openai_chat.build_body,
    "openai-responses": openai_responses.build_body, "gemini": gemini.build_body,
}
TOOLS = [ToolSpec("shell", "run", {"type": "object"})]


def history() -> list[Message]:
    out: list[Message] = []
    for i in range(6):
        out.append(UserMessage(f"task {i}"))
        out.append(AssistantMessage("", (ToolCall(f"c{i}a", "shell", {"command": "ls"}),
                                         ToolCall(f"c{i}b", "shell", {"command": "pwd"})), "tool_use"))
        out.append(ToolResultMessage(ToolResult(f"c{i}a", "shell", "a\n")))
        out.append(ToolResultMessage(ToolResult(f"c{i}b", "shell", "err", is_error=True)))
        out.append(UserMessage("and also this"))  # a message that joined mid-turn: same user turn
        out.append(AssistantMessage("", (), "end_turn"))  # an empty message (interrupted before any text)
        out.append(AssistantMessage(f"done {i}", (), "end_turn"))
    return out


@pytest.mark.parametrize("api", list(BUILDERS))
def test_cached_build_equals_plain_build_as_history_grows(api: str) -> None:
    build = BUILDERS[api]
    cache = FragmentCache()
    full = history()
    for n in range(1, len(full) + 1):
        req = ModelRequest(model="m", system="sys", messages=full[:n], tools=TOOLS, max_tokens=10, agent_key="a")
        plain = build(req)
        cached = orjson.loads(orjson.dumps(build(req, cache=cache)))
        assert cached == plain, n
    assert 0 < len(cache) <= len(full)


def test_anthropic_breakpoint_moves_with_the_last_block() -> None:
    cache = FragmentCache()
    msgs = history()[:4]
    body = orjson.loads(orjson.dumps(anthropic.build_body(
        ModelRequest(model="m", system="s", messages=msgs, tools=(), max_tokens=1, agent_key="a"), cache=cache)))
    marked = [b for m in body["messages"] for b in m["content"] if "cache_control" in b]
    assert marked == [body["messages"][-1]["content"][-1]]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_empty_assistant_messages_are_left_out() -> None:
    msgs: list[Message] = [UserMessage("a"), AssistantMessage("", (), "end_turn"), UserMessage("b")]
    req = ModelRequest(model="m", system="", messages=msgs, tools=(), max_tokens=1, agent_key="a")
    assert [c["role"] for c in gemini.build_body(req)["contents"]] == ["user"]
    assert [c["role"] for c in anthropic.build_body(req)["messages"]] == ["user"]


def test_the_cache_is_bounded_and_keyed_by_identity() -> None:
    cache = FragmentCache(capacity=3)
    msgs = [UserMessage("same") for _ in range(5)]
    for m in msgs:
        cache.get(m, lambda m=m: {"t": m.text})  # type: ignore[misc]
    assert len(cache) == 3


CODECS: dict[str, Callable[[], Any]] = {
    "anthropic": anthropic.AnthropicCodec, "openai": openai_chat.OpenAIChatCodec,
    "openai-responses": openai_responses.OpenAIResponsesCodec, "gemini": gemini.GeminiCodec,
}


@pytest.mark.parametrize("api", list(CODECS))
def test_a_request_never_shows_its_api_key(api: str) -> None:
    # An HttpRequest ends up in logs, tracebacks (locals) and assertion messages: its repr and str
    # carry the URL and the header names, never the key.
    key = "sk-live-DO-NOT-LEAK-0123456789"
    req = CODECS[api]().encode(
        ModelRequest(model="m", system="s", messages=[UserMessage("hi")], tools=TOOLS, max_tokens=1, agent_key="a"),
        "https://api.example", key)
    assert any(key in v for v in req.headers.values())  # it is sent ...
    for shown in (repr(req), str(req), f"{req}", f"{req!r}", repr([req]), repr({"r": req})):
        assert key not in shown and key[:12] not in shown  # ... and never shown
        assert req.url in shown and "content-type" in shown
