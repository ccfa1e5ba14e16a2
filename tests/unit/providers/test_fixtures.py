"""Recorded provider streams, byte for byte, through the native SSE parser and each codec's decoder.

Every fixture is also replayed split at every possible byte boundary pattern we pick (1-byte feeds and
random splits): the decoded events must not depend on how the network cut the bytes.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent_runtime.messages import ProviderState, ToolCall, Usage
from agent_runtime.native import SseParser
from agent_runtime.providers.anthropic import AnthropicDecoder
from agent_runtime.providers.base import (
    MessageCompleted,
    ProviderError,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallArgsDelta,
    ToolCallCompleted,
    ToolCallStarted,
    UsageReported,
)
from agent_runtime.providers.gemini import GeminiDecoder
from agent_runtime.providers.openai_chat import OpenAIChatDecoder
from agent_runtime.providers.wire import StreamDecoder

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers"


def replay(data: bytes, decoder: StreamDecoder, splits: list[int] | None = None) -> list[StreamEvent]:
    parser = SseParser()
    out: list[StreamEvent] = []
    cuts = [0, *(splits or []), len(data)]
    for a, b in zip(cuts, cuts[1:], strict=False):
        for sse in parser.feed(data[a:b]):
            out.extend(decoder.feed(sse))
    parser.finish()
    out.extend(decoder.finish())
    return out


def split_patterns(data: bytes) -> list[list[int] | None]:
    rng = random.Random(len(data))
    return [None, list(range(1, len(data))), sorted(rng.sample(range(1, len(data)), 25))]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_anthropic_tool_use_capture() -> None:
    data = (FIXTURES / "anthropic_tool_use.sse").read_bytes()
    for splits in split_patterns(data):
        events = replay(data, AnthropicDecoder(), splits)
        assert text_of(events) == "I'll check the current weather in Paris for you."
        started = [e for e in events if isinstance(e, ToolCallStarted)]
        assert started == [ToolCallStarted(0, "toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather")]
        fragments = "".join(e.fragment for e in events if isinstance(e, ToolCallArgsDelta))
        assert fragments == '{"location": "Paris"}'
        completed = [e for e in events if isinstance(e, ToolCallCompleted)]
        assert completed == [ToolCallCompleted(0, ToolCall("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather",
                                                           {"location": "Paris"}))]
        # The call is complete at its content_block_stop, before message_delta/message_stop.
        assert events[events.index(completed[0]) + 1:] == [
            UsageReported(Usage(input_tokens=377, output_tokens=65)),  # message_delta's cumulative usage
            MessageCompleted("tool_use", Usage(input_tokens=377, output_tokens=65))]
        # the prompt's usage is known (and billed) from message_start on
        assert events[0] == UsageReported(Usage(input_tokens=377, output_tokens=1))


def test_anthropic_thinking_capture_wrapped_in_a_message() -> None:
    start = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
             b'"role":"assistant","model":"claude-sonnet-5","content":[],"stop_reason":null,"stop_sequence":null,'
             b'"usage":{"input_tokens":10,"cache_creation_input_tokens":2048,"cache_read_input_tokens":4096,'
             b'"output_tokens":1}}}\n\n')
    end = (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
           b'"usage":{"output_tokens":30}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')
    data = start + (FIXTURES / "anthropic_thinking_blocks.sse").read_bytes() + end
    events = replay(data, AnthropicDecoder())
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    assert thinking.startswith("Let me solve this step by step:\n\n1. First break down 27 * 453")
    assert text_of(events) == ""
    # the signed block is kept, whole, for the next call
    block = {"signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds...", "thinking": thinking, "type": "thinking"}
    state = ProviderState("anthropic", {"blocks": [block]})
    assert events[-1] == MessageCompleted("end_turn", Usage(10, 30, cache_read_tokens=4096, cache_write_tokens=2048), state)


def test_openai_chat_tool_call_recording() -> None:
    data = (FIXTURES / "openai_chat_tool_call.sse").read_bytes()
    for splits in split_patterns(data):
        events = replay(data, OpenAIChatDecoder(), splits)
        assert events[0] == ToolCallStarted(0, "call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather")
        assert "".join(e.fragment for e in events if isinstance(e, ToolCallArgsDelta)) == '{"city":"New York City"}'
        assert ToolCallCompleted(0, ToolCall("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", {"city": "New York City"})) in events
        assert events[-1] == MessageCompleted("tool_use", Usage(input_tokens=44, output_tokens=16))


def test_gemini_crlf_chunks() -> None:
    data = (FIXTURES / "gemini_text_function_call.sse").read_bytes()
    assert b"\r\n\r\n" in data
    for splits in split_patterns(data):
        events = replay(data, GeminiDecoder(), splits)
        assert text_of(events) == "Hello"
        completed = [e for e in events if isinstance(e, ToolCallCompleted)]
        assert [c.call.name for c in completed] == ["get_weather"]
        assert completed[0].call.arguments == {"city": "Paris"}
        # promptTokenCount includes the cached tokens; thoughts count as output.
        # the call's thoughtSignature is kept for the next call, by call id
        state = ProviderState("gemini", {"calls": {completed[0].call.id: "CiQB"}})
        assert events[-1] == MessageCompleted("tool_use", Usage(input_tokens=52, output_tokens=50, cache_read_tokens=2048),
                                              state)


@pytest.mark.parametrize("decoder", [AnthropicDecoder, OpenAIChatDecoder, GeminiDecoder])
def test_every_cut_of_a_recording_is_an_error_or_the_whole_message(decoder: type) -> None:
    """Cutting a stream anywhere never yields a completed message with less than the whole content."""
    name = {AnthropicDecoder: "anthropic_tool_use.sse", OpenAIChatDecoder: "openai_chat_tool_call.sse",
            GeminiDecoder: "gemini_text_function_call.sse"}[decoder]
    data = (FIXTURES / name).read_bytes()
    full = replay(data, decoder())
    for cut in range(0, len(data), 7):
        try:
            events = replay(data[:cut], decoder())
        except ProviderError as exc:
            assert exc.retryable and exc.code in ("stream_cut", "malformed_stream")
            continue
        assert events == full  # only a cut in trailing bytes after the terminator can succeed
