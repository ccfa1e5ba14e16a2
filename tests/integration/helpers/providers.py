"""Shared by the provider tests: a mock server plus one real adapter per API over one real session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from agent_runtime.agent.actor import AgentActor
from agent_runtime.agent.mail import UserMail
from agent_runtime.messages import (
    AssistantMessage,
    Message,
    ProviderState,
    ToolCall,
    ToolResult,
    ToolResultMessage,
    UserMessage,
)
from agent_runtime.providers.base import ModelRequest, Provider, StreamEvent
from agent_runtime.providers.http import HttpProvider, ProviderSession, Secret
from agent_runtime.providers.registry import HTTP_PROVIDERS, ProviderSettings, codec_for
from agent_runtime.tools.base import ToolSpec
from mock_providers.anthropic import thinking_signature
from mock_providers.server import MockConfig, MockServer

MODEL = {"anthropic": "claude-sonnet-5", "openai": "gpt-4.1-mini", "openai-responses": "gpt-4.1-mini",
         "gemini": "gemini-2.5-flash", "simulated": "sim-coder-1"}
TOOLS = [ToolSpec(n, f"the {n} tool", {"type": "object", "properties": {"path": {"type": "string"}}})
         for n in ("shell", "read_file", "write_file", "list_dir")]
SYSTEM = "You are a careful coding agent. " + "Follow the workspace rules closely. " * 200


def request(provider: str, messages: list[Message], agent_key: str = "default/a1", **kw: object) -> ModelRequest:
    return ModelRequest(model=MODEL[provider], system=SYSTEM, messages=messages, tools=TOOLS, max_tokens=1024,
                        agent_key=agent_key, provider=provider, **kw)  # type: ignore[arg-type]


def conversation_at_step_two(thinking: str | None = None) -> list[Message]:
    """A conversation after which the simulated model asks for two tool calls in parallel. With
    `thinking`, its assistant turns carry Anthropic thinking blocks the mock signed (what a
    conversation held with thinking on has, and what the mock requires back)."""
    state = None
    if thinking is not None:
        state = ProviderState.of("anthropic", {"blocks": [
            {"type": "thinking", "thinking": thinking, "signature": thinking_signature(thinking)}]})
    return [
        UserMessage("task: write fib.py and check it"),
        AssistantMessage("Looking first.", (ToolCall("call_0_0", "list_dir", {"path": "."}),), "tool_use",
                         provider_state=state),
        ToolResultMessage(ToolResult("call_0_0", "list_dir", "(empty)")),
        AssistantMessage("Writing fib.py.", (ToolCall("call_0_1", "write_file", {"path": "fib.py", "content": "print(1)\n"}),),
                         "tool_use", provider_state=state),
        ToolResultMessage(ToolResult("call_0_1", "write_file", "wrote 9 bytes")),
    ]


@contextlib.asynccontextmanager
async def mock_and_adapters(config: MockConfig | None = None, thinking_budget: int | None = None
                            ) -> AsyncIterator[tuple[MockServer, dict[str, Provider]]]:
    async with MockServer(config or MockConfig()) as mock:
        session = ProviderSession()
        settings = ProviderSettings(anthropic_thinking_budget=thinking_budget)
        adapters: dict[str, Provider] = {
            name: HttpProvider(codec_for(name, settings), session, {None: mock.base_url(name)}, Secret("sk-test"))
            for name in HTTP_PROVIDERS
        }
        try:
            yield mock, adapters
        finally:
            await session.aclose()


async def collect(provider: Provider, req: ModelRequest) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    stream = provider.stream(req)
    try:
        async for event in stream:
            out.append(event)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return out


async def run_turn(actor: AgentActor, text: str, client_id: str, turns: int) -> None:
    """Send `text` to `actor` and wait until it has finished `turns` turns."""
    reply: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
    actor.submit(UserMail(client_id, text, reply))
    await reply
    for _ in range(4000):
        if actor.state.turns >= turns and not actor.state.running:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"turn did not end: {actor.state.snapshot()}")
