"""A message cut by the output limit in the middle of a tool call's arguments.

Real providers end such a stream normally, with a `max_tokens` stop (Anthropic `max_tokens`,
OpenAI `length`, Responses `incomplete/max_output_tokens`), after closing the unfinished call whose
arguments are not valid JSON. That is a `max_tokens` message — the calls complete before the cut
are kept (and may have started early), the cut call is dropped — not a malformed stream to retry:
asking again with the same limit cuts the same call again, and every retry would re-run the early
calls. A call whose JSON is broken in a message that did finish stays a retryable error.
"""

from __future__ import annotations

import json

import pytest

from agent_runtime.messages import ToolCall
from agent_runtime.native import SseParser
from agent_runtime.providers.anthropic import AnthropicDecoder
from agent_runtime.providers.base import MessageCompleted, ProviderError, StreamEvent, ToolCallCompleted
from agent_runtime.providers.openai_chat import OpenAIChatDecoder
from agent_runtime.providers.openai_responses import OpenAIResponsesDecoder
from agent_runtime.providers.wire import StreamDecoder


def replay(data: bytes, decoder: StreamDecoder) -> list[StreamEvent]:
    parser = SseParser()
    out: list[StreamEvent] = []
    for sse in parser.feed(data):
        out.extend(decoder.feed(sse))
    parser.finish()
    out.extend(decoder.finish())
    return out


def sse(event: str | None, data: dict[str, object] | str) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


def anthropic_stream(stop: str) -> bytes:
    parts = [
        sse("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "content": [], "model": "m", "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        sse("content_block_start", {"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "write_file", "input": {}}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"path": "a.txt", "content": "x"}'}}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse("content_block_start", {"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_2", "name": "write_file", "input": {}}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"path": "b.txt", "content": "a very long fi'}}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 4096}}),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(parts)


def completed(events: list[StreamEvent]) -> list[ToolCall]:
    return [e.call for e in events if isinstance(e, ToolCallCompleted)]


@pytest.mark.parametrize(("wire", "stop"), [("max_tokens", "max_tokens"), ("refusal", "content_filter")])
def test_anthropic_max_tokens_inside_a_tool_call_is_a_max_tokens_message(wire: str, stop: str) -> None:
    events = replay(anthropic_stream(wire), AnthropicDecoder())
    assert completed(events) == [ToolCall("toolu_1", "write_file", {"path": "a.txt", "content": "x"})]
    assert isinstance(events[-1], MessageCompleted) and events[-1].stop_reason == stop


def test_anthropic_broken_arguments_in_a_finished_message_stay_a_retryable_error() -> None:
    with pytest.raises(ProviderError) as err:
        replay(anthropic_stream("tool_use"), AnthropicDecoder())
    assert err.value.retryable and err.value.code == "malformed_tool_call"


def openai_chat_stream(finish: str) -> bytes:
    def chunk(delta: dict[str, object], finish_reason: str | None = None) -> bytes:
        return sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    parts = [
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
              "function": {"name": "write_file", "arguments": '{"path":"a.txt","content":"x"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
              "function": {"name": "write_file", "arguments": '{"path":"b.txt","content":"a very long fi'}}]}),
        chunk({}, finish),
        sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 4096, "total_tokens": 4106}}),
        sse(None, "[DONE]"),
    ]
    return b"".join(parts)


@pytest.mark.parametrize(("wire", "stop"), [("length", "max_tokens"), ("content_filter", "content_filter")])
def test_openai_chat_length_inside_a_tool_call_is_a_max_tokens_message(wire: str, stop: str) -> None:
    events = replay(openai_chat_stream(wire), OpenAIChatDecoder())
    assert completed(events) == [ToolCall("call_1", "write_file", {"path": "a.txt", "content": "x"})]
    assert isinstance(events[-1], MessageCompleted) and events[-1].stop_reason == stop


def test_openai_chat_broken_arguments_in_a_finished_message_stay_a_retryable_error() -> None:
    with pytest.raises(ProviderError) as err:
        replay(openai_chat_stream("tool_calls"), OpenAIChatDecoder())
    assert err.value.retryable and err.value.code == "malformed_tool_call"


def responses_stream(final: str) -> bytes:
    def ev(data: dict[str, object]) -> bytes:
        return sse(str(data["type"]), data)

    good = '{"path":"a.txt","content":"x"}'
    cut = '{"path":"b.txt","content":"a very long fi'
    parts = [
        ev({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "write_file", "arguments": ""}}),
        ev({"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc_1", "delta": good}),
        ev({"type": "response.function_call_arguments.done", "output_index": 0, "item_id": "fc_1", "arguments": good}),
        ev({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "write_file", "arguments": ""}}),
        ev({"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_2", "delta": cut}),
        ev({"type": "response.output_item.done", "output_index": 1,
            "item": {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "write_file", "arguments": cut,
                     "status": "incomplete"}}),
    ]
    usage = {"input_tokens": 10, "output_tokens": 4096, "total_tokens": 4106}
    if final == "incomplete":
        parts.append(ev({"type": "response.incomplete", "response": {"id": "r1", "status": "incomplete",
                         "incomplete_details": {"reason": "max_output_tokens"}, "usage": usage}}))
    else:
        parts.append(ev({"type": "response.completed", "response": {"id": "r1", "status": "completed", "usage": usage}}))
    return b"".join(parts)


def test_openai_responses_incomplete_inside_a_tool_call_is_a_max_tokens_message() -> None:
    events = replay(responses_stream("incomplete"), OpenAIResponsesDecoder())
    assert completed(events) == [ToolCall("call_1", "write_file", {"path": "a.txt", "content": "x"})]
    assert isinstance(events[-1], MessageCompleted) and events[-1].stop_reason == "max_tokens"


def test_openai_responses_broken_arguments_in_a_completed_response_stay_a_retryable_error() -> None:
    with pytest.raises(ProviderError) as err:
        replay(responses_stream("completed"), OpenAIResponsesDecoder())
    assert err.value.retryable and err.value.code == "malformed_tool_call"
