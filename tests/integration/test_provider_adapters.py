"""Each adapter against its mock over real HTTP: text, parallel fragmented tool calls, thinking,
usage with cache fields, TTFT that follows the uncached tokens, and every injected fault."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.providers import collect, conversation_at_step_two, mock_and_adapters, request  # noqa: E402

from agent_runtime.messages import AssistantMessage, ToolCall, UserMessage  # noqa: E402
from agent_runtime.providers.simulated import CHAT_LINES
from agent_runtime.providers.base import (
    MessageCompleted,
    ModelRequest,
    ProviderError,
    TextDelta,
    ThinkingDelta,
    ToolCallArgsDelta,
    ToolCallCompleted,
    ToolCallStarted,
)
from agent_runtime.providers.http import HttpProvider, ProviderSession, Secret
from agent_runtime.providers.registry import HTTP_PROVIDERS, ProviderSettings, codec_for
from mock_providers.server import Fault, MockConfig

APIS = list(HTTP_PROVIDERS)


@pytest.mark.parametrize("api", APIS)
async def test_text_message(api: str) -> None:
    async with mock_and_adapters() as (mock, adapters):
        req = dataclasses.replace(request(api, [UserMessage("hello there")]), tools=())
        events = await collect(adapters[api], req)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text and len([e for e in events if isinstance(e, TextDelta)]) > 1  # streamed in pieces
    assert isinstance(events[-1], MessageCompleted) and events[-1].stop_reason == "end_turn"
    assert not any(isinstance(e, (ToolCallStarted, ToolCallCompleted)) for e in events)
    assert text in CHAT_LINES  # what the simulated model says without tools, back through the wire


@pytest.mark.parametrize("api", APIS)
async def test_parallel_tool_calls_with_fragmented_arguments(api: str) -> None:
    async with mock_and_adapters() as (mock, adapters):
        events = await collect(adapters[api], request(api, conversation_at_step_two()))
        sent = mock.state.requests[-1]
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    completed = [e for e in events if isinstance(e, ToolCallCompleted)]
    assert [e.call.name for e in completed] == ["shell", "read_file"]
    assert [e.index for e in started] == [0, 1] and [e.index for e in completed] == [0, 1]
    for c in completed:
        fragments = [e.fragment for e in events if isinstance(e, ToolCallArgsDelta) and e.index == c.index]
        if api != "gemini":  # Gemini sends a call whole, in one part
            assert len(fragments) > 1
        assert orjson.loads("".join(fragments)) == c.call.arguments
        # complete the moment its block is complete: before the message ends
        assert events.index(c) < len(events) - 1
    assert completed[1].call.arguments == {"path": "fib.py", "limit": 5}
    assert isinstance(events[-1], MessageCompleted) and events[-1].stop_reason == "tool_use"
    # the conversation went over the wire and back: the mock saw both earlier tool results
    assert "wrote 9 bytes" in str(sent["body"]) and "(empty)" in str(sent["body"])


async def test_anthropic_thinking_blocks() -> None:
    async with mock_and_adapters(thinking_budget=2048) as (mock, adapters):
        events = await collect(adapters["anthropic"], request("anthropic", [UserMessage("task: write primes")]))
        body = mock.state.requests[-1]["body"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    assert thinking == MockConfig().thinking_text
    assert events.index(next(e for e in events if isinstance(e, ThinkingDelta))) < events.index(
        next(e for e in events if isinstance(e, TextDelta)))


@pytest.mark.parametrize("api", APIS)
async def test_usage_with_cache_fields_and_ttft_following_uncached_tokens(api: str) -> None:
    config = MockConfig(ttft_per_uncached_token_s=1e-6)
    async with mock_and_adapters(config) as (mock, adapters):
        req = request(api, [UserMessage("task: write sort")])
        first = (await collect(adapters[api], req))[-1]
        first_log = dict(mock.state.requests[-1])
        second = (await collect(adapters[api], req))[-1]
        second_log = dict(mock.state.requests[-1])
    assert isinstance(first, MessageCompleted) and isinstance(second, MessageCompleted)
    u1, u2 = first.usage, second.usage
    prompt = first_log["prompt_tokens"]
    assert prompt > 1024
    # input + cache read + cache write is the whole prompt, for every provider
    assert u1.input_tokens + u1.cache_read_tokens + u1.cache_write_tokens == prompt
    assert u2.input_tokens + u2.cache_read_tokens + u2.cache_write_tokens == prompt
    assert u1.cache_read_tokens == 0 and u2.cache_read_tokens > 0 and u1.output_tokens > 0
    if api == "anthropic":
        assert u1.cache_write_tokens == prompt and u2.cache_read_tokens == prompt  # the rolling breakpoint
    if api.startswith("openai"):
        assert u2.cache_read_tokens % 128 == 0
    assert second_log["ttft_s"] < first_log["ttft_s"]


FAULTS = [
    ("rate_limit:retry_after_ms=5", "http", 0.005),
    ("rate_limit:retry_after=0.5", "http", 0.5),
    ("overloaded", "http", None),
    ("server_error", "http", None),
    ("midstream_error", "stream", None),
    ("cut", "stream", None),
    ("malformed", "stream", None),
]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(("fault", "where", "hint"), FAULTS)
async def test_injected_faults(api: str, fault: str, where: str, hint: float | None) -> None:
    async with mock_and_adapters() as (mock, adapters):
        mock.state.faults.append(Fault.parse(fault))
        seen = []
        with pytest.raises(ProviderError) as info:
            async for event in adapters[api].stream(request(api, [UserMessage("task: write fib")])):
                seen.append(event)
        # the next call (no fault queued) works on the same pooled session
        after = await collect(adapters[api], request(api, [UserMessage("task: write fib")]))
    err = info.value
    assert err.retryable, err
    assert isinstance(after[-1], MessageCompleted)
    if where == "http":
        assert not seen and err.status in (429, 500, 503, 529)
        if fault.startswith("overloaded"):
            assert err.status == (529 if api == "anthropic" else 503)
        if hint is not None and not (api == "gemini" and "retry_after_ms" in fault):
            assert err.retry_after_s == pytest.approx(hint)
    else:
        assert err.status == 200
        assert seen and not any(isinstance(e, MessageCompleted) for e in seen)
        expected = {"cut": "stream_cut", "malformed": "malformed_stream"}.get(fault.split(":")[0])
        if expected:
            assert err.code == expected


@pytest.mark.parametrize("api", APIS)
async def test_slow_stream_still_completes(api: str) -> None:
    async with mock_and_adapters() as (mock, adapters):
        mock.state.faults.append(Fault.parse("slow:delay=0.002"))
        events = await collect(adapters[api], request(api, [UserMessage("task: write fib")]))
    assert isinstance(events[-1], MessageCompleted)


@pytest.mark.parametrize("api", APIS)
async def test_missing_key_is_a_non_retryable_401(api: str) -> None:
    async with mock_and_adapters() as (mock, _):
        session = ProviderSession()
        bare = HttpProvider(codec_for(api, ProviderSettings()), session, {None: mock.base_url(api)}, Secret(""))
        try:
            with pytest.raises(ProviderError) as info:
                await collect(bare, request(api, [UserMessage("hi")]))
        finally:
            await session.aclose()
    assert info.value.status == 401 and not info.value.retryable
    assert "sk-" not in str(info.value)


async def test_connection_refused_is_retryable() -> None:
    session = ProviderSession()
    bare = HttpProvider(codec_for("openai", ProviderSettings()), session, {None: "http://127.0.0.1:9/v1"}, Secret("k"))
    try:
        with pytest.raises(ProviderError) as info:
            await collect(bare, request("openai", [UserMessage("hi")]))
    finally:
        await session.aclose()
    assert info.value.retryable and info.value.code == "connection_error"


async def test_region_selects_the_base_url() -> None:
    async with mock_and_adapters() as (mock, _):
        session = ProviderSession()
        adapter = HttpProvider(codec_for("anthropic", ProviderSettings()), session,
                               {None: "http://127.0.0.1:9", "eu": mock.base_url("anthropic")}, Secret("k"))
        try:
            events = await collect(adapter, request("anthropic", [UserMessage("hi")], region="eu"))
        finally:
            await session.aclose()
    assert isinstance(events[-1], MessageCompleted)


async def test_a_connection_lost_after_the_terminator_keeps_the_complete_message() -> None:
    # The whole message arrived (Anthropic `message_stop`) and then the connection broke before the
    # HTTP body was properly ended (a proxy dropping the last chunk): that message is complete.
    # Retrying it would throw it away, ask the model again and re-run its early tool calls.
    import aiohttp.web

    from agent_runtime.messages import ToolCall

    data = (Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "anthropic_tool_use.sse").read_bytes()

    async def handler(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        await request.read()
        resp = aiohttp.web.StreamResponse(headers={"content-type": "text/event-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(data)
        assert request.transport is not None
        request.transport.close()  # no final chunk
        return resp

    app = aiohttp.web.Application()
    app.router.add_post("/v1/messages", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = ProviderSession()
    adapter = HttpProvider(codec_for("anthropic", ProviderSettings()), session, {None: f"http://127.0.0.1:{port}"}, Secret("k"))
    try:
        events = await collect(adapter, request("anthropic", [UserMessage("hi")]))
    finally:
        await session.aclose()
        await runner.cleanup()
    assert [e.call for e in events if isinstance(e, ToolCallCompleted)] == [
        ToolCall("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", {"location": "Paris"})]
    assert isinstance(events[-1], MessageCompleted) and events[-1].stop_reason == "tool_use"


class EchoModel:
    """A plugged-in mock model: answers with what it was asked, and records the requests."""

    def __init__(self) -> None:
        self.seen: list[ModelRequest] = []

    def plan(self, request: ModelRequest) -> AssistantMessage:
        self.seen.append(request)
        last = request.messages[-1]
        said = last.text if isinstance(last, UserMessage) else "?"
        return AssistantMessage(text=f"echo: {said}", tool_calls=(ToolCall("call_echo", "read_file", {"path": "x"}),),
                                stop_reason="tool_use")


@pytest.mark.parametrize("api", APIS)
async def test_a_plugged_in_model_answers_behind_every_route(api: str) -> None:
    async with mock_and_adapters() as (mock, adapters):
        model = EchoModel()
        mock.state.model = model
        events = await collect(adapters[api], request(api, [UserMessage("ping 7")]))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: ping 7"
    calls = [e.call for e in events if isinstance(e, ToolCallCompleted)]
    assert [(c.name, c.arguments) for c in calls] == [("read_file", {"path": "x"})]
    assert len(model.seen) == 1 and model.seen[0].messages[-1] == UserMessage("ping 7")
