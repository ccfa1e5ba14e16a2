"""The streaming contract every provider keeps: the in-process simulated model and each HTTP adapter
(against its mock). The actor and the tool-execution path rely on exactly these rules."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers.providers import collect, conversation_at_step_two, mock_and_adapters, request  # noqa: E402

from agent_runtime.messages import AssistantMessage, Message, ToolCall, ToolResult, ToolResultMessage, UserMessage  # noqa: E402
from agent_runtime.providers.base import (  # noqa: E402
    MessageCompleted,
    Provider,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallArgsDelta,
    ToolCallCompleted,
    ToolCallStarted,
)
from agent_runtime.providers.registry import HTTP_PROVIDERS  # noqa: E402
from agent_runtime.providers.simulated import SimulatedProvider  # noqa: E402

PROVIDERS = ["simulated", *HTTP_PROVIDERS]

CONVERSATIONS: dict[str, list[Message]] = {
    "first_step": [UserMessage("task: write primes.py")],
    "second_step": [
        UserMessage("task: write primes.py"),
        AssistantMessage("Looking.", (ToolCall("c0", "list_dir", {"path": "."}),), "tool_use"),
        ToolResultMessage(ToolResult("c0", "list_dir", "README.md\n")),
    ],
    "parallel_calls": conversation_at_step_two(),
    "answer": [*conversation_at_step_two(),
               AssistantMessage("Checking.", (ToolCall("c9", "shell", {"command": "wc -l fib.py"}),), "tool_use"),
               ToolResultMessage(ToolResult("c9", "shell", "1 fib.py\n"))],
}


@pytest.fixture
async def providers() -> AsyncIterator[dict[str, Provider]]:
    async with mock_and_adapters() as (_, adapters):
        yield {"simulated": SimulatedProvider(), **adapters}


def check_contract(events: list[StreamEvent]) -> None:
    completed_msgs = [e for e in events if isinstance(e, MessageCompleted)]
    assert len(completed_msgs) == 1 and events[-1] is completed_msgs[0], "exactly one MessageCompleted, last"
    started: dict[int, ToolCallStarted] = {}
    fragments: dict[int, list[str]] = {}
    done: dict[int, ToolCallCompleted] = {}
    for e in events:
        if isinstance(e, ToolCallStarted):
            assert e.index not in started and e.index == len(started), "indices 0, 1, 2... in start order"
            started[e.index] = e
            fragments[e.index] = []
        elif isinstance(e, ToolCallArgsDelta):
            assert e.index in started and e.index not in done, "fragments between start and completion"
            fragments[e.index].append(e.fragment)
        elif isinstance(e, ToolCallCompleted):
            assert e.index in started and e.index not in done, "completed once, after its start"
            done[e.index] = e
            assert (e.call.id, e.call.name) == (started[e.index].id, started[e.index].name)
            assert orjson.loads("".join(fragments[e.index]) or "{}") == e.call.arguments
        elif isinstance(e, (TextDelta, ThinkingDelta)):
            assert e.text, "no empty deltas"
    assert set(done) == set(started), "every started call completes before the message does"
    final = completed_msgs[0]
    assert (final.stop_reason == "tool_use") == bool(done)
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
async def test_stream_contract(providers: dict[str, Provider], provider: str, conversation: str) -> None:
    req = request(provider, CONVERSATIONS[conversation])
    events = await collect(providers[provider], req)
    check_contract(events)
    calls = [e.call for e in events if isinstance(e, ToolCallCompleted)]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    if conversation == "parallel_calls":
        assert [c.name for c in calls] == ["shell", "read_file"]
    if conversation == "answer":
        assert not calls and text.startswith("Done: fib.py")
    if provider != "simulated":  # the same simulated model behind the wire makes the same kind of step
        plan = SimulatedProvider().plan(req)
        assert [c.name for c in calls] == [c.name for c in plan.tool_calls]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_closing_a_stream_early_is_clean(providers: dict[str, Provider], provider: str) -> None:
    """The actor closes a stream it stops reading (interrupt): no error, the next call works."""
    stream = providers[provider].stream(request(provider, conversation_at_step_two()))
    first = await anext(stream)  # type: ignore[call-overload]
    await stream.aclose()  # type: ignore[attr-defined]
    assert not isinstance(first, MessageCompleted)
    check_contract(await collect(providers[provider], request(provider, conversation_at_step_two())))
