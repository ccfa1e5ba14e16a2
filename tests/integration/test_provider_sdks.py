"""The official SDKs against the mocks, in strict validation mode: what proves the mocks honest.

anthropic and openai build their clients with `_strict_response_validation=True` (full pydantic
validation of every streamed event) and `max_retries=0`; google-genai has no strict switch (it
validates with its pydantic types). The requests are the ones our adapters build, sent by the SDKs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

sys.path.insert(0, str(Path(__file__).parent))
from helpers.providers import SYSTEM, TOOLS, conversation_at_step_two, request  # noqa: E402

from agent_runtime.messages import UserMessage  # noqa: E402
from agent_runtime.providers import anthropic as anthropic_codec  # noqa: E402
from agent_runtime.providers import openai_chat, openai_responses  # noqa: E402
from mock_providers.server import Fault, MockConfig, MockServer  # noqa: E402


# google-genai subclasses aiohttp.ClientSession for its async transport; aiohttp warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


def test_sdk_major_versions() -> None:
    """The current major versions (research note, 2026-11): the mocks are validated against these."""
    assert anthropic.__version__.split(".")[0] == "2"
    assert openai.__version__.split(".")[0] == "3"
    assert genai.__version__.split(".")[0] == "3"


def anthropic_client(mock: MockServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=mock.url, _strict_response_validation=True,
                                    max_retries=0)


def openai_client(mock: MockServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=mock.base_url("openai"), _strict_response_validation=True,
                              max_retries=0)


async def test_anthropic_sdk_parallel_tools_thinking_and_cache_usage() -> None:
    body = anthropic_codec.build_body(request("anthropic", conversation_at_step_two(thinking="I should look.")),
                                      thinking_budget=2048)
    async with MockServer() as mock:
        client = anthropic_client(mock)
        finals = []
        for _ in range(2):
            async with client.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                              messages=body["messages"], system=body["system"], tools=body["tools"],
                                              thinking=body["thinking"]) as stream:
                finals.append(await stream.get_final_message())
        await client.close()
        headers = mock.state.requests[-1]["headers"]
    first, second = finals
    assert headers["anthropic-version"]  # 2.x sends its own version and Bearer auth; the mock takes both
    assert [b.type for b in second.content] == ["thinking", "text", "tool_use", "tool_use"]
    tool_uses = [b for b in second.content if b.type == "tool_use"]
    assert [t.name for t in tool_uses] == ["shell", "read_file"]
    assert tool_uses[1].input == {"path": "fib.py", "limit": 5}
    assert second.stop_reason == "tool_use"
    assert first.usage.cache_creation_input_tokens and not first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation is not None
    assert second.usage.output_tokens > 1


async def test_anthropic_sdk_text_and_midstream_error() -> None:
    body = anthropic_codec.build_body(request("anthropic", [UserMessage("hello")]))
    async with MockServer() as mock:
        client = anthropic_client(mock)
        async with client.messages.stream(model=body["model"], max_tokens=100, messages=body["messages"]) as stream:
            text = await stream.get_final_text()
        assert text
        mock.state.faults.append(Fault.parse("midstream_error"))
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model=body["model"], max_tokens=100, messages=body["messages"]) as stream:
                await stream.get_final_message()
        assert info.value.status_code == 200 and info.value.type == "overloaded_error"
        mock.state.faults.append(Fault.parse("overloaded"))
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=body["model"], max_tokens=100, messages=body["messages"], stream=True)
        mock.state.faults.append(Fault.parse("rate_limit:retry_after_ms=1"))
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=body["model"], max_tokens=100, messages=body["messages"], stream=True)
        await client.close()


async def test_openai_chat_sdk_parallel_tools_and_cached_tokens() -> None:
    body = openai_chat.build_body(request("openai", conversation_at_step_two()))
    async with MockServer() as mock:
        client = openai_client(mock)
        finals = []
        for _ in range(2):
            async with client.chat.completions.stream(model=body["model"], messages=body["messages"], tools=body["tools"],
                                                      stream_options={"include_usage": True},
                                                      prompt_cache_key=body["prompt_cache_key"]) as stream:
                finals.append(await stream.get_final_completion())
        mock.state.faults.append(Fault.parse("midstream_error"))
        with pytest.raises(openai.APIError):
            async with client.chat.completions.stream(model=body["model"], messages=body["messages"]) as stream:
                await stream.get_final_completion()
        mock.state.faults.append(Fault.parse("rate_limit"))
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model=body["model"], messages=body["messages"], stream=True)
        await client.close()
    first, second = finals
    calls = second.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["shell", "read_file"]  # type: ignore[union-attr]
    assert second.choices[0].finish_reason == "tool_calls"
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
    cached = second.usage.prompt_tokens_details.cached_tokens  # type: ignore[union-attr]
    assert cached and cached % 128 == 0 and cached >= 1024


async def test_openai_responses_sdk_tools_and_usage() -> None:
    body = openai_responses.build_body(request("openai-responses", conversation_at_step_two()))
    async with MockServer() as mock:
        client = openai_client(mock)
        finals = []
        for _ in range(2):
            async with client.responses.stream(model=body["model"], input=body["input"], tools=body["tools"],
                                               instructions=body["instructions"],
                                               prompt_cache_key=body["prompt_cache_key"]) as stream:
                finals.append(await stream.get_final_response())
        text_body = openai_responses.build_body(request("openai-responses", [UserMessage("hello")]))
        async with client.responses.stream(model=text_body["model"], input=text_body["input"]) as stream:
            text = await stream.get_final_response()
        await client.close()
    second = finals[1]
    calls = [o for o in second.output if o.type == "function_call"]
    assert [c.name for c in calls] == ["shell", "read_file"]
    assert second.output_text == "Checking the result."
    assert second.usage is not None and second.usage.input_tokens_details.cached_tokens >= 1024
    assert text.output_text and text.status == "completed"


def genai_client(mock: MockServer, api_version: str | None = None) -> genai.Client:
    return genai.Client(api_key="test-key", http_options=genai_types.HttpOptions(base_url=mock.url, api_version=api_version))


async def test_gemini_sdk_text_function_calls_and_cache() -> None:
    config = genai_types.GenerateContentConfig(
        system_instruction=SYSTEM,
        tools=[genai_types.Tool(function_declarations=[
            genai_types.FunctionDeclaration(name=t.name, description=t.description, parameters_json_schema=t.input_schema)
            for t in TOOLS])],
    )
    contents: list[Any] = [
        {"role": "user", "parts": [{"text": "task: write fib.py and check it"}]},
        {"role": "model", "parts": [{"function_call": {"name": "list_dir", "args": {"path": "."}}}]},
        {"role": "user", "parts": [{"function_response": {"name": "list_dir", "response": {"output": "(empty)"}}}]},
        {"role": "model", "parts": [{"function_call": {"name": "write_file", "args": {"path": "fib.py", "content": "x"}}}]},
        {"role": "user", "parts": [{"function_response": {"name": "write_file", "response": {"output": "ok"}}}]},
    ]
    async with MockServer() as mock:
        runs = []
        for version in (None, "v1beta"):  # 3.x defaults to /v1/, older code paths use /v1beta/
            client = genai_client(mock, version)
            chunks = [c async for c in await client.aio.models.generate_content_stream(
                model="gemini-2.5-flash", contents=contents, config=config)]
            runs.append(chunks)
        paths = [r["path"] for r in mock.state.requests]
        mock.state.faults.append(Fault.parse("midstream_error"))
        with pytest.raises(genai_errors.ServerError):
            async for _ in await genai_client(mock).aio.models.generate_content_stream(
                    model="gemini-2.5-flash", contents="hi"):
                pass
        mock.state.faults.append(Fault.parse("rate_limit:retry_after=3"))
        with pytest.raises(genai_errors.ClientError) as info:
            async for _ in await genai_client(mock).aio.models.generate_content_stream(
                    model="gemini-2.5-flash", contents="hi"):
                pass
    assert info.value.code == 429
    assert paths == ["/v1/models/gemini-2.5-flash:streamGenerateContent",
                     "/v1beta/models/gemini-2.5-flash:streamGenerateContent"]
    first, second = runs
    calls = [p.function_call for c in second for p in (c.candidates[0].content.parts or []) if p.function_call]  # type: ignore[index,union-attr]
    assert [c.name for c in calls] == ["shell", "read_file"]
    assert second[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP  # type: ignore[index]
    assert first[-1].usage_metadata.cached_content_token_count in (None, 0)  # type: ignore[union-attr]
    assert second[-1].usage_metadata.cached_content_token_count > 1024  # type: ignore[union-attr,operator]


async def test_the_mock_rejects_what_the_api_rejects() -> None:
    async with MockServer(MockConfig()) as mock:
        client = anthropic_client(mock)
        too_many = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(model="claude-sonnet-5", max_tokens=10, stream=True,
                                         messages=[{"role": "user", "content": too_many}])  # type: ignore[misc]
        wrong = anthropic.AsyncAnthropic(api_key="sk-wrong", base_url=mock.url, max_retries=0)
        mock.state.config = MockConfig(api_key="sk-right")
        with pytest.raises(anthropic.AuthenticationError):
            await wrong.messages.create(model="claude-sonnet-5", max_tokens=10, stream=True,
                                        messages=[{"role": "user", "content": "x"}])
        await client.close()
        await wrong.close()


# -- reasoning state, as the SDKs hand it back ------------------------------------------------------


async def test_anthropic_sdk_thinking_blocks_round_trip() -> None:
    """The SDK parses thinking + redacted_thinking blocks strictly; sending its own blocks back (as
    a client must) is accepted, and the same follow-up without them is the API's 400."""
    body = anthropic_codec.build_body(request("anthropic", [UserMessage("task: write fib.py and check it")]),
                                      thinking_budget=2048)
    async with MockServer(MockConfig(redacted_thinking=True)) as mock:
        client = anthropic_client(mock)
        kw: dict[str, Any] = dict(model=body["model"], max_tokens=body["max_tokens"], system=body["system"],
                                  tools=body["tools"], thinking=body["thinking"])
        async with client.messages.stream(messages=body["messages"], **kw) as stream:
            first = await stream.get_final_message()
        assert [b.type for b in first.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
        call = next(b for b in first.content if b.type == "tool_use")
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "(empty)"}]}
        turn = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}
        async with client.messages.stream(messages=[*body["messages"], turn, result], **kw) as stream:
            second = await stream.get_final_message()
        without = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content
                                                    if b.type in ("text", "tool_use")]}
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(messages=[*body["messages"], without, result], stream=True, **kw)
        await client.close()
    assert second.stop_reason == "tool_use"
    assert "must start with a thinking block" in str(info.value)


async def test_openai_responses_sdk_reasoning_items_round_trip() -> None:
    body = openai_responses.build_body(request("openai-responses", [UserMessage("task: write fib.py and check it")],
                                               thinking_budget=2048))
    async with MockServer() as mock:
        client = openai_client(mock)
        kw: dict[str, Any] = dict(model=body["model"], tools=body["tools"], instructions=body["instructions"],
                                  reasoning=body["reasoning"], include=body["include"], store=False)
        async with client.responses.stream(input=body["input"], **kw) as stream:
            first = await stream.get_final_response()
        reasoning = first.output[0]
        assert reasoning.type == "reasoning" and reasoning.encrypted_content
        assert reasoning.summary[0].text == MockConfig().thinking_text
        call = next(o for o in first.output if o.type == "function_call")
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "(empty)"}
        items = [o.model_dump(exclude_none=True) for o in first.output]
        async with client.responses.stream(input=[*body["input"], *items, output], **kw) as stream:
            second = await stream.get_final_response()
        bare = [i for i in items if i["type"] != "reasoning"]
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(input=[*body["input"], *bare, output], stream=True, **kw)
        await client.close()
    assert [o.type for o in second.output][0] == "reasoning"


async def test_gemini_sdk_thought_signatures_round_trip() -> None:
    config = genai_types.GenerateContentConfig(
        system_instruction=SYSTEM,
        thinking_config=genai_types.ThinkingConfig(thinking_budget=2048, include_thoughts=True),
        tools=[genai_types.Tool(function_declarations=[
            genai_types.FunctionDeclaration(name=t.name, description=t.description, parameters_json_schema=t.input_schema)
            for t in TOOLS])],
    )
    user: Any = {"role": "user", "parts": [{"text": "task: write fib.py and check it"}]}
    async with MockServer() as mock:
        client = genai_client(mock)
        chunks = [c async for c in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=[user], config=config)]
        parts = [p for c in chunks for p in (c.candidates[0].content.parts or [])]  # type: ignore[index,union-attr]
        thought = [p for p in parts if p.thought]
        call_parts = [p for p in parts if p.function_call]
        assert thought and thought[0].text == MockConfig().thinking_text
        assert call_parts and call_parts[0].thought_signature  # bytes, decoded from base64 by the SDK
        model_turn = genai_types.Content(role="model", parts=call_parts)
        fc = call_parts[0].function_call
        response = {"role": "user", "parts": [{"function_response": {"id": fc.id, "name": fc.name,  # type: ignore[union-attr]
                                                                     "response": {"output": "(empty)"}}}]}
        again = [c async for c in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=[user, model_turn, response], config=config)]
        unsigned = genai_types.Content(role="model", parts=[genai_types.Part(function_call=fc)])
        with pytest.raises(genai_errors.ClientError) as info:
            async for _ in await client.aio.models.generate_content_stream(
                    model="gemini-2.5-flash", contents=[user, unsigned, response], config=config):
                pass
    assert again[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP  # type: ignore[index]
    assert info.value.code == 400 and "thought_signature" in str(info.value)
